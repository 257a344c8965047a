-- What came in, minute by minute over the last hour, and what became of
-- it: records read, loaded, duplicates, errors and late (quarantined).
-- A minute whose duplicates or errors jump stands out against its
-- neighbours; a gap of minutes with none means nothing was loaded.
SELECT
  TIMESTAMP_TRUNC(loaded_at, MINUTE) AS minute,
  COUNT(*) AS batches,
  SUM(records) AS records,
  SUM(loaded) AS loaded,
  SUM(duplicates) AS duplicates,
  SUM(errors) AS errors,
  SUM(late) AS late
FROM `{{project}}.{{dataset}}.batch_ledger`
WHERE loaded_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 1 HOUR)
GROUP BY minute
ORDER BY minute
