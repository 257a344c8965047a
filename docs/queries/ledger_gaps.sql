-- Offsets no batch covers, or two batches cover, per partition: each
-- batch must start where the one before it ended. Expect no rows.
SELECT
  kafka_partition,
  previous_end,
  start_offset,
  end_offset,
  batch_id
FROM (
  SELECT
    kafka_partition,
    batch_id,
    start_offset,
    end_offset,
    LAG(end_offset) OVER (PARTITION BY kafka_partition ORDER BY start_offset) AS previous_end
  FROM `{{project}}.{{dataset}}.batch_ledger`
)
WHERE previous_end IS NOT NULL AND previous_end != start_offset
ORDER BY kafka_partition, start_offset
