package workerbin

import (
	"context"
	"fmt"
	"github.com/paystream/paystream/e2e"
	"math/big"
	"math/rand"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/paystream/paystream/contract"

	"cloud.google.com/go/bigquery"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/paystream/paystream/internal/config"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
)

// txProducer is a transactional producer, as Java payment services and
// Kafka Streams configure theirs (transactional.id), keyed by
// transaction_id so Kafka's default partitioner spreads the payments.
type txProducer struct {
	t  *testing.T
	cl *kgo.Client
}

func newTxProducer(t *testing.T, brokers []string, topic, id string) *txProducer {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(id), kgo.DefaultProduceTopic(topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &txProducer{t: t, cl: cl}
}

// send writes n payments with IDs prefix-0 … in an open transaction and
// returns their amount in EUR.
func (p *txProducer) send(ctx context.Context, prefix string, n int) *big.Rat {
	p.t.Helper()
	if err := p.cl.BeginTransaction(); err != nil {
		p.t.Fatal(err)
	}
	sum := new(big.Rat)
	for i := range n {
		id := fmt.Sprintf("%s-%d", prefix, i)
		amount := fmt.Sprintf("%d.%02d", 1+i%97, i%100)
		v := fmt.Sprintf(`{"transaction_id":%q,"event_time":%q,"amount":%q,"currency":"EUR","customer_id":"c","merchant_id":"m","card_id":"k","payment_method":"card","status":"captured"}`,
			id, time.Now().UTC().Format(time.RFC3339Nano), amount)
		if err := p.cl.ProduceSync(ctx, &kgo.Record{Key: []byte(id), Value: []byte(v)}).FirstErr(); err != nil {
			p.t.Fatal(err)
		}
		r, _ := new(big.Rat).SetString(amount)
		sum.Add(sum, r)
	}
	return sum
}

func (p *txProducer) end(ctx context.Context, commit bool) {
	p.t.Helper()
	if err := p.cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		p.t.Fatal(err)
	}
}

