-- name: amiscan-fixable-findings
-- description: Active findings with a fix available, per AMI (latest scan), with the version that fixes each.
WITH ranked AS (
  SELECT
    scan_id, scan_date,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT
  f.account_id, f.region, f.ami_id, f.ami_name, f.severity, f.vulnerability_id, f.package_name,
  f.installed_version, f.fixed_in_version, f.fix_available
FROM findings AS f
JOIN ranked AS l ON f.scan_id = l.scan_id AND f.scan_date = l.scan_date
WHERE l.rn = 1 AND f.status = 'ACTIVE' AND f.fix_available IN ('YES', 'PARTIAL')
ORDER BY
  f.ami_id,
  CASE f.severity WHEN 'CRITICAL' THEN 1 WHEN 'HIGH' THEN 2 WHEN 'MEDIUM' THEN 3 WHEN 'LOW' THEN 4 ELSE 5 END,
  f.vulnerability_id, f.package_name;
