#!/usr/bin/env bash
# Builds the Kubernetes control plane the Kubernetes tests run (etcd,
# kube-apiserver, kube-controller-manager, kubectl) and the real nodes'
# Kubernetes binaries (kube-scheduler, kubelet, kube-proxy) from the module proxy,
# into a cache outside the clone keyed by version. Idempotent: a later run
# with the binaries present does nothing. Versions are the ones pinned in
# the wrapper modules. go.mod under build/tools/.
#
# Prints the directory holding the binaries on its last line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

TOOLS_DIR=${TOOLS_DIR:-$HOME/.cache/tailgate/tools}
kube_mod=build/tools/kubernetes
etcd_mod=build/tools/etcd
kube_version=$(cd $kube_mod && go list -m -f '{{.Version}}' k8s.io/kubernetes)
etcd_version=$(cd $etcd_mod && go list -m -f '{{.Version}}' go.etcd.io/etcd/server/v3)
: "${kube_version:?cannot read the Kubernetes version from $kube_mod/go.mod}"
: "${etcd_version:?cannot read the etcd version from $etcd_mod/go.mod}"

kube_dir=$TOOLS_DIR/kubernetes-$kube_version
etcd_dir=$TOOLS_DIR/etcd-$etcd_version
out=$TOOLS_DIR/controlplane-$kube_version-etcd-$etcd_version

# One build at a time (see install-go-tool.sh).
mkdir -p "$TOOLS_DIR"
exec 9>"$TOOLS_DIR/.controlplane-$kube_version-etcd-$etcd_version.lock"
flock 9

build() { # dir binary package ldflags module-dir
  local dir=$1 bin=$2 pkg=$3 ldflags=$4 mod=$5
  [ -x "$dir/$bin" ] && return 0
  mkdir -p "$dir"
  echo "building $bin ($pkg) into $dir" >&2
  local tmp
  tmp=$(mktemp "$dir/.$bin.XXXXXX")
  (cd "$root/$mod" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags="-s -w $ldflags" -o "$tmp" "$pkg")
  mv "$tmp" "$dir/$bin"
}

IFS=. read -r major minor _ <<<"${kube_version#v}"
# The version the binaries report (kubectl version, /version), as release builds do.
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
build "$etcd_dir" etcd . "" $etcd_mod
# kube-scheduler, kubelet and kube-proxy are the real nodes' (test/k8s/cluster
# Node); they share the control plane's packages (~100 s more, warm).
for bin in kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy; do
  build "$kube_dir" $bin k8s.io/kubernetes/cmd/$bin "$kube_ldflags" $kube_mod
done

mkdir -p "$out"
for f in "$etcd_dir/etcd" "$kube_dir"/kube-apiserver "$kube_dir"/kube-controller-manager "$kube_dir"/kube-scheduler "$kube_dir"/kubectl "$kube_dir"/kubelet "$kube_dir"/kube-proxy; do
  ln -sf "$f" "$out/$(basename "$f")"
done
echo "$out"
