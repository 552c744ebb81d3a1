#!/usr/bin/env bash
# Prints the release's identity as KEY=VALUE lines, each read from its one
# home: the distribution's version and the upstream releases it bundles
# from builder-config.yaml (dist.version: VERSION+otelcol.core.<core>.contrib.<contrib>),
# the revision from git. The Makefile (image, sbom, chart) and
# scripts/build-image.sh read it; a test checks the build metadata against
# the components' versions.
#
# Usage: scripts/release-info.sh [KEY]   (one KEY: its value alone)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
full=$(sed -n 's/^  version: *//p' "$root/builder-config.yaml" | head -1)
[[ $full =~ ^([0-9]+\.[0-9]+\.[0-9]+[^+]*)\+otelcol\.core\.(v[0-9.]+[0-9])\.contrib\.(v[0-9.]+[0-9])$ ]] || {
  echo "release-info: builder-config.yaml dist.version $full is not VERSION+otelcol.core.vX.Y.Z.contrib.vX.Y.Z" >&2
  exit 1
}
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [ "$revision" != unknown ] && [ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision=$revision-dirty
fi
info=$(cat <<INFO
VERSION=${BASH_REMATCH[1]}
DIST_VERSION=$full
OTELCOL_CORE=${BASH_REMATCH[2]}
OTELCOL_CONTRIB=${BASH_REMATCH[3]}
REVISION=$revision
SOURCE=https://github.com/tailgate-dev/tailgate
LICENSES=Apache-2.0
INFO
)
if [ $# -eq 1 ]; then
  sed -n "s/^$1=//p" <<<"$info"
else
  echo "$info"
fi
