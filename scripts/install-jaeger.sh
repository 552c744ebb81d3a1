#!/usr/bin/env bash
# Builds the Jaeger v2 binary (the tests' real tracing backend) from the
# module proxy through its wrapper module (build/tools/jaeger), into a cache
# outside the clone keyed by version. Idempotent: a later run with the
# binary present does nothing. About 3 minutes and 120 MB when cold.
#
# Prints the binary's path on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mod=$root/build/tools/jaeger
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/tailgate/tools}
version=$(cd "$mod" && go list -m -f '{{.Version}}' github.com/jaegertracing/jaeger)
: "${version:?cannot read the Jaeger version from $mod/go.mod}"
dir=$TOOLS_DIR/jaeger-$version
if [ ! -x "$dir/jaeger" ]; then
  mkdir -p "$dir"
  echo "building jaeger $version into $dir" >&2
  tmp=$(mktemp "$dir/.jaeger.XXXXXX")
  (cd "$mod" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags="-s -w" -o "$tmp" github.com/jaegertracing/jaeger/cmd/jaeger)
  mv "$tmp" "$dir/jaeger"
fi
echo "$dir/jaeger"
