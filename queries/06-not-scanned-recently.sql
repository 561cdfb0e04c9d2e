-- name: amiscan-not-scanned-recently
-- description: AMIs scanned before but not in the last 7 days (a missed weekly run); change the 7 to widen it.
WITH last_scan AS (
  SELECT
    ami_id,
    max_by(account_id, scanned_at) AS account_id,
    max_by(region, scanned_at) AS region,
    max_by(ami_name, scanned_at) AS ami_name,
    max(scan_date) AS last_scan_date,
    max(scanned_at) AS last_scanned_at
  FROM scans
  GROUP BY ami_id
)
SELECT
  account_id, region, ami_id, ami_name, last_scan_date, last_scanned_at,
  date_diff('day', last_scan_date, current_date) AS days_since
FROM last_scan
WHERE last_scan_date < current_date - INTERVAL '7' DAY
ORDER BY last_scan_date, ami_id;
