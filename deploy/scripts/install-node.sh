#!/usr/bin/env bash
# Installs what the Kubernetes test node runs beside the kubelet, from Debian's
# packages, when it is missing: containerd and runc (the container runtime),
# the CNI plugins (the pod network: bridge, host-local, portmap, loopback),
# iptables (kube-proxy's Services) and conntrack.
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "installing containerd needs root (apt-get)" >&2; exit 1; }
  sudo=sudo
fi
packages="containerd runc containernetworking-plugins iptables conntrack"
if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || ! command -v iptables >/dev/null ||
  ! command -v conntrack >/dev/null || [ ! -x /usr/lib/cni/bridge ]; then
  export DEBIAN_FRONTEND=noninteractive
  # shellcheck disable=SC2086
  $sudo apt-get install -y $packages >/dev/null 2>&1 ||
    { $sudo apt-get update >/dev/null && $sudo apt-get install -y $packages >/dev/null; }
fi
