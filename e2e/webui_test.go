package e2e

import (
	"context"
	"fmt"
	"html"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/paystream/paystream/internal/devstack"
	"github.com/paystream/paystream/internal/kafkalog"
	"github.com/paystream/paystream/internal/operator"
	"github.com/paystream/paystream/internal/payment"
	"github.com/paystream/paystream/internal/simulation"
	"github.com/paystream/paystream/internal/testtier"
)

// TestWebUIShowsBatches drives headless Chromium against the devstack's
// Temporal web UI as an operator would: the workflow list filtered by
// the KafkaPartition search attribute shows exactly that partition's
// batches, and a batch's page shows its offset range and what it did
// (loaded, duplicates, errors, late) as the ledger counts it, and no card,
// customer or transaction ID anywhere. Screenshots of both pages are kept
// in $PAYSTREAM_ARTIFACTS (default .state/artifacts).
func TestWebUIShowsBatches(t *testing.T) {
	browser := findChromium(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tuning := operator.DefaultTuning()
	tuning.MaxRecords, tuning.PollFor = 1500, time.Second
	e := Start(t, Options{Partitions: 2, Tuning: tuning})
	cfg := e.Operator.Config
	_, err := simulation.Produce(ctx, simulation.DefaultOptions(), simulation.ProduceOptions{Kafka: cfg.Kafka(), Topic: cfg.Topic, Events: 5000})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Operator.Start(ctx); err != nil {
		t.Fatal(err)
	}
	e.WaitCaughtUp(t, 5*time.Minute)

	const partition = 1
	ledger := rows(t, e, fmt.Sprintf("SELECT batch_id, start_offset, end_offset, loaded, duplicates, errors, late FROM `%s.%s.batch_ledger` "+
		"WHERE kafka_partition = %d ORDER BY start_offset", e.Operator.BigQuery.Project(), cfg.BigQueryDataset, partition))
	if len(ledger) < 2 {
		t.Fatalf("partition %d has %d batches; the list would prove little", partition, len(ledger))
	}
	var want []string
	for _, row := range ledger {
		want = append(want, row[0].(string))
	}
	artifacts := artifactDir(t)
	ui := e.Stack.TemporalUIURL()

	// The list, filtered as an operator types it. Visibility is eventually
	// consistent, so the page is read again until every batch shows.
	listURL := ui + "/namespaces/default/workflows?query=" + url.QueryEscape(fmt.Sprintf("KafkaPartition = %d", partition))
	hrefs := regexp.MustCompile(`href="(/namespaces/default/workflows/(batch%2F[^/"]+)/[0-9a-f-]+/history)"`)
	var listDOM string
	links := map[string]string{} // batch ID → its page
	for attempt := 0; ; attempt++ {
		listDOM = chromiumDOM(t, ctx, browser, listURL)
		clear(links)
		for _, m := range hrefs.FindAllStringSubmatch(listDOM, -1) {
			id, _ := url.PathUnescape(m[2])
			links[id] = ui + m[1]
		}
		if len(links) >= len(want) || attempt == 5 {
			break
		}
		time.Sleep(2 * time.Second)
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for id := range links {
			if !yield(id) {
				return
			}
		}
	})
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("the list filtered by KafkaPartition = %d shows %q, the ledger has %q", partition, got, want)
	}
	chromiumScreenshot(t, ctx, browser, listURL, filepath.Join(artifacts, "web-ui-batches.png"), "1400,700")

	// One batch's page: its range and its counts, as the ledger has them.
	first := ledger[0]
	page := links[first[0].(string)]
	detailDOM := chromiumDOM(t, ctx, browser, page)
	text := visibleText(detailDOM)
	start, end := first[1].(int64), first[2].(int64)
	for _, s := range []string{
		fmt.Sprintf("partition %d, offsets %d–%d (%d offsets)", partition, start, end-1, end-start),
		fmt.Sprintf("%d loaded, %d duplicates, %d errors, %d late", first[3], first[4], first[5], first[6]),
		fmt.Sprintf(`"Loaded" : %d`, first[3]),
	} {
		if !strings.Contains(text, s) {
			t.Errorf("the page of %s lacks %q", first[0], s)
		}
	}
	chromiumScreenshot(t, ctx, browser, page, filepath.Join(artifacts, "web-ui-batch.png"), "1400,1100")

	// Nothing a page shows names a card, customer or transaction.
	err = kafkalog.ReadRange(ctx, cfg.Kafka(), cfg.Topic, partition, start, end, func(r kafkalog.Record) error {
		ev, err := payment.Parse(r.Value)
		if err != nil {
			return nil
		}
		for _, secret := range []string{ev.CardID, ev.CustomerID, ev.TransactionID} {
			if strings.Contains(listDOM, secret) || strings.Contains(detailDOM, secret) {
				t.Errorf("the web UI shows event data %q", secret)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// findChromium finds the Debian chromium (or another Chrome) on PATH.
func findChromium(t *testing.T) string {
	t.Helper()
	testtier.NeedsServers(t) // before the browser: the fast tier needs Go alone
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("the web UI test needs Chromium on PATH: apt-get install chromium (.ci/run installs it)")
	return ""
}

// chromiumArgs are headless Chromium's flags for a test: no sandbox (CI
// runs as root), its own profile, and virtual time so the UI's scripts
// finish before the page is read.
func chromiumArgs(t *testing.T) []string {
	return []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=15000"}
}

func chromiumDOM(t *testing.T, ctx context.Context, browser, pageURL string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(chromiumArgs(t), "--window-size=1400,1100", "--dump-dom", pageURL)...)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom %s: %v", pageURL, err)
	}
	return string(out)
}

func chromiumScreenshot(t *testing.T, ctx context.Context, browser, pageURL, file, size string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, browser, append(chromiumArgs(t), "--window-size="+size, "--screenshot="+file, pageURL)...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot %s: %v\n%s", pageURL, err, out)
	}
	if st, err := os.Stat(file); err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (a blank page is a few KB)", file, err)
	}
	t.Logf("screenshot: %s", file)
}

// visibleText is the DOM's text as a person reads it: tags, scripts and
// styles dropped, entities decoded, runs of space made one.
func visibleText(dom string) string {
	for _, re := range []string{`(?s)<script.*?</script>`, `(?s)<style.*?</style>`, `<[^>]+>`} {
		dom = regexp.MustCompile(re).ReplaceAllString(dom, " ")
	}
	return strings.Join(strings.Fields(html.UnescapeString(dom)), " ")
}

// artifactDir is where tests keep files for people to look at.
func artifactDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("PAYSTREAM_ARTIFACTS")
	if dir == "" {
		root, err := devstack.FindRoot(".")
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(root, ".state", "artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}
