package engine

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/warehouse"
)

// TestLoadScoresAsEnrichRecorded: a batch that names a fraud rule set is
// scored by Load, and its rows are byte for byte those of the same batch
// loaded with the scores Enrich recorded, so dropping the scores from
// history changes no row.
func TestLoadScoresAsEnrichRecorded(t *testing.T) {
	ctx := context.Background()
	kafka, m := simulatedLog(t, "score", simulation.DefaultOptions(), 3000)
	a := New(Config{Kafka: kafka})
	spec := contract.Spec{Range: contract.Range{Topic: m.Topic, Partition: 0, Start: 0, End: m.EndOffsets[0]}, AllowedLateness: 10 * time.Minute}
	in := decide(t, a, spec)
	d, enr := in.Decisions, in.Enrichment
	high := 0
	for _, s := range enr.Scores {
		if s >= 60 {
			high++
		}
	}
	if high == 0 || len(enr.Scores) != d.Loaded {
		t.Fatalf("Enrich scored %d records, %d of them high risk: the comparison would prove little", len(enr.Scores), high)
	}
	now := time.Now().UTC()
	recorded, totals, err := a.BuildRows(ctx, contract.LoadInput{Spec: spec, Decisions: d, Enrichment: enr}, now)
	if err != nil {
		t.Fatal(err)
	}
	scored := spec
	scored.FraudRules = fraud.Version
	computed, totals2, err := a.BuildRows(ctx, contract.LoadInput{Spec: scored, Decisions: d}, now)
	if err != nil {
		t.Fatal(err)
	}
	if totals.HighRisk != high || totals2.HighRisk != high {
		t.Errorf("high-risk records: %d from recorded scores, %d computed, want %d", totals.HighRisk, totals2.HighRisk, high)
	}
	for _, table := range contract.LoadOrder {
		if !bytes.Equal(warehouse.NDJSON(nil, recorded[table]), warehouse.NDJSON(nil, computed[table])) {
			t.Errorf("%s: rows from computed scores differ from rows from recorded ones", table)
		}
	}

	// A batch naming a rule set this worker lacks is refused, not scored
	// by other rules.
	other := spec
	other.FraudRules = fraud.Version + 1
	if _, _, err := a.BuildRows(ctx, contract.LoadInput{Spec: other, Decisions: d}, now); err == nil || !strings.Contains(err.Error(), "fraud rules version") {
		t.Errorf("a batch of rule set %d: %v, want it refused", other.FraudRules, err)
	}
}

// TestTheWorkflowsNameThisWorkersFraudRules: the rule set new batches name
// is the one this build scores with.
func TestTheWorkflowsNameThisWorkersFraudRules(t *testing.T) {
	if contract.FraudRules != fraud.Version {
		t.Errorf("contract.FraudRules = %d, fraud.Version = %d: new batches would name rules no worker of this build has", contract.FraudRules, fraud.Version)
	}
}
