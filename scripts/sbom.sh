#!/usr/bin/env bash
# Writes the CycloneDX bill of materials (JSON) of a tailgate binary with
# cyclonedx-gomod (built by scripts/install-go-tool.sh): every Go module
# linked into it, at the version the Go toolchain recorded in the binary,
# under the release's version. `make sbom` runs it for each platform's
# binary; a test checks its output against builder-config.yaml.
#
# Without -licenses: licence detection downloads every module again with
# `go mod download`, which refuses the in-house components' local
# replacements and the unpublished main module, and then attaches none.
# The distribution's own licence is the image's (LICENSE, and its label).
#
# Usage: scripts/sbom.sh BINARY OUTPUT
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${1:?usage: sbom.sh BINARY OUTPUT}
out=${2:?usage: sbom.sh BINARY OUTPUT}
tool=$("$root/scripts/install-go-tool.sh" cyclonedx-gomod | tail -1)/cyclonedx-gomod
"$tool" bin -json -version "$("$root/scripts/release-info.sh" VERSION)" -output "$out" "$bin"
