-- The ledger of `starter replay-quarantine`: one row per replay of a batch's
-- quarantined late records, written after the replay's transactions rows.
-- batch_id is the replay's ID (replay/<source batch>), the batch_id of the
-- rows it loaded; the late rows stay in ingest_errors as the audit trail.
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.quarantine_replays` (
  batch_id           STRING    NOT NULL, -- replay/<source_batch_id>
  source_batch_id    STRING    NOT NULL,
  kafka_topic        STRING    NOT NULL,
  kafka_partition    INT64     NOT NULL,
  quarantined        INT64     NOT NULL, -- late records of the source batch
  loaded             INT64     NOT NULL,
  duplicates         INT64     NOT NULL, -- transaction_id loaded already: left in quarantine
  amount_by_currency ARRAY<STRUCT<currency STRING, amount NUMERIC, events INT64>>,
  loaded_at          TIMESTAMP NOT NULL
)
PARTITION BY DATE(loaded_at)
CLUSTER BY kafka_partition, source_batch_id;
