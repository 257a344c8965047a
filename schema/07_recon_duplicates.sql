-- Any transaction_id loaded more than once. Must always be empty.
CREATE OR REPLACE VIEW `{{project}}.{{dataset}}.recon_duplicates` AS
SELECT
  transaction_id,
  COUNT(*) AS copies,
  ARRAY_AGG(batch_id ORDER BY batch_id) AS batch_ids
FROM `{{project}}.{{dataset}}.transactions`
GROUP BY transaction_id
HAVING COUNT(*) > 1;
