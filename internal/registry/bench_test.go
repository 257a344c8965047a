package registry

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
)

// BenchmarkRecord compares reading one simulator event from Avro (the
// transcode and the contract's parse) with reading it from JSON: the
// figure behind catch-up of Avro records against JSON ones.
func BenchmarkRecord(b *testing.B) {
	reg := srfake.New()
	defer reg.Close()
	c, err := New(Options{URL: reg.URL(), Topic: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	enc, err := simulation.NewAvro(context.Background(), c, "bench", []int{2})
	if err != nil {
		b.Fatal(err)
	}
	js := firstValid(b)
	framed, err := enc.Encode(0, js)
	if err != nil {
		b.Fatal(err)
	}
	id, _ := SchemaID(framed)
	s, err := c.Schema(context.Background(), id)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("json", func(b *testing.B) {
		for b.Loop() {
			if _, err := payment.Parse(js); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("avro", func(b *testing.B) {
		for b.Loop() {
			if _, err := s.Event(framed); err != nil {
				b.Fatal(err)
			}
		}
	})
}
