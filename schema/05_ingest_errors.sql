-- Every record not loaded into transactions for a reason other than being a
-- duplicate: malformed, invalid, late, conflicting. Nothing is dropped: raw
-- keeps the record's bytes (base64 when raw_encoding = 'base64').
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.ingest_errors` (
  kafka_topic      STRING    NOT NULL,
  kafka_partition  INT64     NOT NULL,
  kafka_offset     INT64     NOT NULL,
  kafka_key        STRING,
  kafka_timestamp  TIMESTAMP,          -- NULL when the producer's timestamp is not one to trust (payment.KafkaTime)
  kafka_timestamp_ms INT64,            -- the record's timestamp as sent, in milliseconds, whatever it is
  reason           STRING    NOT NULL, -- malformed_json, missing_field, invalid_field, late, conflict, ...
  detail           STRING,             -- which field and rule; never a field value
  raw              STRING    NOT NULL,
  raw_encoding     STRING    NOT NULL, -- utf8 or base64
  transaction_id   STRING,             -- when it could be read
  event_time       TIMESTAMP,          -- when it could be read
  batch_id         STRING    NOT NULL,
  loaded_at        TIMESTAMP NOT NULL
)
PARTITION BY DATE(kafka_timestamp)
CLUSTER BY reason, kafka_partition;
