-- transaction_ids loaded into `transactions` more than once, with the
-- batches that loaded them. Expect no rows. A row means a replay arrived
-- after the dedup window with a new event_time, or a quarantine replay of
-- an ID loaded since (docs/troubleshooting.md, "Duplicates in recon_duplicates").
SELECT
  transaction_id,
  copies,
  ARRAY_TO_STRING(batch_ids, ' ') AS batch_ids
FROM `{{project}}.{{dataset}}.recon_duplicates`
ORDER BY copies DESC, transaction_id
LIMIT 100
