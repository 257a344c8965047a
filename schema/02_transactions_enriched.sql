-- transactions plus the fraud decision recorded once per batch by the Enrich
-- activity (docs/design.md §3, invariant 3).
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.transactions_enriched` (
  transaction_id    STRING    NOT NULL,
  event_time        TIMESTAMP NOT NULL,
  amount            NUMERIC   NOT NULL,
  currency          STRING    NOT NULL,
  customer_id       STRING    NOT NULL,
  merchant_id       STRING    NOT NULL,
  merchant_category STRING,
  card_id           STRING    NOT NULL,
  card_last4        STRING,
  card_country      STRING,
  payment_method    STRING    NOT NULL,
  status            STRING    NOT NULL,
  region            STRING,
  country           STRING,
  device_id         STRING,
  device_type       STRING,
  ip_address        STRING,
  extra             STRING,
  fraud_score       INT64     NOT NULL, -- 0..100
  fraud_reasons     ARRAY<STRING>,      -- rule codes that fired
  risk_level        STRING    NOT NULL, -- low, medium, high
  batch_id          STRING    NOT NULL,
  kafka_partition   INT64     NOT NULL,
  kafka_offset      INT64     NOT NULL,
  loaded_at         TIMESTAMP NOT NULL
)
PARTITION BY DATE(event_time)
CLUSTER BY risk_level, transaction_id;
