package engine

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

// Score scores the batch's loaded records with the fraud rules. Its result
// is recorded in history, so a retried Load applies these scores and never
// scores again (invariant 3).
func (e *Engine) Score(ctx context.Context, spec contract.Spec, d contract.Decisions) (contract.Enrichment, error) {
	began := time.Now()
	recs, _, err := e.batchRecords(ctx, spec, newJudge(spec.AllowedLateness, spec.End, spec.Schemas, d.Schemas))
	if err != nil {
		return contract.Enrichment{}, fmt.Errorf("enrich %s: %w", spec.ID(), err)
	}
	out, err := score(spec, d, recs)
	if err != nil {
		return contract.Enrichment{}, err
	}
	e.logger(ctx, spec).Info("enrich done", zap.Int("scored", len(out.Scores)), since(began))
	return out, nil
}

// score scores the batch's loaded records, in offset order, with the
// fraud rules of the version the batch names (Spec.FraudRules), or this
// build's newest for a batch that names none.
func score(spec contract.Spec, d contract.Decisions, recs []rows.Record) (contract.Enrichment, error) {
	version := spec.FraudRules
	if version == 0 {
		version = fraud.Version // Enrich, for a batch from before versions
	}
	scorer, err := fraud.NewScorerFor(version)
	if err != nil {
		// A batch of a newer build's rules on an older worker, during a
		// rolling update: retried, it runs once this worker is replaced.
		return contract.Enrichment{}, fmt.Errorf("score %s: %w", spec.ID(), err)
	}
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
