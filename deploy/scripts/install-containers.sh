#!/usr/bin/env bash
# Installs podman, runc and debootstrap from Debian's packages when they are
# missing, and makes the base image the Dockerfile builds on here: Debian's
# minbase of this machine's release with CA certificates, from the machine's own apt mirror, as
# localhost/debian:<release>-minbase-ca. Nothing outside the repository changes
# but the packages and podman's image store.
set -euo pipefail

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "installing podman and making images needs root (apt-get, podman)" >&2; exit 1; }
  sudo=sudo
fi
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get install -y podman runc debootstrap >/dev/null 2>&1 ||
    { $sudo apt-get update >/dev/null && $sudo apt-get install -y podman runc debootstrap >/dev/null; }
fi
release=$(. /etc/os-release && echo "$VERSION_CODENAME")
image="localhost/debian:$release-minbase-ca"
if podman image exists "$image"; then
  exit 0
fi
# The mirror this machine's apt uses, never a name written here.
mirror=$(awk '$1 == "URIs:" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
  echo "no Debian mirror in this machine's apt sources" >&2
  exit 1
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$sudo debootstrap --variant=minbase --include=ca-certificates "$release" "$tmp/rootfs" "$mirror" >/dev/null
tar -C "$tmp/rootfs" -c . | podman import --quiet - "$image" >/dev/null
echo "made $image"
