-- Per quarantine replay: its ledger row against the rows it loaded. A replay
-- is balanced when its row is there once, its counts add up to the late
-- records it found, and transactions and transactions_enriched hold its
-- loaded count and amounts. Replay rows with no ledger row show up with
-- ledger_rows = 0 (in flight, or a broken load).
CREATE OR REPLACE VIEW `{{project}}.{{dataset}}.recon_replays` AS
WITH
  replays AS (
    SELECT batch_id FROM `{{project}}.{{dataset}}.quarantine_replays`
    UNION DISTINCT SELECT batch_id FROM `{{project}}.{{dataset}}.transactions` WHERE STARTS_WITH(batch_id, 'replay/')
  ),
  ledger AS (
    SELECT batch_id, COUNT(*) AS ledger_rows, ANY_VALUE(quarantined) AS quarantined,
      ANY_VALUE(loaded) AS loaded, ANY_VALUE(duplicates) AS duplicates
    FROM `{{project}}.{{dataset}}.quarantine_replays`
    GROUP BY batch_id
  ),
  tx AS (
    SELECT batch_id, COUNT(*) AS n FROM `{{project}}.{{dataset}}.transactions` WHERE STARTS_WITH(batch_id, 'replay/') GROUP BY batch_id
  ),
  enriched AS (
    SELECT batch_id, COUNT(*) AS n FROM `{{project}}.{{dataset}}.transactions_enriched` WHERE STARTS_WITH(batch_id, 'replay/') GROUP BY batch_id
  ),
  tx_amounts AS (
    SELECT batch_id, currency, SUM(amount) AS amount
    FROM `{{project}}.{{dataset}}.transactions`
    WHERE STARTS_WITH(batch_id, 'replay/')
    GROUP BY batch_id, currency
  ),
  ledger_amounts AS (
    SELECT l.batch_id, a.currency, a.amount
    FROM `{{project}}.{{dataset}}.quarantine_replays` AS l, UNNEST(l.amount_by_currency) AS a
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
  r.batch_id,
  IFNULL(l.ledger_rows, 0) AS ledger_rows,
  l.quarantined,
  l.loaded,
  l.duplicates,
  IFNULL(tx.n, 0) AS transactions_rows,
  IFNULL(enriched.n, 0) AS enriched_rows,
  IFNULL(amount_checks.amount_mismatches, 0) AS amount_mismatches,
  IFNULL(
    l.ledger_rows = 1
    AND l.quarantined = l.loaded + l.duplicates
    AND l.loaded = IFNULL(tx.n, 0)
    AND l.loaded = IFNULL(enriched.n, 0)
    AND IFNULL(amount_checks.amount_mismatches, 0) = 0,
    FALSE) AS balanced
FROM replays AS r
LEFT JOIN ledger AS l ON l.batch_id = r.batch_id
LEFT JOIN tx ON tx.batch_id = r.batch_id
LEFT JOIN enriched ON enriched.batch_id = r.batch_id
LEFT JOIN amount_checks ON amount_checks.batch_id = r.batch_id;
