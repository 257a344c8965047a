package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/devstack/devstacktest"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/simulation"
)

// TestSameSeedSameBytesAndManifestMatchesKafka runs the simulator command
// twice with one seed against a real broker: the two runs' records are the
// same bytes, partition by partition, and each manifest matches what a
// consumer reads back and classifies.
func TestSameSeedSameBytesAndManifestMatchesKafka(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s := devstacktest.Start(t, devstacktest.Config(t, 4))
	brokers := strings.Join(s.KafkaBrokers(), ",")

	var manifests []simulation.Manifest
	for i := range 2 {
		path := filepath.Join(t.TempDir(), fmt.Sprintf("manifest-%d.json", i))
		var out bytes.Buffer
		err := run(ctx, []string{"--kafka-brokers", brokers, "--events", "6000", "--seed", "42", "--manifest", path, "--quiet"}, &out)
		if err != nil {
			t.Fatalf("simulator run %d: %v\n%s", i, err, out.String())
		}
		m, err := simulation.ReadManifest(path)
		if err != nil {
			t.Fatal(err)
		}
		if !regexp.MustCompile(fmt.Sprintf(`unique valid on-time IDs\s+%d\s`, m.UniqueIDs)).MatchString(out.String()) {
			t.Errorf("report does not show the manifest's %d unique IDs:\n%s", m.UniqueIDs, out.String())
		}
		manifests = append(manifests, m)
	}

	first, second := manifests[0], manifests[1]
	for p := range first.Partitions {
		a := readValues(ctx, t, s.KafkaBrokers(), first, p)
		b := readValues(ctx, t, s.KafkaBrokers(), second, p)
		if len(a) != first.RecordsByPartition[p] || len(b) != len(a) {
			t.Fatalf("partition %d: runs wrote %d and %d records, manifest says %d", p, len(a), len(b), first.RecordsByPartition[p])
		}
		for i := range a {
			if !bytes.Equal(a[i], b[i]) {
				t.Fatalf("partition %d record %d differs between the two runs with seed 42", p, i)
			}
		}
	}

	for i, m := range manifests {
		if m.Records != 6000 {
			t.Errorf("run %d: manifest counts %d records, want 6000", i, m.Records)
		}
		tally, err := simulation.ReadBack(ctx, kafkalog.Plain(s.KafkaBrokers()), m, m.AllowedLatenessDuration())
		if err != nil {
			t.Fatal(err)
		}
		if problems := tally.Mismatches(m); len(problems) > 0 {
			t.Errorf("run %d: Kafka disagrees with the manifest: %v", i, problems)
		}
		if tally.IdenticalRetries != m.RecordsByKind[simulation.KindDuplicateRetry] {
			t.Errorf("run %d: %d identical retries read back, manifest says %d", i, tally.IdenticalRetries, m.RecordsByKind[simulation.KindDuplicateRetry])
		}
	}
}

func readValues(ctx context.Context, t *testing.T, brokers []string, m simulation.Manifest, p int) [][]byte {
	t.Helper()
	var out [][]byte
	err := kafkalog.ReadRange(ctx, kafkalog.Plain(brokers), m.Topic, p, m.StartOffsets[p], m.EndOffsets[p], func(r kafkalog.Record) error {
		out = append(out, r.Value)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestFlagMistakesAreOneLine(t *testing.T) {
	for _, args := range [][]string{
		{"--rate", "100"},
		{"--start-time", "yesterday"},
		{"--events", "-5"},
		{"--bogus"},
		{"--duplicate-ratio", "0.6"},
	} {
		var out bytes.Buffer
		err := run(context.Background(), append(args, "--kafka-brokers", "127.0.0.1:1"), &out)
		if !errors.As(err, new(config.UsageError)) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v: error %q, want a one-line usage error, before connecting", args, err)
		}
	}
}
