-- The quarantine over the last 24 hours, by reason: how many records, on
-- how many partitions, first and last seen. `late` growing means producers
-- or a backlog fall behind the allowed lateness; the others are producers
-- sending bad records (docs/troubleshooting.md, "Quarantine growing").
SELECT
  reason,
  COUNT(*) AS records,
  COUNT(DISTINCT kafka_partition) AS partitions,
  MIN(loaded_at) AS first_seen,
  MAX(loaded_at) AS last_seen
FROM `{{project}}.{{dataset}}.ingest_errors`
WHERE loaded_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 24 HOUR)
GROUP BY reason
ORDER BY records DESC, reason
