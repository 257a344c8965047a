# paystream's everyday commands. `make test` is what CI runs.
GO ?= go

.PHONY: test tools vet demo up fuzz soak

# Builds the pinned tool servers first (minutes on a new machine, then
# cached), so no test's timeout is spent compiling ZetaSQL.
test: tools vet
	$(GO) test -race -timeout 25m ./...

tools:
	$(GO) run ./devstack build-tools

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) vet ./...

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
