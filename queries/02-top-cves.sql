-- name: amiscan-top-cves
-- description: The vulnerabilities active in the most AMIs, across the latest scan of every AMI.
WITH ranked AS (
  SELECT
    scan_id, scan_date,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT
  f.vulnerability_id,
  max_by(f.severity, f.inspector_score) AS severity,
  max(f.inspector_score) AS inspector_score,
  count(DISTINCT f.ami_id) AS ami_count,
  count(*) AS finding_count,
  bool_or(coalesce(f.exploit_available, false)) AS exploit_available
FROM findings AS f
JOIN ranked AS l ON f.scan_id = l.scan_id AND f.scan_date = l.scan_date
WHERE l.rn = 1 AND f.status = 'ACTIVE' AND f.vulnerability_id IS NOT NULL
GROUP BY f.vulnerability_id
ORDER BY ami_count DESC, inspector_score DESC, f.vulnerability_id
LIMIT 25;
