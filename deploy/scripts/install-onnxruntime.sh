#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that the worker loads, pinned by version and sha256.
# Source: the npm registry's onnxruntime-node package, which ships libonnxruntime.so for linux/x64.
# Fallback for machines without npm: the official release archive (ORT_ARCHIVE_URL).
set -euo pipefail

version=${ORT_VERSION:?ORT_VERSION must be set}
want=${ORT_SHA256:?ORT_SHA256 must be set}
dest=${ORT_DIR:?ORT_DIR must be set}
lib="$dest/libonnxruntime.so"

if [ -f "$lib" ] && echo "$want  $lib" | sha256sum --check --status; then
  exit 0
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$dest"

if command -v npm >/dev/null && (cd "$tmp" && npm pack --silent "onnxruntime-node@$version" >/dev/null); then
  tar -xzf "$tmp"/onnxruntime-node-"$version".tgz -C "$tmp" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
  got=$(sha256sum "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    echo "onnxruntime-node@$version: libonnxruntime.so.1 has sha256 $got, want $want" >&2
    exit 1
  fi
  mv "$tmp/package/bin/napi-v6/linux/x64/libonnxruntime.so.1" "$lib"
else
  url=${ORT_ARCHIVE_URL:-https://github.com/microsoft/onnxruntime/releases/download/v$version/onnxruntime-linux-x64-$version.tgz}
  echo "npm unavailable; fetching $url" >&2
  curl -fsSL "$url" -o "$tmp/ort.tgz"
  if [ -n "${ORT_ARCHIVE_SHA256:-}" ]; then
    echo "$ORT_ARCHIVE_SHA256  $tmp/ort.tgz" | sha256sum --check --status || { echo "release archive sha256 mismatch" >&2; exit 1; }
  fi
  tar -xzf "$tmp/ort.tgz" -C "$tmp"
  cp "$tmp/onnxruntime-linux-x64-$version/lib/libonnxruntime.so.$version" "$lib"
fi
echo "installed ONNX Runtime $version at $lib"
