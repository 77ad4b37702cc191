# rocketpilot: the commands the README names are the truth; CI runs `make test`.
GO      ?= go
BIN     := bin
PKGS    := ./...
FUZZTIME ?= 30s
CONTROLLER_GEN ?= $(GO) run sigs.k8s.io/controller-tools/cmd/controller-gen@v0.23.0
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
PREFIX  ?= $(shell $(GO) env GOPATH)
CHART   := charts/rocketpilot
# ARTIFACTS: what tests leave for a person to look at (the dashboard's screenshots).
ARTIFACTS ?= $(CURDIR)/bin/test-artifacts
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: all build install browser screenshots test test-unit test-interop lint generate verify-generate envtest helm-lint helm-template run run-config fuzz bench bench-smoke bench-broker bench-go soak clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/rocketpilot ./cmd/rocketpilot
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/rocketctl ./cmd/rocketctl

## install: rocketpilot and rocketctl into $(PREFIX)/bin, rocketctl also as the kubectl plugin kubectl-rocketmq
## (so that `kubectl rocketmq get topics` works).
install: build
	install -d $(PREFIX)/bin
	install -m 0755 $(BIN)/rocketpilot $(BIN)/rocketctl $(PREFIX)/bin/
	install -m 0755 $(BIN)/rocketctl $(PREFIX)/bin/kubectl-rocketmq

## test: lint, generated files up to date, then every unit and integration test with the race detector (the
## Kubernetes suites against a real kube-apiserver and etcd, built once by hack/envtest-assets.sh), then the
## interop module.
test: lint verify-generate test-unit test-interop

test-unit: browser
	KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh)" BROWSER_TESTS=required TEST_ARTIFACTS=$(ARTIFACTS) $(GO) test -race -count=1 $(PKGS)

## browser: Debian's chromium, which the dashboard's browser tests drive headless, installed when missing.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  echo "installing Debian's chromium for the dashboard's browser tests"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends chromium >/dev/null; }

## screenshots: the dashboard's pages, taken by its browser test, copied into docs/dashboard/.
screenshots: browser
	rm -rf $(ARTIFACTS)/dashboard
	BROWSER_TESTS=required TEST_ARTIFACTS=$(ARTIFACTS) $(GO) test -count=1 -run TestDashboardInBrowser ./cmd/rocketpilot
	mkdir -p docs/dashboard
	cp $(ARTIFACTS)/dashboard/*.png docs/dashboard/

## envtest: build (once) and print the folder of kube-apiserver and etcd for envtest (KUBEBUILDER_ASSETS).
envtest:
	@hack/envtest-assets.sh

## generate: deep-copy functions and CRD manifests from the API types in crds/, and their copies in the Helm
## chart (charts/rocketpilot/crds).
generate:
	$(CONTROLLER_GEN) object paths=./crds/... crd paths=./crds/... output:crd:artifacts:config=crds/manifests
	rm -f $(CHART)/crds/*.yaml
	cp crds/manifests/*.yaml $(CHART)/crds/

## verify-generate: fails when the committed generated files differ from what make generate writes.
verify-generate: generate
	@out="$$(git diff --name-only -- crds $(CHART)/crds; git ls-files --others --exclude-standard -- crds $(CHART)/crds)"; if [ -n "$$out" ]; then \
	  echo "generated files are not up to date (run make generate and add them):"; echo "$$out"; exit 1; fi

## helm-lint: helm lint --strict of the chart with its default values and each values file of its ci/ folder
## (helm from hack/helm.sh, or $(HELM)). The chart's Go tests (test/chart, in make test-unit) run the same.
helm-lint:
	@helm="$${HELM:-$$(hack/helm.sh)}"; set -e; \
	  "$$helm" lint --strict $(CHART); \
	  for f in $(CHART)/ci/*-values.yaml; do "$$helm" lint --strict $(CHART) --values "$$f"; done

## helm-template: the chart's manifests with its default values (VALUES=FILE for another values file).
helm-template:
	@helm="$${HELM:-$$(hack/helm.sh)}"; "$$helm" template rocketpilot $(CHART) --namespace rocketpilot-system $(if $(VALUES),--values $(VALUES))

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

## run-config: the demo with the custom resources of examples/ applied from files.
run-config: build
	$(BIN)/rocketpilot serve --demo --config examples

## fuzz: every fuzz target for FUZZTIME each.
fuzz:
	FUZZTIME=$(FUZZTIME) hack/fuzz.sh

## bench: the scale benchmark (hack/bench): millions of topics, thousands of streams, beside the naive design;
## it redraws the plots in docs/bench.
## BENCH_JSON=FILE also writes the figures as JSON.
bench:
	BENCH_PLOTS=docs/bench $(GO) run ./hack/bench

## bench-smoke: the same scenarios, small enough to finish in under a minute on 2 cores.
bench-smoke:
	$(GO) run ./hack/bench -smoke

## bench-broker: produce and consume rates of the official Go client against the simulated demo brokers, direct
## and through a sidecar; the load generator's comparisons run ten times longer: their p99 needs seconds of each path.
bench-broker:
	cd test/interop && $(GO) test -run '^$$' -bench 'GoClient' -benchtime 20000x .
	cd test/interop && $(GO) test -run '^$$' -bench 'Processes/[a-z]+/(direct|sidecar|halfrate)' -benchtime 20000x .
	cd test/interop && $(GO) test -run '^$$' -bench 'Processes/[a-z]+/loadgen' -benchtime 200000x .

## bench-go: the packages' Go benchmarks (codec, model, cache, server).
bench-go:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

## soak: the control plane under churn for 10 minutes (hack/soak): topics, perms, brokers and sidecars come and
## go; fails unless memory stays flat and no sidecar loses a route.
soak:
	$(GO) run ./hack/soak

clean:
	rm -rf $(BIN)
