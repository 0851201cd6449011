#!/usr/bin/env bash
# Creates .venv and installs aedfast with its test extras. torch is installed first, on
# purpose: a bare `torch` requirement would make pip fetch a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  pip install -q --disable-pip-version-check "torch==${AEDFAST_TORCH_VERSION:-2.13.0}"
fi
pip install -q --disable-pip-version-check -e ".[test,triton]"
