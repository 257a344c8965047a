package contract

// The BigQuery tables (schema/*.sql creates them): every name in one place.
const (
	TableTransactions      = "transactions"
	TableEnriched          = "transactions_enriched"
	TableMetricsMinute     = "metrics_minute"
	TableDedupAudit        = "dedup_audit"
	TableIngestErrors      = "ingest_errors"
	TableBatchLedger       = "batch_ledger"
	TableQuarantineReplays = "quarantine_replays"
	TableSchemaChanges     = "schema_changes"
)

// TypedTables get a typed column for each new field of a record's schema
// (Schemas.Columns); schema_changes records each.
var TypedTables = []string{TableTransactions, TableEnriched}

// DDLColumns are the columns the DDL gives transactions_enriched (and,
// but for the last three, transactions): a schema's field of one of these
// names stays in extra, never a typed column.
var DDLColumns = []string{"transaction_id", "event_time", "amount", "currency", "customer_id", "merchant_id", "merchant_category",
	"card_id", "card_last4", "card_country", "payment_method", "status", "region", "country", "device_id", "device_type", "ip_address",
	"extra", "batch_id", "kafka_partition", "kafka_offset", "loaded_at", "fraud_score", "fraud_reasons", "risk_level"}

// LoadOrder lists the tables a batch writes, batch_ledger last: the others
// load at once, the ledger only after all of them, so a ledger row means
// every other table of the batch is loaded (invariant 6).
var LoadOrder = []string{TableTransactions, TableEnriched, TableMetricsMinute, TableDedupAudit, TableIngestErrors, TableBatchLedger}

// ReplayOrder lists the tables a quarantine replay writes, its ledger
// (quarantine_replays) last, for the same reason.
var ReplayOrder = []string{TableTransactions, TableEnriched, TableQuarantineReplays}
