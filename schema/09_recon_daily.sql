-- Per day of loading: events in (the ledger's offset ranges) against events
-- out (loaded + duplicates + errors + late + control + aborted + skipped), table rows against the
-- ledger, and per-currency amounts. balanced is true only when every batch of
-- the day is.
CREATE OR REPLACE VIEW `{{project}}.{{dataset}}.recon_daily` AS
SELECT
  DATE(loaded_at) AS day,
  COUNT(*) AS batches,
  SUM(end_offset - start_offset) AS events_in,
  SUM(loaded) AS loaded,
  SUM(duplicates) AS duplicates,
  SUM(errors) AS errors,
  SUM(late) AS late,
  SUM(skipped) AS skipped,
  SUM(control) AS control,
  SUM(aborted) AS aborted,
  SUM(transactions_rows) AS transactions_rows,
  SUM(dedup_audit_rows) AS dedup_audit_rows,
  SUM(error_rows + late_rows) AS ingest_error_rows,
  SUM(amount_mismatches) AS amount_mismatches,
  SUM(end_offset - start_offset) = SUM(loaded + duplicates + errors + late + control + aborted + skipped)
    AND LOGICAL_AND(balanced) AS balanced
FROM `{{project}}.{{dataset}}.recon_batch_totals`
GROUP BY day;
