-- Event time to row loaded, per partition over the last hour, against
-- latency objectives: the share of payments loaded within 5 s, 30 s and
-- 5 minutes of their event_time, and the slowest. within_30s falling while
-- lag stays flat points at BigQuery; both moving, at the workers.
-- Producers' clocks count too: event_time is theirs.
SELECT
  kafka_partition,
  COUNT(*) AS payments,
  ROUND(100 * COUNTIF(TIMESTAMP_DIFF(loaded_at, event_time, MILLISECOND) <= 5000) / COUNT(*), 2) AS within_5s_percent,
  ROUND(100 * COUNTIF(TIMESTAMP_DIFF(loaded_at, event_time, MILLISECOND) <= 30000) / COUNT(*), 2) AS within_30s_percent,
  ROUND(100 * COUNTIF(TIMESTAMP_DIFF(loaded_at, event_time, MILLISECOND) <= 300000) / COUNT(*), 2) AS within_5m_percent,
  MAX(TIMESTAMP_DIFF(loaded_at, event_time, MILLISECOND)) / 1000 AS max_seconds
FROM `{{project}}.{{dataset}}.transactions`
WHERE loaded_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)
GROUP BY kafka_partition
ORDER BY kafka_partition
