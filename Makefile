# tailgate - build, test and run the distribution.
#
# Component versions live in builder-config.yaml (the ocb manifest); tool
# versions live here. Built tools are cached outside the clone, keyed by
# version, so fresh clones on the same machine reuse them.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

# ocb must be the same release as the collector core in builder-config.yaml
# (it writes its own otelcol version into the generated go.mod); a test
# checks that the two agree.
OCB_VERSION ?= 0.161.0

TOOLS_DIR ?= $(HOME)/.cache/tailgate/tools
OCB       := $(TOOLS_DIR)/ocb-v$(OCB_VERSION)/builder
# mdatagen is built from its wrapper module (build/tools/mdatagen), which
# pins it to the same release as ocb.
MDATAGEN  := $(TOOLS_DIR)/mdatagen-v$(OCB_VERSION)/mdatagen

# In-house components: each is its own Go module, like upstream ones.
# mdatagen runs on those with a metadata.yaml (processors); the confmap
# converter has none, as upstream's have none.
COMPONENTS := $(patsubst %/metadata.yaml,%,$(shell find components -name metadata.yaml -not -path '*/internal/*'))
COMPONENT_MODULES := $(patsubst %/go.mod,%,$(shell find components -name go.mod))

BIN        := bin/tailgate
GO         ?= go
# Same flags ocb uses for release builds: static, reproducible, stripped.
GO_BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags="-s -w"
GOTESTFLAGS ?= -count=1 -timeout 40m
# How long make test fuzzes each Fuzz target of the components.
FUZZTIME ?= 20s
# make test builds the tests as the binary and the test tools are built
# (static, -trimpath, and with the binary's profile-guided build profile,
# cmd/tailgate/default.pgo), so that they reuse the packages those builds
# compiled (the tests' modules select the binary's library versions; a test
# checks both).
PGO_PROFILE := $(abspath cmd/tailgate/default.pgo)
TEST_ENV := CGO_ENABLED=0 GOFLAGS="$(strip $(GOFLAGS) -trimpath $(if $(wildcard $(PGO_PROFILE)),-pgo=$(PGO_PROFILE)))"
# The Kubernetes suite's second half: make test runs it in a second test
# process beside the first half (scripts/test.sh). It holds every test that
# runs a tool besides the cluster (Prometheus and prometheus-adapter, Helm,
# Jaeger, the registry, kube-router; a test checks that none is left out),
# whose tools make test builds while the suite runs, and before them, in a
# process of their own, the node failure tests (LIVE_NODE_FAILURES), which
# need only the cluster: so the second half starts with the first and the
# halves take about as long.
LIVE_SECOND_HALF := ^(TestHPAScalesOnTheHottestGateway|TestHelmInstallUpgradeUninstall|TestJaegerJoinsTheHalvesOfSplitTraces|TestKubePrometheusStackSelectsTheChartsObjects|TestReleaseInstallsFromARegistryAndUpgrades|TestNetworkPoliciesEnforced)$$
LIVE_NODE_FAILURES := ^(TestContainerKilledByTheRuntime|TestGatewayOOMKilled|TestNodeLost)$$

CONTAINER_ENGINE ?= $(shell command -v podman || command -v docker || true)
# The release's version (builder-config.yaml dist.version before its "+").
VERSION := $(shell scripts/release-info.sh VERSION)
# Where a release publishes the image (make release REGISTRY=ghcr.io/tailgate-dev):
# the chart's and the kustomize base's default; a test keeps the three equal.
IMAGE_REPO ?= ghcr.io/tailgate-dev/tailgate
# `make image` also tags the host platform's image so, for `podman run`
# (the release is the manifest list $(IMAGE_REPO):$(VERSION)).
IMAGE ?= $(IMAGE_REPO):dev
PLATFORMS ?= linux/amd64 linux/arm64
# Static binaries of the image's platforms, cross-compiled on the host.
PLATFORM_BINS := $(foreach p,$(PLATFORMS),bin/$(subst /,-,$(p))/tailgate)
BIN_ARM64 := bin/linux-arm64/tailgate

