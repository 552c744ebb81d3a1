#!/usr/bin/env bash
# Stages a complete build context for the Dockerfile in a directory of its
# own (default bin/image-context): the Dockerfile, the binary
# ($TAILGATE_BIN, default bin/tailgate), the two profiles, the host's CA
# bundle (no base image can be pulled here, and a FROM scratch image needs
# one for TLS to backends), the LICENSE and an empty directory for the
# writable state directory. scripts/build-image.sh stages one per build.
#
# Each caller names its own directory: the image test and the Kubernetes
# tests build in parallel, and neither may see the other's context half
# staged or removed.
#
# Usage: scripts/stage-image-context.sh [DIR]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/image-context}
bin=${TAILGATE_BIN:-$root/bin/tailgate}

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "stage-image-context: $ca missing (apt-get install ca-certificates)" >&2
  exit 1
fi
[ -x "$bin" ] || { echo "stage-image-context: $bin missing (make build)" >&2; exit 1; }
rm -rf "$out"
mkdir -p "$out/bin/image/rootfs/etc/ssl/certs" "$out/bin/image/rootfs/var/lib" "$out/bin/image/empty" "$out/configs"
cp "$ca" "$out/bin/image/rootfs/etc/ssl/certs/ca-certificates.crt"
cp "$bin" "$out/bin/tailgate"
cp "$root/configs/agent.yaml" "$root/configs/gateway.yaml" "$out/configs/"
cp "$root/Dockerfile" "$root/.dockerignore" "$root/LICENSE" "$out/"
