-- name: amiscan-new-since-previous-scan
-- description: Active findings of each AMI's latest completed scan whose vulnerability (id and package) was not active in its previous completed scan (all of a first scan), most severe first, with the exception that accepts any.
WITH ranked AS (
  SELECT
    scan_id, scan_date, previous_scan_id, first_scan,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
  WHERE verdict IN ('PASS', 'FAIL')
)
SELECT
  f.account_id, f.region, f.ami_id, f.ami_name, f.scan_id, f.scan_date, l.previous_scan_id, l.first_scan,
  f.severity, f.vulnerability_id, f.package_name, f.fixed_in_version, f.exception_reason
FROM findings AS f
JOIN ranked AS l ON f.scan_id = l.scan_id AND f.scan_date = l.scan_date
WHERE l.rn = 1 AND f.status = 'ACTIVE' AND f.is_new
ORDER BY
  CASE f.severity WHEN 'CRITICAL' THEN 1 WHEN 'HIGH' THEN 2 WHEN 'MEDIUM' THEN 3 WHEN 'LOW' THEN 4 ELSE 5 END,
  f.ami_id, f.vulnerability_id, f.package_name;
