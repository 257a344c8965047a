# paystream's everyday commands. `make test` is what CI runs.
GO ?= go

.PHONY: test tools vet lint demo up fuzz soak chaos bench bench-smoke

# Builds the pinned tool servers first (minutes on a new machine, then
# cached), so no test's timeout is spent compiling ZetaSQL.
test: tools vet lint test-bare
	$(GO) test -race -timeout 25m ./...

# The fast tier as a new contributor runs it: Go and a base system's shell
# and git on PATH, nothing else (no Chromium, no C compiler, no tool
# servers built).
test-bare:
	bare=$$(mktemp -d) && for tool in sh bash git; do ln -s "$$(command -v $$tool)" "$$bare/"; done && \
	env -i HOME="$$HOME" PATH="$$(dirname "$$(command -v $(GO))"):$$bare" GOCACHE="$$($(GO) env GOCACHE)" \
		GOMODCACHE="$$($(GO) env GOMODCACHE)" GOPROXY="$$($(GO) env GOPROXY)" CGO_ENABLED=0 \
		$(GO) test -short -count=1 ./...; rc=$$?; rm -rf "$$bare"; exit $$rc

tools:
	$(GO) run ./devstack build-tools

# The paystream image, its --version stamped with this checkout's.
image:
	docker build --build-arg VERSION="$$(git describe --tags --always --dirty)" --build-arg COMMIT="$$(git rev-parse HEAD)" -t paystream:local .

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# staticcheck, and Temporal's workflowcheck on the workflows (a map
# ranged over where order matters, time.Now, a goroutine), pinned in
# tools/lint.
lint:
	cd tools/lint && $(GO) build -o ../../bin/ honnef.co/go/tools/cmd/staticcheck go.temporal.io/sdk/contrib/tools/workflowcheck
	bin/staticcheck ./...
	bin/workflowcheck ./workflows/...

demo:
	$(GO) run ./devstack demo

up:
	$(GO) run ./devstack up

# Runs the parser's fuzzer for a bounded time; a crasher lands in
# internal/payment/testdata/fuzz and becomes a regression seed of `make test`.
fuzz:
	$(GO) test -run='^$$' -fuzz=FuzzParse -fuzztime=60s ./internal/payment

# Kills the worker at random moments for SOAK (default 10m) while a long
# stream is ingested, then reconciles to the cent.
SOAK ?= 10m
soak: tools
	PAYSTREAM_SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -run 'TestWorkerKilledAtRandom' -v ./worker

# Runs paystream under a seeded fault schedule for DURATION in WRITE_MODE
# (load or storagewrite) and checks the books against the chaos
# producer's own oracle; SEED replays a schedule (0: a new one, printed).
SEED ?= 0
DURATION ?= 5m
WRITE_MODE ?= load
chaos: tools
	$(GO) run ./chaos --seed $(SEED) --duration $(DURATION) --write-mode $(WRITE_MODE)

# Measures throughput, latency, memory, recovery and the micro-benchmarks
# on the devstack and writes bench/results/<date>.{json,md,svg}. The full
# run takes about an hour; BENCH_FLAGS adds flags (see `go run ./bench -h`).
bench: tools
	$(GO) run ./bench $(BENCH_FLAGS)

# The same with tiny figures, as `make test` runs it (TestSmoke).
bench-smoke: tools
	$(GO) run ./bench --smoke --out $${TMPDIR:-/tmp}/paystream-bench
