#!/usr/bin/env bash
# Stages what the Dockerfile copies besides bin/tailgate and configs/: the
# host's CA bundle (no base image can be pulled here, and a FROM scratch
# image needs one for TLS to backends) and an empty directory for the
# writable state directory.
set -euo pipefail
cd "$(dirname "$0")/.."

ca=/etc/ssl/certs/ca-certificates.crt
if [ ! -s "$ca" ]; then
  echo "stage-image-context: $ca missing (apt-get install ca-certificates)" >&2
  exit 1
fi
rm -rf bin/image
mkdir -p bin/image/rootfs/etc/ssl/certs bin/image/rootfs/var/lib bin/image/empty
cp "$ca" bin/image/rootfs/etc/ssl/certs/ca-certificates.crt
