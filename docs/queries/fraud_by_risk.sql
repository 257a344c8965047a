-- Fraud scores over the last 24 hours by risk level: payments and their
-- share. A level's share jumping is worth a look at the rules
-- (internal/fraud) before it is worth an alert.
SELECT
  risk_level,
  COUNT(*) AS payments,
  ROUND(100 * COUNT(*) / SUM(COUNT(*)) OVER (), 2) AS percent
FROM `{{project}}.{{dataset}}.transactions_enriched`
WHERE loaded_at >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 24 HOUR)
GROUP BY risk_level
ORDER BY risk_level
