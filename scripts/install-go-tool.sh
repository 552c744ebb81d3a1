#!/usr/bin/env bash
# Builds third-party Go programs the tests run from the module proxy,
# through their wrapper module under build/tools/<name> (Helm and
# Prometheus: build/tools/kubernetes, see there), into a cache
# outside the clone keyed by the version the wrapper pins. Idempotent: a
# later run with the binaries present does nothing.
#
#   scripts/install-go-tool.sh jaeger|prometheus|prometheus-adapter|telemetrygen|helm|cyclonedx-gomod|registry|oras|containerd|runc|cni-plugins|kube-router
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:?usage: install-go-tool.sh jaeger|prometheus|prometheus-adapter|telemetrygen|helm|cyclonedx-gomod|registry|oras|containerd|runc|cni-plugins|kube-router}
tags="" wrapper=$name cgo=0 gcflags=""
# Built without optimizations: the tools only one test runs, for seconds
# and at a test's scale (Jaeger, prometheus-adapter, the registry, ORAS,
# cyclonedx-gomod, kube-router). Their modules pin their releases' own
# library versions, so they share few compiled packages with the other
# builds, and compiling without optimizations (-N, no inlining -l) takes a
# fifth to a quarter less CPU cold (from an empty build cache: Jaeger 718
# CPU-s optimized, 587 not; the registry 276 and 208). What runs the whole
# suite (the control plane, the nodes), Prometheus and Helm (which share
# the control plane's packages) and telemetrygen (the load) stay
# optimized.
unoptimized="-gcflags=all=-N -l"
case $name in
  # Jaeger v2 all-in-one: the tests' real tracing backend. ~3 min, ~85 MB.
  jaeger) module=github.com/jaegertracing/jaeger bins=(jaeger=cmd/jaeger) gcflags=$unoptimized ;;
  # Prometheus server and promtool with only the Kubernetes service
  # discovery (plus file and http), through upstream's build tags for
  # choosing discovery plugins. ~2 min after the control plane (~4 alone), 76 + 54 MB.
  prometheus)
    module=github.com/prometheus/prometheus bins=(prometheus=cmd/prometheus promtool=cmd/promtool)
    tags=remove_all_sd,enable_kubernetes_sd wrapper=kubernetes ;;
  # custom.metrics.k8s.io from Prometheus, for the autoscaling test. ~2 min, ~60 MB.
  prometheus-adapter) module=sigs.k8s.io/prometheus-adapter bins=(prometheus-adapter=cmd/adapter) gcflags=$unoptimized ;;
  # Upstream's OTLP load generator, the real-client load in the tests. ~20 s, 17 MB.
  telemetrygen) module=github.com/open-telemetry/opentelemetry-collector-contrib/cmd/telemetrygen bins=(telemetrygen=) ;;
  # The Helm CLI: the chart's lint, template, install, upgrade and uninstall tests. ~1 min after the control plane (~4 alone), ~67 MB.
  helm) module=helm.sh/helm/v4 bins=(helm=cmd/helm) wrapper=kubernetes ;;
  # CycloneDX bill of materials of the shipped binary (`make sbom`). ~30 s, ~20 MB.
  cyclonedx-gomod) module=github.com/CycloneDX/cyclonedx-gomod bins=(cyclonedx-gomod=cmd/cyclonedx-gomod) gcflags=$unoptimized ;;
  # The CNCF Distribution registry: the real OCI registry the release test
  # publishes to and installs from. ~1 min, ~30 MB.
  registry) module=github.com/distribution/distribution/v3 bins=(registry=cmd/registry) gcflags=$unoptimized ;;
  # The ORAS CLI: `make release` copies the image's OCI layout and attaches
  # the SBOMs as referrers. ~30 s, ~15 MB.
  oras) module=oras.land/oras bins=(oras=cmd/oras) gcflags=$unoptimized ;;
  # The real nodes' container runtime (test/k8s/cluster Node): containerd
  # with its runc shim and ctr (images are imported with it), without the
  # snapshotters that need cgo or kernel tools the nodes do not use. ~75 s.
  containerd)
    module=github.com/containerd/containerd/v2
    bins=(containerd=cmd/containerd containerd-shim-runc-v2=cmd/containerd-shim-runc-v2 ctr=cmd/ctr)
    tags=no_btrfs,no_devmapper,no_zfs ;;
  # The OCI runtime under containerd: cgo for its namespace setup, seccomp
  # for pods that set a seccomp profile (libseccomp-dev). ~25 s.
  runc) module=github.com/opencontainers/runc bins=(runc=) tags=seccomp cgo=1 ;;
  # The pod network of the real nodes (see build/tools/cni-plugins). ~10 s.
  cni-plugins)
    module=github.com/containernetworking/plugins
    bins=(ptp=plugins/main/ptp host-local=plugins/ipam/host-local loopback=plugins/main/loopback portmap=plugins/meta/portmap) ;;
  # The real nodes' NetworkPolicy implementation (see build/tools/kube-router). ~2 min, ~85 MB.
  kube-router) module=github.com/cloudnativelabs/kube-router/v2 bins=(kube-router=cmd/kube-router) gcflags=$unoptimized ;;
  *) echo "install-go-tool.sh: unknown tool $name" >&2; exit 2 ;;
esac
mod=$root/build/tools/$wrapper
TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/tailgate/tools}
version=$(cd "$mod" && go list -m -f '{{.Version}}' "$module")
: "${version:?cannot read the $module version from $mod/go.mod}"
dir=$TOOLS_DIR/$name-$version
mkdir -p "$dir"
# One build per tool at a time: a second caller (another test package
# asking for the same tool) waits for the build in progress instead of
# starting its own.
exec 9>"$dir/.lock"
flock 9
for b in "${bins[@]}"; do
  bin=${b%%=*} sub=${b#*=}
  pkg=$module${sub:+/$sub}
  [ -x "$dir/$bin" ] && continue
  mkdir -p "$dir"
  echo "building $bin ($pkg $version) into $dir" >&2
  tmp=$(mktemp "$dir/.$bin.XXXXXX")
  trap 'rm -f "$tmp"' EXIT # a failed or killed build leaves nothing behind
  (cd "$mod" && CGO_ENABLED=$cgo go build -mod=readonly -trimpath -tags "$tags" ${gcflags:+"$gcflags"} -ldflags="-s -w" -o "$tmp" "$pkg")
  mv "$tmp" "$dir/$bin"
  trap - EXIT
done
echo "$dir"
