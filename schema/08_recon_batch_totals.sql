-- Per batch: what the ledger says against what the tables hold. A batch is
-- balanced when its ledger row is there exactly once, its counts add up to
-- its offset range, every table holds the ledger's count, and the per-currency
-- amounts of transactions equal the ledger's. Batches that have table rows but
-- no ledger row show up with ledger_rows = 0 (in flight, or a broken load).
-- Rows of quarantine replays (batch_id replay/...) balance in recon_replays.
CREATE OR REPLACE VIEW `{{project}}.{{dataset}}.recon_batch_totals` AS
WITH
  batches AS (
    SELECT batch_id FROM `{{project}}.{{dataset}}.batch_ledger`
    UNION DISTINCT SELECT batch_id FROM `{{project}}.{{dataset}}.transactions` WHERE NOT STARTS_WITH(batch_id, 'replay/')
    UNION DISTINCT SELECT batch_id FROM `{{project}}.{{dataset}}.dedup_audit`
    UNION DISTINCT SELECT batch_id FROM `{{project}}.{{dataset}}.ingest_errors`
  ),
  ledger AS (
    SELECT batch_id, COUNT(*) AS ledger_rows, ANY_VALUE(kafka_partition) AS kafka_partition,
      ANY_VALUE(start_offset) AS start_offset, ANY_VALUE(end_offset) AS end_offset,
      ANY_VALUE(records) AS records, ANY_VALUE(loaded) AS loaded, ANY_VALUE(duplicates) AS duplicates,
      ANY_VALUE(errors) AS errors, ANY_VALUE(late) AS late, ANY_VALUE(skipped) AS skipped,
      IFNULL(ANY_VALUE(control), 0) AS control, IFNULL(ANY_VALUE(aborted), 0) AS aborted,
      MAX(loaded_at) AS loaded_at
    FROM `{{project}}.{{dataset}}.batch_ledger`
    GROUP BY batch_id
  ),
  tx AS (
    SELECT batch_id, COUNT(*) AS n FROM `{{project}}.{{dataset}}.transactions` GROUP BY batch_id
  ),
  enriched AS (
    SELECT batch_id, COUNT(*) AS n FROM `{{project}}.{{dataset}}.transactions_enriched` GROUP BY batch_id
  ),
  dups AS (
    SELECT batch_id, COUNT(*) AS n FROM `{{project}}.{{dataset}}.dedup_audit` GROUP BY batch_id
  ),
  errs AS (
    SELECT batch_id, COUNTIF(reason != 'late') AS errors, COUNTIF(reason = 'late') AS late
    FROM `{{project}}.{{dataset}}.ingest_errors`
    GROUP BY batch_id
  ),
  tx_amounts AS (
    SELECT batch_id, currency, SUM(amount) AS amount
    FROM `{{project}}.{{dataset}}.transactions`
    GROUP BY batch_id, currency
  ),
  ledger_amounts AS (
    SELECT l.batch_id, a.currency, a.amount
    FROM `{{project}}.{{dataset}}.batch_ledger` AS l, UNNEST(l.amount_by_currency) AS a
  ),
  amount_checks AS (
    SELECT
      COALESCE(t.batch_id, l.batch_id) AS batch_id,
      COUNTIF(t.amount IS NULL OR l.amount IS NULL OR t.amount != l.amount) AS amount_mismatches
    FROM tx_amounts AS t
    FULL OUTER JOIN ledger_amounts AS l ON t.batch_id = l.batch_id AND t.currency = l.currency
    GROUP BY batch_id
  )
SELECT
  b.batch_id,
  l.kafka_partition,
  l.start_offset,
  l.end_offset,
  l.loaded_at,
  IFNULL(l.ledger_rows, 0) AS ledger_rows,
  l.records,
  l.loaded,
  IFNULL(tx.n, 0) AS transactions_rows,
  IFNULL(enriched.n, 0) AS enriched_rows,
  l.duplicates,
  IFNULL(dups.n, 0) AS dedup_audit_rows,
  l.errors,
  IFNULL(errs.errors, 0) AS error_rows,
  l.late,
  IFNULL(errs.late, 0) AS late_rows,
  l.skipped,
  l.control,
  l.aborted,
  IFNULL(amount_checks.amount_mismatches, 0) AS amount_mismatches,
  IFNULL(
    l.ledger_rows = 1
    AND l.records = l.end_offset - l.start_offset
    AND l.records = l.loaded + l.duplicates + l.errors + l.late + l.control + l.aborted + l.skipped
    AND l.loaded = IFNULL(tx.n, 0)
    AND l.loaded = IFNULL(enriched.n, 0)
    AND l.duplicates = IFNULL(dups.n, 0)
    AND l.errors = IFNULL(errs.errors, 0)
    AND l.late = IFNULL(errs.late, 0)
    AND IFNULL(amount_checks.amount_mismatches, 0) = 0,
    FALSE) AS balanced
FROM batches AS b
LEFT JOIN ledger AS l ON l.batch_id = b.batch_id
LEFT JOIN tx ON tx.batch_id = b.batch_id
LEFT JOIN enriched ON enriched.batch_id = b.batch_id
LEFT JOIN dups ON dups.batch_id = b.batch_id
LEFT JOIN errs ON errs.batch_id = b.batch_id
LEFT JOIN amount_checks ON amount_checks.batch_id = b.batch_id;
