-- Per-batch aggregates per minute x currency x region. A minute can span
-- batches, so totals are SUMs over batch_id; kafka_offset is the batch's
-- first offset.
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.metrics_minute` (
  minute           TIMESTAMP NOT NULL,
  currency         STRING    NOT NULL,
  region           STRING    NOT NULL, -- '' when the events had none
  event_count      INT64     NOT NULL,
  amount_sum       NUMERIC   NOT NULL,
  fraud_count      INT64     NOT NULL, -- events with risk_level high
  duplicate_count  INT64     NOT NULL,
  batch_id         STRING    NOT NULL,
  kafka_partition  INT64     NOT NULL,
  kafka_offset     INT64     NOT NULL,
  loaded_at        TIMESTAMP NOT NULL
)
PARTITION BY DATE(minute)
CLUSTER BY currency, region;
