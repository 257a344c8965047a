package fraud_test

import (
	"hash/fnv"
	"testing"

	"github.com/paystream/paystream/internal/fraud"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// versionOne are version 1's scores of the simulator's first 5,000
// payments (seed 1) as one batch, as released: a batch history names the
// version, not the scores, so a batch run again after an upgrade must
// score as it did. A change that moves them belongs in a new version.
var versionOne = struct {
	sum, high int
	fnv       uint64
}{10460, 14, 0x72e0efe66420f0fe}

func TestVersionOneScoresAsReleased(t *testing.T) {
	opts := simulation.DefaultOptions()
	opts.DuplicateRatio, opts.MalformedRatio, opts.LateRatio = 0, 0, 0
	g, err := simulation.NewGenerator(opts)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fraud.NewScorerFor(1)
	if err != nil {
		t.Fatal(err)
	}
	h := fnv.New64a()
	sum, high := 0, 0
	for range 5000 {
		ev, err := payment.Parse(g.Next().Value)
		if err != nil {
			t.Fatal(err)
		}
		sc := s.Score(&ev)
		sum += int(sc.Score)
		if sc.RiskLevel() == "high" {
			high++
		}
		h.Write([]byte{sc.Score, byte(sc.Reasons), byte(sc.Reasons >> 8)})
	}
	t.Logf("sum %d, high %d, fnv %#x", sum, high, h.Sum64())
	if sum != versionOne.sum || high != versionOne.high || h.Sum64() != versionOne.fnv {
		t.Errorf("version 1 scored the batch sum %d, %d high, hash %#x; released: %d, %d, %#x. A rule change takes a new version (fraud.Version)",
			sum, high, h.Sum64(), versionOne.sum, versionOne.high, versionOne.fnv)
	}
	if _, err := fraud.NewScorerFor(fraud.Version + 1); err == nil {
		t.Errorf("NewScorerFor(%d) scored with rules this build does not have", fraud.Version+1)
	}
}
