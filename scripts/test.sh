#!/usr/bin/env bash
# `make test`: every test, in an order that keeps a cold run (no test tool
# built yet) short. Warm, every tool is cached and this is: the Kubernetes
# suite in two halves, each its own test process with its own control plane
# and sandbox, beside the end-to-end tests, the components' tests and the
# other packages.
#
# Cold, compiling is most of the run's CPU and the machine stays busy. The
# Kubernetes suite (test/k8s/live, ~28 min warm) is the long pole but
# mostly waits on its cluster (rollouts, decision waits, the HPA), using
# about a fifth of one core; the end-to-end tests (~10 min) too. So:
# - what the suite needs to start is built first, with the whole machine:
#   the control plane and the nodes (kubelet, kube-proxy, containerd, runc,
#   the CNI plugins), and beside them the distribution binary and then the
#   suite's test binary (after the binary, so that it reuses the packages
#   the binary's build compiled);
# - then the suite starts in two processes, each with its own cluster: the
#   first half (the tests that need only the cluster: exits, policies,
#   churn, reconcile, ring, mTLS, traffic) and the node failure tests
#   (LIVE_NODE_FAILURES), which the second half (LIVE_SECOND_HALF: the
#   tests that run Helm, Prometheus, prometheus-adapter, Jaeger, the
#   registry, ORAS, cyclonedx-gomod or kube-router) follows in a process of
#   its own;
# - every other build runs at idle CPU priority (SCHED_IDLE), taking only
#   the CPU the first stage and the tests leave, so running tests keep the
#   machine they have warm. The second half's tools build first, from the
#   start, in the order its tests use them. When the node failure tests
#   end, whatever of those is still building or to build goes to normal
#   priority and the second half starts: each of its tests waits for its
#   tool's build (one build of a tool at a time, install-go-tool.sh) or
#   builds it, never on an idle build, and the builds of the later tests'
#   tools overlap the earlier tests. telemetrygen comes first of the rest
#   (the end-to-end tests start once it is built), then ocb, mdatagen,
#   the arm64 binary and the components' and other packages' tests, which
#   run at normal priority once the end-to-end tests have ended, beside
#   fuzzing.
#
# Environment (from the Makefile): GOTESTFLAGS, COMPONENT_MODULES,
# LIVE_SECOND_HALF, LIVE_NODE_FAILURES, FUZZTIME, MAKE, and what the tests read (TOOLS_DIR, TAILGATE_BIN,
# TAILGATE_OCB, TAILGATE_MDATAGEN).
set -euo pipefail
cd "$(dirname "$0")/.."
read -r -a testflags <<<"${GOTESTFLAGS:?}"
read -r -a components <<<"${COMPONENT_MODULES:?}"
live_second_half=${LIVE_SECOND_HALF:?}
live_node_failures=${LIVE_NODE_FAILURES:?}
make=${MAKE:-make}
module=$(go list -m)
live_pkg=$module/test/k8s/live
e2e_pkg=$module/test/e2e