# Everything the binary is built from.
BIN_SOURCES := builder-config.yaml cmd/tailgate/go.mod cmd/tailgate/go.sum \
	$(shell find cmd/tailgate components -name '*.go' -o -name go.mod -o -name go.sum -o -name default.pgo 2>/dev/null)

.PHONY: all build generate tools controlplane jaeger prometheus adapter helm test-tools test test-churn run image sbom chart release lint pgo bench bench-churn bench-guard sizing sizing-walk ring-skew clean help

all: build

help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

tools: $(OCB) $(MDATAGEN) ## Install the pinned build tools into $(TOOLS_DIR).

$(OCB):
	mkdir -p $(dir $@)
	GOBIN=$(abspath $(dir $@)) $(GO) install go.opentelemetry.io/collector/cmd/builder@v$(OCB_VERSION)

controlplane: ## Build the Kubernetes test control plane (etcd, kube-apiserver, ...) into $(TOOLS_DIR), once.
	TOOLS_DIR=$(TOOLS_DIR) scripts/install-controlplane.sh

jaeger: ## Build the Jaeger v2 binary the tests use as a real tracing backend into $(TOOLS_DIR), once (~3 min).
	TOOLS_DIR=$(TOOLS_DIR) scripts/install-go-tool.sh jaeger

prometheus: ## Build Prometheus and promtool (with Kubernetes service discovery) for the tests into $(TOOLS_DIR), once (~2 min after the control plane, ~4 without).
	TOOLS_DIR=$(TOOLS_DIR) scripts/install-go-tool.sh prometheus

# The control plane, Helm and Prometheus share one wrapper module
# (build/tools/kubernetes): built one after the other, their common
# Kubernetes packages compile once; prometheus-adapter follows them. The
# other tools share nothing with them or each other and build beside them,
# one at a time, with the arm64 binary the image tests run under emulation.
# Each is a no-op once cached; a failure of any fails the target.
test-tools: ## Build every tool the tests run (control plane and the real nodes' kubelet, kube-proxy and kube-scheduler, Helm, Prometheus, prometheus-adapter, Jaeger, telemetrygen, cyclonedx-gomod, the registry, ORAS, containerd, runc, the CNI plugins, kube-router) into $(TOOLS_DIR), fetch cert-manager's and prometheus-operator's CRDs, and cross-compile $(BIN_ARM64).
	@export TOOLS_DIR=$(TOOLS_DIR); \
	{ scripts/install-controlplane.sh && for t in helm prometheus prometheus-adapter; do scripts/install-go-tool.sh $$t || exit 1; done; } >/dev/null & kube=$$!; \
	{ scripts/build-platform-binary.sh arm64 && for t in jaeger telemetrygen cyclonedx-gomod registry oras containerd runc cni-plugins kube-router; do scripts/install-go-tool.sh $$t || exit 1; done && scripts/install-crds.sh cert-manager && scripts/install-crds.sh prometheus-operator; } >/dev/null & others=$$!; \
	status=0; wait $$kube || status=1; wait $$others || status=1; exit $$status

helm: ## Build the Helm CLI the chart's tests run into $(TOOLS_DIR), once (~1 min after the control plane, ~4 without).
	TOOLS_DIR=$(TOOLS_DIR) scripts/install-go-tool.sh helm

adapter: ## Build prometheus-adapter (custom metrics API for the autoscaling test) into $(TOOLS_DIR), once (~2 min).
	TOOLS_DIR=$(TOOLS_DIR) scripts/install-go-tool.sh prometheus-adapter

$(MDATAGEN):
	mkdir -p $(dir $@)
	cd build/tools/mdatagen && $(GO) build -o $(abspath $@) go.opentelemetry.io/collector/cmd/mdatagen

generate: $(OCB) $(MDATAGEN) ## Regenerate components' metadata (mdatagen) and cmd/tailgate (ocb).
	for c in $(COMPONENTS); do (cd $$c && $(MDATAGEN) metadata.yaml); done
	mkdir -p cmd/tailgate
	# ocb leaves an empty directory in TMPDIR (its default output path)
	# whenever the manifest sets output_path: give it one to remove.
	scratch=$$(mktemp -d) && TMPDIR=$$scratch $(OCB) --config builder-config.yaml --skip-compilation --skip-strict-versioning=false; \
		status=$$?; rm -rf "$$scratch"; exit $$status

