# rocketpilot: the commands the README names are the truth; CI runs `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s

.PHONY: all build test test-unit test-interop lint run fuzz bench clean

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

## bench: the Go benchmarks of the NameServer side and the model.
bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf $(BIN)
