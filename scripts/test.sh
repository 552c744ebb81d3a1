#!/usr/bin/env bash
# `make test`: every test, in the order that keeps a cold run (no test tool
# built yet) short. Warm, every tool is cached and this is: the Kubernetes
# suite, and beside it the components' tests and the other packages.
#
# Cold, compiling the test tools is most of the run's CPU, and the
# Kubernetes suite (test/k8s/live, about 28 min) is its long pole but mostly
# waits (rollouts, decision waits, the HPA). So the suite starts as soon as
# what its TestMain needs exists (the distribution binary and the control
# plane, built side by side), and the rest is built while it runs:
# - what its tests need (Prometheus and prometheus-adapter for the first,
#   Helm) at normal priority, then the components' tests and the other
#   packages, one at a time beside the suite;
# - the tools only other tests need (cyclonedx-gomod, Jaeger, telemetrygen,
#   the arm64 binary) in the background at idle CPU priority (SCHED_IDLE),
#   from the start: they take the CPU the builds and tests leave, never
#   theirs, so they do not slow the suite down.
# A test that asks for a tool still being built waits for that build (the
# install scripts hold a lock per tool while they build).
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

# Everything started here stops with this script, however it ends: the
# background builds are a process group of their own, and the suite's test
# binary stops what it started when it gets SIGTERM.
idle="" live=""
descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
stop_all() {
  [ -z "$idle" ] || kill -TERM -- "-$idle" 2>/dev/null || true
  if [ -n "$live" ] && kill -0 "$live" 2>/dev/null; then
    kill -TERM $(descendants "$live") "$live" 2>/dev/null || true
  fi
  wait 2>/dev/null || true
}
trap stop_all EXIT
trap 'exit 130' INT TERM

# The background builds, one after another, in the order the tests need
# them: cert-manager's CRDs (a download) for the suite's mTLS test,
# cyclonedx-gomod for the SBOM test (test/distribution), Jaeger for the
# end-to-end tests and the suite's Jaeger test, telemetrygen for the
# end-to-end tests, the arm64 binary for the image tests.
idle_builds() {
  scripts/install-cert-manager-crds.sh >/dev/null
  scripts/install-go-tool.sh cyclonedx-gomod >/dev/null
  scripts/install-go-tool.sh jaeger >/dev/null
  scripts/install-go-tool.sh telemetrygen >/dev/null
  scripts/build-platform-binary.sh arm64 >/dev/null
}
export -f idle_builds
setsid chrt --idle 0 bash -euo pipefail -c idle_builds &
idle=$!

stamp "building the binary and the control plane"
"$make" --no-print-directory build >/dev/null & build=$!
status=0
scripts/install-controlplane.sh >/dev/null || status=1
wait "$build" || status=1
[ $status -eq 0 ] || exit 1

stamp "starting the Kubernetes suite"
go test "${testflags[@]}" "$live_pkg" &
live=$!

# Prometheus and prometheus-adapter (the suite's first test), then Helm
# (built after the control plane in its module, they reuse its packages);
# ocb and mdatagen for the generated-code tests.
for tool in prometheus prometheus-adapter helm; do
  scripts/install-go-tool.sh "$tool" >/dev/null || status=1
done
"$make" --no-print-directory tools >/dev/null || status=1
stamp "test tools built; testing the components and the other packages"
for c in ${COMPONENT_MODULES:?}; do
  (cd "$c" && go test "${testflags[@]}" ./...) || status=1
done
mapfile -t others < <(go list ./... | grep -vx "$live_pkg")
# One package at a time beside the suite: the suite shares the machine
# with one other test binary, as it did when `go test ./...` ran them all
# (-p 2 on 2 cores).
go test -p 1 "${testflags[@]}" "${others[@]}" || status=1
stamp "other packages done; waiting for the Kubernetes suite"

wait "$live" || status=1
live=""
wait "$idle" || { echo "make test: a background tool build failed" >&2; status=1; }
idle=""
stamp "done"
exit $status