build: $(BIN) ## Build bin/tailgate.

# -mod=readonly: the build uses exactly the committed go.mod/go.sum that ocb
# resolved; an out-of-date module file is an error, not a silent change.
$(BIN): $(BIN_SOURCES)
	mkdir -p bin
	cd cmd/tailgate && $(GO_BUILD) -mod=readonly -o ../../$(BIN) .

bin/linux-%/tailgate: $(BIN_SOURCES)
	mkdir -p $(dir $@)
	cd cmd/tailgate && GOOS=linux GOARCH=$* $(GO_BUILD) -mod=readonly -o ../../$@ .

# One image per platform ($(IMAGE_REPO):$(VERSION)-<arch>, FROM scratch: no
# emulation needed to build) in one manifest list, $(IMAGE_REPO):$(VERSION),
# also written as an OCI layout to bin/oci (`make release` publishes it
# with every platform); the host's image is also tagged
# $(IMAGE).
image: $(PLATFORM_BINS) sbom ## Build the image for $(PLATFORMS) with podman: one manifest list $(IMAGE_REPO):$(VERSION) (OCI layout in bin/oci), $(IMAGE) for the host, and the SBOMs.
	@test -n "$(CONTAINER_ENGINE)" || { echo "make image: podman not found (apt-get install podman)"; exit 1; }
	scripts/build-image-index.sh $(IMAGE_REPO):$(VERSION) bin/oci $(foreach p,$(PLATFORMS),$(notdir $(p))=bin/$(subst /,-,$(p))/tailgate)
	$(CONTAINER_ENGINE) tag $(IMAGE_REPO):$(VERSION)-$(shell $(GO) env GOARCH) $(IMAGE)
	$(CONTAINER_ENGINE) manifest inspect $(IMAGE_REPO):$(VERSION) | grep -E '"(architecture|os)"'

