#!/usr/bin/env bash
# Installs the ONNX backend test models that `make conformance` deploys: Debian's
# libonnx-testdata (node, pytorch-converted, pytorch-operator and simple cases,
# each a model.onnx with test_data_set_0/input_*.pb and output_*.pb).
set -euo pipefail

dir=${ONNX_TESTDATA:?ONNX_TESTDATA must be set}
[ -d "$dir" ] && exit 0

sudo=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "installing libonnx-testdata needs root (apt-get)" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y --no-install-recommends libonnx-testdata >/dev/null 2>&1 ||
  { $sudo apt-get update >/dev/null && $sudo apt-get install -y --no-install-recommends libonnx-testdata; }
[ -d "$dir" ] || { echo "libonnx-testdata installed, but $dir is missing" >&2; exit 1; }
