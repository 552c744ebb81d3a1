#!/usr/bin/env bash
# Builds the tailgate image for one platform from a host-built static
# binary, with the release's identity (scripts/release-info.sh) as OCI
# labels and manifest annotations. `make image` runs it once per platform
# into one manifest list; the image tests and the Kubernetes tests run it
# for the platform they test.
#
# Usage: scripts/build-image.sh TAG PLATFORM BINARY
#   PLATFORM: linux/amd64 or linux/arm64; BINARY: tailgate built for it.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:?usage: build-image.sh TAG PLATFORM BINARY}
platform=${2:?usage: build-image.sh TAG PLATFORM BINARY}
bin=${3:?usage: build-image.sh TAG PLATFORM BINARY}
engine=${CONTAINER_ENGINE:-$(command -v podman || command -v docker || true)}
[ -n "$engine" ] || { echo "build-image: neither podman nor docker found (apt-get install podman)" >&2; exit 1; }

context=$(mktemp -d "${TMPDIR:-/tmp}/tailgate-image-context.XXXXXX")
trap 'rm -rf "$context"' EXIT
TAILGATE_BIN=$bin "$root/scripts/stage-image-context.sh" "$context"

# --no-cache: the labels take the build arguments, and the layer cache
# would keep an earlier build's (its key is the LABEL line as written);
# FROM scratch with three COPYs, a build without it takes seconds.
args=(build -q --no-cache --platform "$platform" -f "$context/Dockerfile" -t "$tag")
# The release's identity, read once: the Dockerfile's build arguments
# (its labels) and the same values as the manifest's annotations.
declare -A info
while IFS='=' read -r key value; do info[$key]=$value; done < <("$root/scripts/release-info.sh")
for key in VERSION REVISION SOURCE LICENSES OTELCOL_CORE OTELCOL_CONTRIB; do
  args+=(--build-arg "$key=${info[$key]}")
done
for a in "org.opencontainers.image.version=${info[VERSION]}" \
         "org.opencontainers.image.revision=${info[REVISION]}" \
         "org.opencontainers.image.source=${info[SOURCE]}" \
         "org.opencontainers.image.licenses=${info[LICENSES]}" \
         "dev.tailgate.otelcol.core.version=${info[OTELCOL_CORE]}" \
         "dev.tailgate.otelcol.contrib.version=${info[OTELCOL_CONTRIB]}"; do
  args+=(--annotation "$a")
done
"$engine" "${args[@]}" "$context" >/dev/null
