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
# Optional video decoding with torchcodec (docs/design.md §12; tests/test_decode.py skips its
# torchcodec tests, with the reason, where this fails): FFmpeg's shared libraries from the
# system's packages (as root with apt-get only; AEDFAST_NO_FFMPEG=1 skips this), and, on a
# CPU-only torch, torchcodec 0.13.0, the last CPU build on PyPI (later ones need CUDA torch).
if [ "${AEDFAST_NO_FFMPEG:-0}" != 1 ] && ! ldconfig -p 2>/dev/null | grep -q 'libavcodec\.so\.'; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing FFmpeg's shared libraries (apt-get install ffmpeg) for torchcodec"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
        --no-install-recommends ffmpeg >/dev/null; } \
      || echo "setup: apt-get could not install ffmpeg; decoding with torchcodec is off" >&2
  else
    echo "setup: no FFmpeg shared libraries (libavcodec); decoding with torchcodec is off" \
      "until they are installed (e.g. apt-get install ffmpeg)" >&2
  fi
fi
if python -c "import importlib.util as u, sys, torch
sys.exit(u.find_spec('torchcodec') is not None or torch.version.cuda is not None)"; then
  pip install -q --disable-pip-version-check "torchcodec==0.13.0" \
    || echo "setup: torchcodec did not install; decoding with torchcodec is off" >&2
fi
