#!/usr/bin/env bash
# The GPU check: one short device run that proves aedfast on a GPU (see bench/gpu_check.py).
#
#   bash bench/gpu_check.sh core       # <= 420 s: install, imports, GPU tests, e2e, profile
#   bash bench/gpu_check.sh kernels    # <= 240 s: ceilings, autotune entries, kernel benches
#   bash bench/gpu_check.sh --plan     # the stages, their limits and sums
#   bash bench/gpu_check.sh --rehearse [core|kernels|all]   # the same on this CPU, tiny sizes
#
# Results (results.json, results.md, results.png, log.txt) go to $OUT (or --out DIR); they
# are written even when a stage fails or is cut. The Python driver keeps every stage's exit
# status (no pipes) and kills a stage's whole process group at its limit.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
# a CPU machine's python3 may lack torch; the project's .venv has it (the GPU machine's
# python3 has torch, and no .venv travels there)
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && ! python3 -c \
    "import importlib.util, sys; sys.exit(importlib.util.find_spec('torch') is None)" \
    2>/dev/null; then
  PY=.venv/bin/python
fi
export AEDFAST_GPU_CHECK_CMD="bash bench/gpu_check.sh $*"
exec "$PY" -m bench.gpu_check "$@"
