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
)

// LoadOrder lists the tables a batch writes, batch_ledger last: the others
// load at once, the ledger only after all of them, so a ledger row means
// every other table of the batch is loaded (invariant 6).
var LoadOrder = []string{TableTransactions, TableEnriched, TableMetricsMinute, TableDedupAudit, TableIngestErrors, TableBatchLedger}

// ReplayOrder lists the tables a quarantine replay writes, its ledger
// (quarantine_replays) last, for the same reason.
var ReplayOrder = []string{TableTransactions, TableEnriched, TableQuarantineReplays}
