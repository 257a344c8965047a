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
	scorer := fraud.NewScorer()
	out := contract.Enrichment{Scores: make([]uint8, 0, d.Loaded), Reasons: make([]uint16, 0, d.Loaded)}
	recs, _, err := a.batchRecords(ctx, spec)
	if err != nil {
		return contract.Enrichment{}, fmt.Errorf("enrich %s: %w", spec.ID(), err)
	}
	for _, e := range rows.Loaded(d, recs) {
		s := scorer.Score(e)
		out.Scores = append(out.Scores, s.Score)
		out.Reasons = append(out.Reasons, s.Reasons)
	}
	faults.At("enrich")
	if len(out.Scores) != d.Loaded {
		return contract.Enrichment{}, fmt.Errorf("enrich %s: found %d loaded records, dedup decided %d", spec.ID(), len(out.Scores), d.Loaded)
	}
	a.logger(ctx, spec).Info("enrich done", zap.Int("scored", len(out.Scores)), since(began))
	return out, nil
}
