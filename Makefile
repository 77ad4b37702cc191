# rocketpilot: the commands the README names are the truth; CI runs `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build test test-unit test-interop lint run fuzz bench bench-smoke bench-go clean

all: build

build:
	$(GO) build -o $(BIN)/rocketpilot ./cmd/rocketpilot

## test: lint, then every unit and integration test with the race detector, then the interop module.
test: lint test-unit test-interop

test-unit:
	$(GO) test -race -count=1 $(PKGS)

test-interop:
	test/interop/setup.sh
	cd test/interop && $(GO) test -race -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	cd test/interop && $(GO) vet ./...

## run: the control plane against its embedded demo NameServer.
run: build
	$(BIN)/rocketpilot serve --demo

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

## bench: the scale benchmark (hack/bench): millions of topics, thousands of streams, beside the naive design.
## BENCH_JSON=FILE also writes the figures as JSON.
bench:
	$(GO) run ./hack/bench

## bench-smoke: the same scenarios, small enough to finish in under a minute on 2 cores.
bench-smoke:
	$(GO) run ./hack/bench -smoke

## bench-go: the packages' Go benchmarks (codec, model, cache, server).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN)
