#!/usr/bin/env bash
# Installs the system packages the tests need, idempotently: apt runs only
# when something is missing. Go tools (ocb, the Kubernetes control plane)
# are installed by the Makefile and scripts/install-controlplane.sh.
set -euo pipefail

need=()
command -v podman >/dev/null || need+=(podman)
[ -s /etc/ssl/certs/ca-certificates.crt ] || need+=(ca-certificates)
command -v ip >/dev/null || need+=(iproute2)
command -v unshare >/dev/null || need+=(util-linux)
command -v chroot >/dev/null || need+=(coreutils)
command -v make >/dev/null || need+=(make)
command -v git >/dev/null || need+=(git)
# Runs the arm64 image's binary under emulation (test/image).
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
# The real nodes (test/k8s/cluster Node): runc's seccomp support (cgo),
# and the pause image's static binary (gcc, libc6-dev).
[ -e /usr/include/seccomp.h ] || need+=(libseccomp-dev)
command -v pkg-config >/dev/null || need+=(pkg-config)
command -v gcc >/dev/null || need+=(gcc)
[ -n "$(gcc -print-file-name=libc.a 2>/dev/null | grep /)" ] || need+=(libc6-dev)
command -v iptables >/dev/null || need+=(iptables)
# kube-router, the nodes' NetworkPolicy implementation, drives ipset's CLI.
command -v ipset >/dev/null || need+=(ipset)

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v go >/dev/null || { echo "ci-deps: Go is required (see go.mod for the version)" >&2; exit 1; }
