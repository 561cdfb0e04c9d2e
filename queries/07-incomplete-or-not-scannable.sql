-- name: amiscan-incomplete-or-not-scannable
-- description: AMIs whose latest scan is INCOMPLETE (findings lost in delivery) or NOT_SCANNABLE (Inspector could not read the snapshots), with why.
WITH ranked AS (
  SELECT
    account_id, region, ami_id, ami_name, scan_id, scan_date, scanned_at, verdict, scan_mode, inspector_scan_id,
    finding_count, findings_expected, reason, report_uri,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT
  account_id, region, ami_id, ami_name, scan_id, scan_date, verdict, scan_mode, inspector_scan_id,
  finding_count, findings_expected, reason, report_uri
FROM ranked
WHERE rn = 1 AND verdict IN ('INCOMPLETE', 'NOT_SCANNABLE')
ORDER BY verdict, scan_date DESC, ami_id;
