-- Every dropped duplicate and the offset of the record it duplicates, so a
-- dropped row can always be explained.
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.dedup_audit` (
  transaction_id      STRING    NOT NULL,
  event_time          TIMESTAMP NOT NULL,
  kafka_partition     INT64     NOT NULL,
  kafka_offset        INT64     NOT NULL,
  duplicate_of_offset INT64     NOT NULL,
  identical_bytes     BOOL      NOT NULL, -- producer retry (true) or client replay
  batch_id            STRING    NOT NULL,
  loaded_at           TIMESTAMP NOT NULL
)
PARTITION BY DATE(event_time)
CLUSTER BY transaction_id;