# Each line also gives how many CPU-seconds of the machine's (all CPUs,
# from the start) were busy, anything's: their differences from one line to
# the next show where a cold run leaves a CPU idle.
machine_cpu() { awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8 + $9; total = busy + $5 + $6; printf "%d %d\n", busy / 100, total / 100 }' /proc/stat; }
read -r busy_at_start total_at_start < <(machine_cpu)
stamp() {
  local busy total
  read -r busy total < <(machine_cpu)
  echo "make test: $(date -u +%H:%M:%S) [busy $((busy - busy_at_start)) of $((total - total_at_start)) CPU-s] $*"
}
# cpu_used sets cpu to the CPU time of every command this script has
# waited for, their descendants included (what /usr/bin/time counts for the
# run): "N CPU-min (user, system)". A cold run is bound by it: on CI's 2
# cores no order of the builds ends before half of it has elapsed
# (docs/development.md). Called in this shell, not in $(...): times in a
# subshell counts only the subshell's children.
cpu_used() {
  local times_file u s
  times_file=$(mktemp)
  times >"$times_file"
  { read -r _ _; read -r u s; } <"$times_file"
  rm -f "$times_file"
  cpu=$(awk -v u="$u" -v s="$s" 'function sec(t, m) { m = t; sub(/m.*/, "", m); sub(/^[0-9]+m/, "", t); sub(/s$/, "", t); return m * 60 + t }
    BEGIN { printf "%.1f CPU-min (user %.1f, system %.1f)", (sec(u) + sec(s)) / 60, sec(u) / 60, sec(s) / 60 }')
}

# Everything started here stops with this script, however it ends: every
# process below it gets SIGTERM (a suite's test binary stops its cluster
# and pods through their parent-death signal). Long commands run as
# `cmd & wait`: bash handles a signal only between commands, and `wait` is
# one it interrupts.
descendants() { local p; for p in $(pgrep -P "$1"); do echo "$p"; descendants "$p"; done; }
stop_all() {
  local procs
  procs=$(descendants $$)
  [ -z "$procs" ] || kill -TERM $procs 2>/dev/null || true
  wait 2>/dev/null || true
}
trap 'exit 130' INT TERM
run() { "$@" & wait $!; }
# idle runs a build at idle CPU priority; its standard error (the build's
# log) shows, its standard output (an install script's directory) does not.
idle() { chrt --idle 0 "$@" >/dev/null; }

status=0
fail() { echo "make test: $*" >&2; status=1; }

stamp "building the control plane, the nodes, the binary and the suite's test binary"
compiled=$(mktemp -d) # test binaries compiled ahead; only the build cache keeps them
# The fuzzing runs' TMPDIR: a worker still running when -fuzztime ends is
# killed, and leaves the temporary directories of its test behind.
fuzz_tmp=$(mktemp -d)
trap 'stop_all; rm -rf "$compiled" "$fuzz_tmp"' EXIT
# The second half's tools, in the order its tests run (by file name), at
# idle priority from the start, in one process tree, which promote raises
# whole (the builds it starts later inherit its priority). The first stage
# keeps both CPUs busy, so they get little of it (a cold run here had
# built Prometheus by its end). The release test's make
# release needs cyclonedx-gomod (the SBOMs) and ORAS, and publishes to a
# registry.
chrt --idle 0 bash -c 'for t in prometheus prometheus-adapter helm jaeger registry oras cyclonedx-gomod kube-router; do
  scripts/install-go-tool.sh "$t" >/dev/null || exit 1
done' & tools=$!
promote() { local p; for p in "$1" $(descendants "$1"); do chrt --other -a -p 0 "$p" 2>/dev/null || true; done; }

# The suite's packages are compiled into the build cache here, so that its
# two halves start (below) without compiling it twice.
{ "$make" --no-print-directory build >/dev/null && go test -c -o "$compiled/" "$live_pkg"; } & binaries=$!
{ scripts/install-controlplane.sh && for t in containerd runc cni-plugins; do scripts/install-go-tool.sh $t || exit 1; done; } >/dev/null & wait $! ||
  fail "building the control plane or the nodes' runtime failed"
wait "$binaries" || fail "building the binary or compiling the Kubernetes suite failed"
[ $status -eq 0 ] || exit 1

stamp "Kubernetes suite, first half: the tests that need only the cluster"
go test "${testflags[@]}" -skip "$live_second_half|$live_node_failures" "$live_pkg" & live_first=$!

stamp "Kubernetes suite, second half: first $live_node_failures"
{
  failures=0
  go test "${testflags[@]}" -run "$live_node_failures" "$live_pkg" & wait $! || failures=1
  promote "$tools"
  stamp "Kubernetes suite, second half: $live_second_half"
  go test "${testflags[@]}" -run "$live_second_half" "$live_pkg" & wait $! || exit 1
  exit $failures
} & live_second=$!

# Downloads: the first half's mTLS and monitoring tests apply them.
run idle scripts/install-crds.sh cert-manager || fail "fetching cert-manager's CRDs failed"
run idle scripts/install-crds.sh prometheus-operator || fail "fetching prometheus-operator's CRDs failed"
run idle scripts/install-go-tool.sh telemetrygen || fail "building telemetrygen failed"
stamp "end-to-end tests"
go test "${testflags[@]}" "$e2e_pkg" & e2e=$!

run idle "$make" --no-print-directory tools || fail "building ocb and mdatagen failed"
run idle scripts/build-platform-binary.sh arm64 || fail "building the arm64 binary failed"
mapfile -t others < <(go list ./... | grep -vx -e "$live_pkg" -e "$e2e_pkg")
# Compiled at idle priority too; they run below, at normal priority.
for c in "${components[@]}"; do
  (cd "$c" && idle go test -c -o "$compiled/" ./...) & wait $! || fail "compiling $c's tests failed"
done
run idle go test -c -o "$compiled/" "${others[@]}" || fail "compiling the tests failed"
wait "$e2e" || status=1
stamp "end-to-end tests done"

# Native fuzzing of the in-house components on hostile input, each target
# for FUZZTIME on top of its committed corpus (testdata/fuzz) and seeds; a
# failing input is written to that testdata/fuzz for a regression test.
# Most of it cold is the instrumented build of the components' dependencies
# (every package of a fuzzed test binary is instrumented), so the
# fuzzing builds leave out the guard's k8s resolver and the tests that
# need client-go (tag tailgate_fuzz, see the guard's membership_k8s_fuzz.go),
# which halves it. They do not vet (-vet=off): vetting keys on the
# compiled package, so an instrumented build would vet every package of it
# again, and the components' tests vet the same code. Fuzzing overlaps the
# suite's second half, which mostly waits on its cluster, and starts after
# the end-to-end tests, so that they do not share the CPU the second
# half's tools are built with.
# At normal priority: a fuzzing worker starved by idle scheduling could be
# taken for a hung one.
stamp "fuzzing each of the components' Fuzz targets for ${FUZZTIME:?}, in the background"
{
  fuzz_status=0
  for c in "${components[@]}"; do
    for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$c"/*_test.go 2>/dev/null | cut -d' ' -f2); do
      (cd "$c" && TMPDIR=$fuzz_tmp exec go test -tags tailgate_fuzz -vet=off -run '^$' -fuzz "^$target\$" -fuzztime "$FUZZTIME" -fuzzminimizetime 2s .) & wait $! ||
        { echo "make test: fuzzing $c $target failed" >&2; fuzz_status=1; }
    done
  done
  stamp "fuzzing done"
  exit $fuzz_status
} & fuzz=$!

stamp "the components' tests and the other packages"
for c in "${components[@]}"; do
  (cd "$c" && exec go test "${testflags[@]}" ./...) & wait $! || status=1
done
run go test "${testflags[@]}" "${others[@]}" || status=1

wait "$fuzz" || status=1
wait "$tools" || fail "building the second half's tools failed"
stamp "waiting for the Kubernetes suite"
wait "$live_first" || status=1
wait "$live_second" || status=1
cpu_used
stamp "done: $cpu"
exit $status
