-- name: amiscan-trend
-- description: Each AMI's active findings per severity per scan date (the day's last scan), oldest first.
WITH daily AS (
  SELECT
    account_id, region, ami_id, ami_name, scan_date, verdict, critical, high, medium, low, informational, untriaged,
    row_number() OVER (PARTITION BY ami_id, scan_date ORDER BY scanned_at DESC, scan_id DESC) AS rn
  FROM scans
)
SELECT account_id, region, ami_id, ami_name, scan_date, verdict, critical, high, medium, low, informational, untriaged
FROM daily
WHERE rn = 1
ORDER BY ami_id, scan_date;
