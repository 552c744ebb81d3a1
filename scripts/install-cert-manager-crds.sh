#!/usr/bin/env bash
# Fetches the cert-manager release pinned in build/tools/cert-manager/go.mod
# from the module proxy (into the Go module cache, once) and prints the
# directory of its CustomResourceDefinitions on its last line. The live
# tests install them to apply the mtls component's objects; nothing is built.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=$(cd "$root/build/tools/cert-manager" && go mod download -json github.com/cert-manager/cert-manager | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
: "${dir:?cannot download github.com/cert-manager/cert-manager}"
ls "$dir"/deploy/crds/cert-manager.io_certificates.yaml "$dir"/deploy/crds/cert-manager.io_issuers.yaml >/dev/null
echo "$dir/deploy/crds"
