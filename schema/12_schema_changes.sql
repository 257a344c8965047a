-- Every typed column paystream gave transactions and transactions_enriched
-- for a schema's new field (docs/formats.md, "Typed columns"): one row per
-- table, column and type for each partition (or quarantine replay) that
-- started writing it, with the batch that did. Written with that batch's
-- rows, exactly once; `reconcile` checks that each table's columns are the
-- DDL's and these.
CREATE TABLE IF NOT EXISTS `{{project}}.{{dataset}}.schema_changes` (
  table_name      STRING    NOT NULL,
  column_name     STRING    NOT NULL,
  column_type     STRING    NOT NULL, -- STRING, INT64, NUMERIC, ...
  schema_subject  STRING,             -- the schema whose field it is
  schema_version  INT64,
  schema_id       INT64,
  batch_id        STRING    NOT NULL, -- the batch (or replay) that recorded it
  kafka_topic     STRING    NOT NULL,
  kafka_partition INT64     NOT NULL,
  first_offset    INT64     NOT NULL, -- the column is written from here on
  loaded_at       TIMESTAMP NOT NULL
)
PARTITION BY DATE(loaded_at)
CLUSTER BY table_name, column_name;
