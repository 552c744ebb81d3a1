#!/usr/bin/env bash
# Fetches the release of a project whose CustomResourceDefinitions the live
# tests install, pinned in build/tools/<project>/go.mod, from the module
# proxy (into the Go module cache, once), and prints the directory of its
# CRDs on its last line. Nothing is built:
#   cert-manager         the mtls component's Issuers and Certificates
#   prometheus-operator  the chart's ServiceMonitor, PodMonitor and PrometheusRule
# Usage: scripts/install-crds.sh cert-manager|prometheus-operator
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
case "${1:-}" in
cert-manager)
  module=github.com/cert-manager/cert-manager sub=deploy/crds
  files=(cert-manager.io_certificates.yaml cert-manager.io_issuers.yaml) ;;
prometheus-operator)
  module=github.com/prometheus-operator/prometheus-operator sub=example/prometheus-operator-crd
  files=(monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_podmonitors.yaml monitoring.coreos.com_prometheusrules.yaml) ;;
*)
  echo "usage: $0 cert-manager|prometheus-operator" >&2; exit 2 ;;
esac
dir=$(cd "$root/build/tools/$1" && go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
: "${dir:?cannot download $module}"
for f in "${files[@]}"; do ls "$dir/$sub/$f" >/dev/null; done
echo "$dir/$sub"
