#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and kwok (the
# control plane and its fake nodes), and kubelet, kube-proxy and CoreDNS (the real test node), from
# the Go module proxy into $KUBE_BIN, for the Kubernetes tests (no Docker, no downloads of binaries).
# A cold build takes 15-20 minutes on 2 cores; the Go build cache makes later ones quick.
set -euo pipefail
cd "$(dirname "$0")"
bin=${KUBE_BIN:?KUBE_BIN must be set}
version=${KUBE_VERSION:?KUBE_VERSION must be set}
kwok_version=${KWOK_VERSION:?KWOK_VERSION must be set}
mkdir -p "$bin"
bin=$(cd "$bin" && pwd)

minor=$(echo "$version" | cut -d. -f2)
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  stamp+=" -X $pkg.gitTreeState=clean -X $pkg.gitCommit=module-proxy -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

echo "building Kubernetes $version control plane and node into $bin (cold: ~18 min)" >&2
go build -trimpath -ldflags "-s -w $stamp" -o "$bin/" \
  k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
(cd etcd && go build -trimpath -ldflags "-s -w" -o "$bin/etcd" .)
(cd coredns && go build -trimpath -ldflags "-s -w" -o "$bin/coredns" .)
GOBIN="$bin" GOFLAGS=-mod=mod go install "sigs.k8s.io/kwok/cmd/kwok@$kwok_version"
echo "$version" > "$bin/VERSION"
