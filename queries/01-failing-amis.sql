-- name: amiscan-failing-amis
-- description: AMIs whose latest scan failed the severity threshold, with active findings per severity.
WITH ranked AS (
  SELECT
    account_id, region, ami_id, ami_name, scan_id, scan_date, scanned_at, verdict, severity_threshold, highest_severity,
    critical, high, medium, low, finding_count, report_uri,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT
  account_id, region, ami_id, ami_name, scan_id, scan_date, highest_severity, severity_threshold,
  critical, high, medium, low, finding_count, report_uri
FROM ranked
WHERE rn = 1 AND verdict = 'FAIL'
ORDER BY critical DESC, high DESC, medium DESC, low DESC, ami_id;