// TestTransactionalProducerAcrossAWorkerKill: a transactional producer
// commits and aborts 20 transactions of 40 payments, then opens one of 60
// that stays open over several batches' worth of offsets while a second
// producer commits more behind it; the worker is SIGKILLed while it is
// open, a new one takes over, then the transaction commits. Aborted
// payments are nowhere, committed ones are loaded exactly once to the
// cent, markers are in no error table, and the ledger explains every
// offset.
func TestTransactionalProducerAcrossAWorkerKill(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	bin := e2e.BuildWorker(t)
	f := e2e.Start(t, e2e.Options{Partitions: 2, Tuning: faultTuning(), NoWorker: true})
	f.Operator.Tuning.MaxRecords = 25
	cfg, bq := f.Operator.Config, f.Operator.BigQuery

	payments := newTxProducer(t, cfg.KafkaBrokers, cfg.Topic, "payments-service")
	committed, want := 0, new(big.Rat)
	for i := range 20 {
		commit := i%2 == 0
		prefix := fmt.Sprintf("aborted-%d", i)
		if commit {
			prefix = fmt.Sprintf("committed-%d", i)
		}
		sum := payments.send(ctx, prefix, 40)
		payments.end(ctx, commit)
		if commit {
			committed += 40
			want.Add(want, sum)
		}
	}
	open := payments.send(ctx, "open", 60)
	behind := newTxProducer(t, cfg.KafkaBrokers, cfg.Topic, "refunds-service")
	want.Add(want, behind.send(ctx, "behind", 30))
	behind.end(ctx, true)
	committed += 90

	doomed := f.WorkerProcess(t, bin)
	if _, err := f.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	// Every partition the open transaction wrote to waits at its first
	// offset, and status says so.
	bounds, err := kafkalog.AllBounds(ctx, cfg.Kafka(), cfg.Topic)
	if err != nil {
		t.Fatal(err)
	}
	held := 0
	for p, b := range bounds {
		if b.Stable == b.End {
			continue
		}
		held++
		waitState(t, f.Operator, p, fmt.Sprintf("%s since offset %d", contract.StateOpenTransaction, b.Stable))
	}
	if held == 0 {
		t.Fatalf("the open transaction holds no partition: %+v", bounds)
	}
	if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = doomed.Wait()
	f.WorkerProcess(t, bin)
	payments.end(ctx, true)
	want.Add(want, open)

	reconcileAfter(t, f, nil)

	ds := fmt.Sprintf("`%s.%s", cfg.BigQueryProject, cfg.BigQueryDataset)
	one := func(sql string) string {
		t.Helper()
		it, err := bq.Query(sql).Read(ctx)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		var row []bigquery.Value
		var out []string
		for it.Next(&row) == nil {
			for _, v := range row {
				out = append(out, fmt.Sprint(v))
			}
		}
		return strings.Join(out, " ")
	}
	if got, wantRows := one("SELECT COUNT(*), COUNT(DISTINCT transaction_id) FROM "+ds+".transactions`"), fmt.Sprintf("%d %d", committed, committed); got != wantRows {
		t.Errorf("transactions: %s rows and IDs, want %s", got, wantRows)
	}
	if got := one("SELECT CAST(SUM(amount) AS STRING) FROM " + ds + ".transactions`"); got != want.FloatString(2) {
		t.Errorf("amount loaded %s, committed %s", got, want.FloatString(2))
	}
	for _, table := range []string{"transactions", "transactions_enriched", "dedup_audit", "ingest_errors"} {
		if got := one("SELECT COUNT(*) FROM " + ds + "." + table + "` WHERE STARTS_WITH(transaction_id, 'aborted-')"); got != "0" {
			t.Errorf("%s holds %s rows of aborted transactions", table, got)
		}
	}
	if got := one("SELECT COUNT(*) FROM " + ds + ".ingest_errors`"); got != "0" {
		t.Errorf("ingest_errors holds %s rows; markers and aborted records are not errors", got)
	}
	var ends int64
	if bounds, err = kafkalog.AllBounds(ctx, cfg.Kafka(), cfg.Topic); err != nil {
		t.Fatal(err)
	}
	for _, b := range bounds {
		ends += b.End
	}
	// Each transaction leaves one marker in each partition it wrote to:
	// the offsets that hold neither a payment nor an aborted record.
	wantLedger := fmt.Sprintf("%d %d %d", committed, 400, ends-int64(committed)-400)
	if got := one("SELECT SUM(loaded), SUM(aborted), SUM(control) FROM " + ds + ".batch_ledger`"); got != wantLedger {
		t.Errorf("ledger loaded, aborted, control: %s, want %s", got, wantLedger)
	}
}

// waitState waits up to a minute for partition p's status to read state.
func waitState(t *testing.T, op *operator.Operator, p int, state string) {
	t.Helper()
	e2e.WaitFor(t, time.Minute, 200*time.Millisecond, fmt.Sprintf("partition %d reads %q", p, state), func() bool {
		st, err := op.Status(context.Background())
		return err == nil && st[p].State == state
	})
}

