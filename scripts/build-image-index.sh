#!/usr/bin/env bash
# Builds the image for every platform given (scripts/build-image.sh, one
# image each: TAG-<arch>) and assembles them into one manifest list, TAG,
# which it also writes as an OCI image layout (the release artifact, which
# `skopeo copy --all oci:DIR:VERSION docker://...` or any OCI tool pushes).
# `make image` runs it; the image test runs it and reads the layout.
#
# Usage: scripts/build-image-index.sh TAG OCI_DIR ARCH=BINARY...
#   e.g. scripts/build-image-index.sh localhost/tailgate:0.2.0 bin/oci amd64=bin/linux-amd64/tailgate arm64=...
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tag=${1:?usage: build-image-index.sh TAG OCI_DIR ARCH=BINARY...}
oci=${2:?usage: build-image-index.sh TAG OCI_DIR ARCH=BINARY...}
shift 2
[ $# -gt 0 ] || { echo "build-image-index: no ARCH=BINARY given" >&2; exit 2; }
engine=${CONTAINER_ENGINE:-$(command -v podman || true)}
[ -n "$engine" ] || { echo "build-image-index: podman not found (apt-get install podman)" >&2; exit 1; }

"$engine" manifest rm "$tag" >/dev/null 2>&1 || "$engine" rmi -f "$tag" >/dev/null 2>&1 || true
"$engine" manifest create "$tag" >/dev/null
for pair in "$@"; do
  arch=${pair%%=*} bin=${pair#*=}
  "$root/scripts/build-image.sh" "$tag-$arch" "linux/$arch" "$bin"
  "$engine" manifest add "$tag" "containers-storage:$tag-$arch" >/dev/null
done
rm -rf "$oci"
mkdir -p "$(dirname "$oci")"
"$engine" manifest push --all --quiet "$tag" "oci:$oci:${tag##*:}" >/dev/null
