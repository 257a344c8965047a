package activities

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/paystream/paystream/contract"
	"github.com/paystream/paystream/internal/faults"
	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/rows"
)

// Enrich scores the batch's loaded records with the fraud rules. Its result
// is recorded in history, so a retried Load applies these scores and never
// scores again (invariant 3).
func (a *Activities) Enrich(ctx context.Context, spec contract.Spec, d contract.Decisions) (contract.Enrichment, error) {
	began := time.Now()
	recs, _, err := a.batchRecords(ctx, spec)
	if err != nil {
		return contract.Enrichment{}, fmt.Errorf("enrich %s: %w", spec.ID(), err)
	}
	out, err := score(spec, d, recs)
	if err != nil {
		return contract.Enrichment{}, err
	}
	a.logger(ctx, spec).Info("enrich done", zap.Int("scored", len(out.Scores)), since(began))
	return out, nil
}

// score scores the batch's loaded records, in offset order, with the
// fraud rules: this build's, which must be the version the batch names
// when it names one (Spec.FraudRules).
func score(spec contract.Spec, d contract.Decisions, recs []rows.Record) (contract.Enrichment, error) {
	if spec.FraudRules != 0 && spec.FraudRules != fraud.Version {
		// Retried, it may reach a worker of the version it names.
		return contract.Enrichment{}, fmt.Errorf("score %s: the batch names fraud rules version %d, this worker has version %d", spec.ID(), spec.FraudRules, fraud.Version)
	}
	scorer := fraud.NewScorer()
	out := contract.Enrichment{Scores: make([]uint8, 0, d.Loaded), Reasons: make([]uint16, 0, d.Loaded)}
	for _, e := range rows.Loaded(d, recs) {
		s := scorer.Score(e)
		out.Scores = append(out.Scores, s.Score)
		out.Reasons = append(out.Reasons, s.Reasons)
	}
	faults.At("enrich")
	if len(out.Scores) != d.Loaded {
		return contract.Enrichment{}, fmt.Errorf("score %s: found %d loaded records, dedup decided %d", spec.ID(), len(out.Scores), d.Loaded)
	}
	return out, nil
}
