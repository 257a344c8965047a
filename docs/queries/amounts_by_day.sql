-- Money loaded per day of event time and currency, exact (NUMERIC): the
-- figure finance compares with the payment processor's own totals.
SELECT
  DATE(event_time) AS day,
  currency,
  COUNT(*) AS payments,
  SUM(amount) AS amount
FROM `{{project}}.{{dataset}}.transactions`
GROUP BY day, currency
ORDER BY day, currency
