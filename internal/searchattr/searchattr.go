// Package searchattr names paystream's Temporal custom search attributes:
// the keys workflows set so operators can find a batch in the web UI by
// topic, partition and offset (`KafkaPartition = 3 AND BatchEndOffset > 5000`).
//
// SQL visibility stores (the dev server's SQLite, PostgreSQL, MySQL) allow
// only three custom attributes of each numeric type per namespace, so the
// three Int slots hold the partition and the range, and the counts use the
// Double slots.
package searchattr

import "go.temporal.io/sdk/temporal"

var (
	KafkaTopic       = temporal.NewSearchAttributeKeyKeyword("KafkaTopic")
	KafkaPartition   = temporal.NewSearchAttributeKeyInt64("KafkaPartition")
	BatchStartOffset = temporal.NewSearchAttributeKeyInt64("BatchStartOffset")
	BatchEndOffset   = temporal.NewSearchAttributeKeyInt64("BatchEndOffset")
	BatchLoaded      = temporal.NewSearchAttributeKeyFloat64("BatchLoaded")
	BatchDuplicates  = temporal.NewSearchAttributeKeyFloat64("BatchDuplicates")
	BatchRejected    = temporal.NewSearchAttributeKeyFloat64("BatchRejected") // errors + late
)

// Definition is one attribute as a server registers it.
type Definition struct {
	Name string
	Type string // as `temporal server start-dev --search-attribute` spells it
}

// Definitions lists every attribute above, for registration at server start.
func Definitions() []Definition {
	return []Definition{
		{KafkaTopic.GetName(), "Keyword"},
		{KafkaPartition.GetName(), "Int"},
		{BatchStartOffset.GetName(), "Int"},
		{BatchEndOffset.GetName(), "Int"},
		{BatchLoaded.GetName(), "Double"},
		{BatchDuplicates.GetName(), "Double"},
		{BatchRejected.GetName(), "Double"},
	}
}