// TestOverlappingTransactionsAcrossAWorkerKill: two transactional
// producers whose transactions overlap in every partition, in both write
// modes. Each round A opens a transaction, B opens one, then they end in
// the order and with the outcomes the round draws (the first round: B
// aborts, then A aborts, the order in which a broker lists A's
// transaction after B's). The worker is SIGKILLed halfway; aborted
// payments are nowhere and committed ones are loaded once, to the cent.
func TestOverlappingTransactionsAcrossAWorkerKill(t *testing.T) {
	for _, mode := range []string{config.WriteModeLoad, config.WriteModeStorageWrite} {
		t.Run(mode, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			bin := e2e.BuildWorker(t)
			f := e2e.Start(t, e2e.Options{Partitions: 3, Tuning: faultTuning(), NoWorker: true})
			f.Operator.Tuning.MaxRecords = 20
			f.Operator.Config.WriteMode = mode
			cfg, bq := f.Operator.Config, f.Operator.BigQuery
			a := newTxProducer(t, cfg.KafkaBrokers, cfg.Topic, "payments-a")
			b := newTxProducer(t, cfg.KafkaBrokers, cfg.Topic, "payments-b")
			rng := rand.New(rand.NewSource(27))
			committed, aborted, want := 0, 0, new(big.Rat)
			round := func(i int) {
				sumA := a.send(ctx, fmt.Sprintf("a-%d", i), 15)
				sumB := b.send(ctx, fmt.Sprintf("b-%d", i), 15)
				commitA, commitB, bFirst := rng.Intn(2) == 0, rng.Intn(2) == 0, rng.Intn(2) == 0
				if i == 0 {
					commitA, commitB, bFirst = false, false, true
				}
				ends := []func(){func() { a.end(ctx, commitA) }, func() { b.end(ctx, commitB) }}
				if bFirst {
					ends[0], ends[1] = ends[1], ends[0]
				}
				ends[0]()
				ends[1]()
				for _, tx := range []struct {
					commit bool
					sum    *big.Rat
				}{{commitA, sumA}, {commitB, sumB}} {
					if tx.commit {
						committed += 15
						want.Add(want, tx.sum)
					} else {
						aborted += 15
					}
				}
			}
			doomed := f.WorkerProcess(t, bin)
			if _, err := f.Operator.Start(ctx); err != nil {
				t.Fatal(err)
			}
			for i := range 12 {
				round(i)
			}
			e2e.WaitFor(t, 2*time.Minute, 500*time.Millisecond, "two batches loaded", func() bool { return len(completedBatches(t, f)) >= 2 })
			if err := doomed.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = doomed.Wait()
			f.WorkerProcess(t, bin)
			for i := 12; i < 24; i++ {
				round(i)
			}
			reconcileAfter(t, f, nil)

			query := func(sql string, fn func([]bigquery.Value)) {
				t.Helper()
				it, err := bq.Query(sql).Read(ctx)
				if err != nil {
					t.Fatalf("%s: %v", sql, err)
				}
				var row []bigquery.Value
				for it.Next(&row) == nil {
					fn(row)
				}
			}
			var rows, ids, abortedRows int64
			var sum *big.Rat
			query(fmt.Sprintf("SELECT COUNT(*), COUNT(DISTINCT transaction_id), CAST(SUM(amount) AS STRING), COUNTIF(REGEXP_CONTAINS(transaction_id, '^[ab]-')) FROM `%s.%s.transactions`", cfg.BigQueryProject, cfg.BigQueryDataset),
				func(row []bigquery.Value) {
					rows, ids = row[0].(int64), row[1].(int64)
					sum, _ = new(big.Rat).SetString(row[2].(string))
					abortedRows = row[3].(int64)
				})
			if rows != int64(committed) || ids != int64(committed) || abortedRows != int64(committed) {
				t.Errorf("transactions: %d rows, %d IDs, want the %d committed payments (%d aborted were sent)", rows, ids, committed, aborted)
			}
			if sum == nil || sum.Cmp(want) != 0 {
				t.Errorf("amount loaded %v, committed %s", sum, want.FloatString(2))
			}
			var ledgerAborted int64
			query(fmt.Sprintf("SELECT SUM(aborted) FROM `%s.%s.batch_ledger`", cfg.BigQueryProject, cfg.BigQueryDataset), func(row []bigquery.Value) { ledgerAborted = row[0].(int64) })
			if ledgerAborted != int64(aborted) {
				t.Errorf("ledger counts %d aborted records, the producers aborted %d", ledgerAborted, aborted)
			}
		})
	}
}
