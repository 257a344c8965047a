-- Is every partition moving? Per partition: its last loaded batch's end
-- offset, how many batches it loaded, and how long ago the last one landed.
-- end_offset should reach `starter status`'s high watermark; seconds_since
-- that grows on a partition with lag means it is stuck (docs/troubleshooting.md).
SELECT
  kafka_partition,
  MAX(end_offset) AS end_offset,
  COUNT(*) AS batches,
  MAX(loaded_at) AS last_loaded_at,
  TIMESTAMP_DIFF(CURRENT_TIMESTAMP(), MAX(loaded_at), SECOND) AS seconds_since
FROM `{{project}}.{{dataset}}.batch_ledger`
GROUP BY kafka_partition
ORDER BY kafka_partition
