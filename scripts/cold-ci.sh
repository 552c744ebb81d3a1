#!/usr/bin/env bash
# Times a cold CI run: .ci/run in a fresh clone of HEAD with an empty HOME
# (no Go modules, build cache or test tools), as a new CI machine runs it,
# and accounts every go command it ran (builds, test compiles, test runs,
# with what each waited for) so that the run's CPU can be split by what
# spent it. Takes about as long as CI (over an hour on 2 cores) and ~21 GB of
# disk; run it alone, as anything else on the machine slows it down.
#
#   scripts/cold-ci.sh [work-dir]   (default: a new directory under /tmp)
#
# Leaves in work-dir: out.log (.ci/run's output), go-calls.log (one line
# per go command: wall and CPU seconds, peak RSS, start, directory, args)
# and summary.txt (the run's time and the go commands by CPU), and
# removes the clone and HOME.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=${1:-$(mktemp -d /tmp/tailgate-cold-ci.XXXXXX)}
mkdir -p "$work/shim" "$work/home"
work=$(cd "$work" && pwd)
go=$(command -v go)
cleanup() {
  # The module cache is written read-only.
  chmod -R u+w "$work/home" "$work/repo" 2>/dev/null || true
  rm -rf "$work/home" "$work/repo" "$work/shim"
}
trap cleanup EXIT

# A go on PATH that records each call with GNU time, then runs the real one.
cat >"$work/shim/go" <<EOF
#!/usr/bin/env bash
args="\$*"
exec /usr/bin/time -a -o "$work/go-calls.log" -f "%e wall %U user %S sys %M KiB | \$(date -u +%H:%M:%S) | \${PWD#$work/repo} | \${args//%/%%}" "$go" "\$@"
EOF
chmod +x "$work/shim/go"
: >"$work/go-calls.log"
git clone -q "$root" "$work/repo"

start=$(date +%s)
status=0
(cd "$work/repo" && env HOME="$work/home" PATH="$work/shim:$PATH" .ci/run) >"$work/out.log" 2>&1 || status=$?
end=$(date +%s)

{
  echo "cold .ci/run of $(git -C "$root" rev-parse --short HEAD): exit $status, $(((end - start) / 60)) min $(((end - start) % 60)) s"
  grep '^make test:' "$work/out.log" || true
  echo
  echo "go commands by CPU (user + system seconds, with what each waited for; test runs include their clusters only where they reap them):"
  awk -F'|' '{ split($1, t, " "); printf "%6.0f CPU-s %6.0f s wall |%s| %s\n", t[3] + t[5], t[1], $2, substr($4, 1, 140) }' "$work/go-calls.log" | sort -rn | head -40
  awk -F'|' '{ split($1, t, " "); cpu += t[3] + t[5] } END { printf "all go commands: %.0f CPU-s (a go command a test runs is counted in that test run too)\n", cpu }' "$work/go-calls.log"
} | tee "$work/summary.txt"
echo "logs: $work"
exit $status
