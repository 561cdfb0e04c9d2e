-- name: amiscan-active-exceptions
-- description: Findings an exception accepted in each AMI's latest scan, with its reason and expiry day (UTC, inclusive) and the days left, soonest expiry first.
WITH ranked AS (
  SELECT
    scan_id, scan_date,
    row_number() OVER (PARTITION BY ami_id ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT
  f.account_id, f.region, f.ami_id, f.ami_name, f.severity, f.vulnerability_id, f.package_name,
  f.exception_reason, f.exception_expires,
  date_diff('day', current_date, f.exception_expires) AS days_left
FROM findings AS f
JOIN ranked AS l ON f.scan_id = l.scan_id AND f.scan_date = l.scan_date
WHERE l.rn = 1 AND f.status = 'ACTIVE' AND f.exception_reason IS NOT NULL
ORDER BY f.exception_expires, f.ami_id, f.vulnerability_id, f.package_name;