# The CycloneDX bill of materials of each shipped binary: every Go module
# linked into it, at the version Go recorded in the binary.
sbom: $(PLATFORM_BINS) ## Write the CycloneDX SBOM of each platform's binary to bin/sbom/.
	mkdir -p bin/sbom
	for p in $(PLATFORMS); do \
	  TOOLS_DIR=$(TOOLS_DIR) scripts/sbom.sh bin/$${p/\//-}/tailgate bin/sbom/tailgate-$(VERSION)-$${p/\//-}.cdx.json; \
	done

chart: ## Package the Helm chart (deploy/helm/tailgate, its links to configs/ resolved) into bin/.
	$$(TOOLS_DIR=$(TOOLS_DIR) scripts/install-go-tool.sh helm | tail -1)/helm package deploy/helm/tailgate -d bin

# Publishes the release to an OCI registry (scripts/release.sh): the image
# with every platform, each platform's SBOM attached to it, and the chart
# with that image as its default, by digest. PLAIN_HTTP=1 for a registry
# without TLS. Log in first (`oras login`, `helm registry login`).
release: image ## Publish the image (every platform), its SBOMs and the chart to REGISTRY (e.g. REGISTRY=ghcr.io/tailgate-dev).
	@test -n "$(REGISTRY)" || { echo "make release: set REGISTRY, e.g. REGISTRY=ghcr.io/tailgate-dev"; exit 1; }
	TOOLS_DIR=$(TOOLS_DIR) PLAIN_HTTP=$(PLAIN_HTTP) scripts/release.sh $(REGISTRY)

# scripts/test.sh builds what the tests need (the binary, ocb, mdatagen,
# the test tools) in the order that keeps a cold run short, and runs every
# test: warm, the Kubernetes suite in two processes beside the rest.
test: ## Run every test: components, generated code, profiles, image (amd64 and arm64), chart, end-to-end, Kubernetes.
	$(TEST_ENV) GOTESTFLAGS="$(GOTESTFLAGS)" FUZZTIME=$(FUZZTIME) COMPONENT_MODULES="$(COMPONENT_MODULES)" LIVE_SECOND_HALF='$(LIVE_SECOND_HALF)' LIVE_NODE_FAILURES='$(LIVE_NODE_FAILURES)' \
		TOOLS_DIR=$(TOOLS_DIR) TAILGATE_BIN=$(abspath $(BIN)) TAILGATE_OCB=$(OCB) TAILGATE_MDATAGEN=$(MDATAGEN) MAKE="$(MAKE)" scripts/test.sh

test-churn: $(BIN) controlplane ## Only the rebalance_guard churn suite, verbose (part of `make test`; ~10 min).
	TOOLS_DIR=$(TOOLS_DIR) TAILGATE_BIN=$(abspath $(BIN)) $(GO) test -count=1 -timeout 30m -run TestRebalanceGuardKeepsSplitTracesWhole -v ./test/k8s/live/

run: $(BIN) ## Run a local agent -> gateway -> sink topology with traffic and print a summary.
	TAILGATE_BIN=$(abspath $(BIN)) $(GO) run ./test/cmd/localrun $(RUN_ARGS)

lint: ## gofmt and go vet (generated cmd/tailgate excluded from gofmt).
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^cmd/tailgate/')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	for c in $(COMPONENT_MODULES); do (cd $$c && $(GO) vet ./...) || exit 1; done

# The profile-guided build: go build reads cmd/tailgate/default.pgo
# (-pgo=auto) for the binary. This profiles both shipped tiers at their
# ceilings (make bench's replay) and merges the profiles into that file.
# Run it after a change to the components or the profiles; make bench
# measures the binary with and without it.
pgo: $(BIN) $(OCB) ## Profile both tiers at their ceilings and write cmd/tailgate/default.pgo, the profile go build uses (~5 min).
	TAILGATE_BIN=$(abspath $(BIN)) TAILGATE_OCB=$(OCB) $(GO) run ./test/cmd/bench -ceiling-only -only '^tailgate (agent|gateway)$$' -pgo-out $(PGO_PROFILE)

bench: $(BIN) $(OCB) ## Benchmark tailgate against an ocb-built upstream baseline; writes docs/benchmarks.md.
	TAILGATE_BIN=$(abspath $(BIN)) TAILGATE_OCB=$(OCB) $(GO) run ./test/cmd/bench $(BENCH_ARGS)

# The churn suite (real control plane) measures rebalance_guard's cost per
# membership change; this publishes it in docs/benchmarks.md. CHURN_RUNS=5
# for a figure worth publishing (~8 min per run).
CHURN_RUNS ?= 1
bench-guard: ## Measure rebalance_guard's cost of one membership change at 3, 50 and 200 gateways; writes its section of docs/benchmarks.md (~1 min).
	$(GO) run ./test/cmd/bench -membership-only

bench-churn: $(BIN) controlplane ## Measure rebalance_guard's cost per membership change (churn suite); writes its section of docs/benchmarks.md.
	rm -f bin/churn-report.jsonl
	TOOLS_DIR=$(TOOLS_DIR) TAILGATE_BIN=$(abspath $(BIN)) TAILGATE_CHURN_REPORT=$(abspath bin/churn-report.jsonl) \
		$(GO) test -count=$(CHURN_RUNS) -timeout 90m -run TestRebalanceGuardKeepsSplitTracesWhole -v ./test/k8s/live/
	$(GO) run ./test/cmd/bench -churn-report bin/churn-report.jsonl

ring-skew: ## Compute how unevenly the agents' ring spreads trace IDs over 3-200 gateways and simulate the HPA on it; writes sections of docs/sizing.md and docs/scaling.md (~30 s).
	cd components/processor/rebalanceguardprocessor/internal/ringskew && $(GO) run . -out $(abspath docs/sizing.md) -scaling $(abspath docs/scaling.md)

sizing-walk: ## Rewrite docs/sizing.md's 5M spans/s walk from the committed figures (seconds).
	$(GO) run ./test/cmd/sizing -walk

sizing: $(BIN) ## Measure the gateway's memory and CPU constants on one gateway; writes docs/sizing.md (~3 min).
	TAILGATE_BIN=$(abspath $(BIN)) $(GO) run ./test/cmd/sizing $(SIZING_ARGS)

clean: ## Remove build outputs (the tool cache in $(TOOLS_DIR) is kept).
	rm -rf bin
