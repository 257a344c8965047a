-- Accepted payment events, exactly one row per transaction_id (recon_duplicates
-- proves it). amount is NUMERIC, never FLOAT64: totals balance to the cent.
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.transactions` (
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
  extra             STRING,   -- unknown fields of the record, as a JSON object
  batch_id          STRING    NOT NULL,
  kafka_partition   INT64     NOT NULL,
  kafka_offset      INT64     NOT NULL,
  loaded_at         TIMESTAMP NOT NULL
)
PARTITION BY DATE(event_time)
CLUSTER BY transaction_id;
