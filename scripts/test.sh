#!/usr/bin/env bash
# `make test`: every test, in the order that keeps a cold run (no test tool
# built yet) short. Warm, every tool is cached and this is: the Kubernetes
# suite, and beside it the components' tests and the other packages.
#
# Cold, compiling the test tools is most of the run's CPU, and the
# Kubernetes suite (test/k8s/live, about 28 min) is its long pole but mostly
# waits (rollouts, decision waits, the HPA). So:
# - what the suite needs to start (the distribution binary, the control
#   plane and its own test binary) is built first, side by side, with the
#   whole machine;
# - the suite starts, and beside it the components' tests and the other
#   packages, one at a time, as warm;
# - every other tool is built while they run, at idle CPU priority
#   (SCHED_IDLE), in the order the tests ask for them: the builds take only
#   the CPU the tests leave, so they do not slow the suite down, and a test
#   that asks for a tool still being built waits for that build (the install
#   scripts hold a lock per tool while they build), which then has the CPU
#   the waiting test left.
#
# Environment (from the Makefile): GOTESTFLAGS, COMPONENT_MODULES, MAKE and
# what the tests read (TOOLS_DIR, TAILGATE_BIN, TAILGATE_OCB,
# TAILGATE_MDATAGEN).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a testflags <<<"${GOTESTFLAGS:?}"
make=${MAKE:-make}
live_pkg=github.com/tailgate-dev/tailgate/test/k8s/live

stamp() { echo "make test: $(date -u +%H:%M:%S) $*"; }

# Everything started here stops with this script, however it ends: every
# process below it gets SIGTERM (the suite's test binary stops its cluster
# and pods through their parent-death signal). Long commands run as
# `cmd & wait`: bash handles a signal only between commands, and `wait`
# is one it interrupts.
descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
stop_all() {
  local procs
  procs=$(descendants $$)
  [ -z "$procs" ] || kill -TERM $procs 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM
run() { "$@" & wait $!; }

stamp "building the binary, the control plane and the suite's test binary"
status=0 compiled=$(mktemp -d)
"$make" --no-print-directory build >/dev/null & build=$!
# Compiles the suite's packages into the build cache, so that it starts
# (below) without compiling beside the other builds.
go test -c -o "$compiled/live.test" "$live_pkg" & suite=$!
run scripts/install-controlplane.sh >/dev/null || status=1
wait "$build" || status=1
wait "$suite" || status=1
rm -rf "$compiled"
[ $status -eq 0 ] || exit 1

stamp "starting the Kubernetes suite"
go test "${testflags[@]}" "$live_pkg" &
live=$!

# The other tools, one after another, in the order the tests need them:
# Helm (the suite's second test file; the chart's tests), Prometheus and
# prometheus-adapter (its HPA test), cert-manager's CRDs (a download; its
# mTLS test), cyclonedx-gomod (the SBOM test), Jaeger (its Jaeger test, the
# end-to-end tests), telemetrygen (the end-to-end tests), the arm64 binary
# (the image tests).
idle_builds() {
  scripts/install-go-tool.sh helm >/dev/null
  scripts/install-go-tool.sh prometheus >/dev/null
  scripts/install-go-tool.sh prometheus-adapter >/dev/null
  scripts/install-cert-manager-crds.sh >/dev/null
  scripts/install-go-tool.sh cyclonedx-gomod >/dev/null
  scripts/install-go-tool.sh jaeger >/dev/null
  scripts/install-go-tool.sh telemetrygen >/dev/null
  scripts/build-platform-binary.sh arm64 >/dev/null
}
export -f idle_builds
setsid chrt --idle 0 bash -euo pipefail -c idle_builds &
idle=$!

# ocb and mdatagen, for the generated-code tests.
run "$make" --no-print-directory tools >/dev/null || status=1
stamp "testing the components and the other packages"
for c in ${COMPONENT_MODULES:?}; do
  (cd "$c" && exec go test "${testflags[@]}" ./...) & wait $! || status=1
done
mapfile -t others < <(go list ./... | grep -vx "$live_pkg")
# One package at a time beside the suite: the suite shares the machine
# with one other test binary, as it did when `go test ./...` ran them all
# (-p 2 on 2 cores).
run go test -p 1 "${testflags[@]}" "${others[@]}" || status=1
stamp "other packages done; waiting for the Kubernetes suite"

wait "$live" || status=1
wait "$idle" || { echo "make test: a background tool build failed" >&2; status=1; }
stamp "done"
exit $status
