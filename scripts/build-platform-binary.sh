#!/usr/bin/env bash
# Cross-compiles bin/linux-<arch>/tailgate through make, which rebuilds it
# only when its sources changed, one build at a time: a second caller
# waits for the build in progress instead of starting its own.
#
#   scripts/build-platform-binary.sh arm64
#
# Prints the binary's path on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
arch=${1:?usage: build-platform-binary.sh <arch>}
mkdir -p "$root/bin"
exec 9>"$root/bin/.linux-$arch.lock"
flock 9
"${MAKE:-make}" -C "$root" -s --no-print-directory "bin/linux-$arch/tailgate" >&2
echo "$root/bin/linux-$arch/tailgate"
