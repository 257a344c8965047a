-- Batches whose tables disagree with their ledger row: counts, table rows
-- or per-currency amounts. Expect no rows. A batch with ledger_rows = 0 is
-- either loading now (it goes away within seconds) or a load that broke.
SELECT
  batch_id,
  kafka_partition,
  start_offset,
  end_offset,
  ledger_rows,
  loaded,
  transactions_rows,
  duplicates,
  dedup_audit_rows,
  errors,
  error_rows,
  late,
  late_rows,
  amount_mismatches
FROM `{{project}}.{{dataset}}.recon_batch_totals`
WHERE NOT balanced
ORDER BY kafka_partition, start_offset
LIMIT 100
