// Command chaos runs paystream on the local stack under a seeded fault
// schedule and checks the books against an oracle of its own.
//
// From one seed it draws the stack's shape (partitions, workers, batch
// size) and a schedule of faults over the run: worker SIGKILLs and
// graceful stops, workers added and removed, pause/resume, drain/start,
// stop/start, set-batch, an allowed-lateness change through stop/start,
// the Temporal dev server restarted, the worker pool workflow
// terminated, partitions added, BigQuery refusing writes. Meanwhile a
// producer, seeded too, writes plain records with every codec,
// transactions of several transactional IDs interleaving and aborting,
// duplicates, conflicts, malformed, late, large and oversized records,
// and records stamped by frozen and skewed clocks. It keeps its own
// account of every record Kafka acknowledged and of each transaction's
// fate; from that account alone the oracle says where each offset must
// land, and the run compares transactions (counts and sums per currency
// to the cent), dedup_audit and ingest_errors batch by batch, naming the
// first batch whose rows differ.
//
//	go run ./chaos --seed 7 --duration 5m --write-mode storagewrite
//
// The schedule and the producer's choices are reproducible from the seed;
// the moments at which they meet the pipeline depend on the machine.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"time"

	"github.com/paystream/paystream/internal/config"
)

func main() {
	ok, err := runMain(os.Args[1:])
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "chaos:", err)
		}
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func runMain(args []string) (bool, error) {
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	seed := fs.Uint64("seed", 0, "the schedule's seed (0: one from the clock, printed)")
	duration := fs.Duration("duration", 5*time.Minute, "how long the producer writes and the schedule runs")
	writeMode := fs.String("write-mode", config.WriteModeLoad, "load or storagewrite")
	dir := fs.String("dir", "", "where the stack's state and the workers' logs go (default: a new temporary directory, removed when the run passes)")
	catchUp := fs.Duration("catch-up", 4*time.Minute, "how long ingestion may take to catch up once production ends")
	only := fs.Bool("schedule-only", false, "print the seed's schedule and exit")
	if err := fs.Parse(args); err != nil {
		return false, err
	}
	if *writeMode != config.WriteModeLoad && *writeMode != config.WriteModeStorageWrite {
		return false, fmt.Errorf("--write-mode must be %s or %s, got %q", config.WriteModeLoad, config.WriteModeStorageWrite, *writeMode)
	}
	if *duration < 20*time.Second {
		return false, fmt.Errorf("--duration must be at least 20s, got %s", *duration)
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano()%1_000_000 + 1)
	}
	if *only {
		NewSchedule(*seed, *duration, *writeMode).Write(os.Stdout)
		return true, nil
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, Options{Seed: *seed, Duration: *duration, WriteMode: *writeMode, Dir: *dir, CatchUp: *catchUp, Log: os.Stdout})
	if err != nil {
		if res.Dir != "" {
			fmt.Printf("chaos: state and worker logs kept in %s\n", res.Dir)
		}
		return false, fmt.Errorf("seed %d: %w", *seed, err)
	}
	report(res)
	if res.OK() && *dir == "" {
		os.RemoveAll(res.Dir)
	} else {
		fmt.Printf("chaos: state and worker logs kept in %s\n", res.Dir)
	}
	return res.OK(), nil
}

// report prints what the run did and found.
func report(res Result) {
	s := res.Schedule
	fmt.Printf("chaos: seed %d, %s, %s: produced %d records (%d of aborted transactions)\n", s.Seed, s.Duration, s.WriteMode, res.Produced, res.Aborted)
	var faults []string
	for f, n := range res.Done {
		faults = append(faults, fmt.Sprintf("%s×%d", f, n))
	}
	slices.Sort(faults)
	fmt.Printf("chaos: faults carried out: %v\n", faults)
	res.Verdict.Write(os.Stdout)
	for _, f := range res.Findings {
		fmt.Printf("chaos: FINDING: %s\n", f)
	}
	if res.OK() {
		fmt.Printf("chaos: PASS seed %d (%s, %s)\n", s.Seed, s.Duration, s.WriteMode)
	} else {
		fmt.Printf("chaos: FAIL seed %d (%s, %s): replay with make chaos SEED=%d DURATION=%s WRITE_MODE=%s\n", s.Seed, s.Duration, s.WriteMode, s.Seed, s.Duration, s.WriteMode)
	}
}
