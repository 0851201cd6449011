#!/usr/bin/env bash
# One device run (issues: GPU validation of the kernels and of the end-to-end Detector).
# Installs aedfast over the machine's torch, runs the GPU tests (Triton compiled for real),
# measures the ceilings (copy bandwidth, bf16 matmul), runs the kernel and end-to-end
# benchmarks against eager PyTorch, and writes results.{json,md,png} + log.txt into $OUT.
#
# Usage (repository root, on the GPU machine):  OUT=/tmp/out bash bench/gpu_check.sh [STAGES]
# STAGES: any of install tests ceilings motion cvt smoothing e2e profile (default: all).
# Each stage has its own time limit, so one slow stage cannot eat the whole run.
set -u
OUT=${OUT:-/tmp/aedfast-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 AEDFAST_BENCH_OUT="$OUT" AEDFAST_TEST_GPU=1
STAGES=${*:-install tests ceilings motion cvt smoothing e2e profile}
LOG="$OUT/log.txt"
CMD="bash bench/gpu_check.sh ${*:-}"
has() { case " $STAGES " in *" $1 "*) return 0;; esac; return 1; }
stage() { echo "== $(date -u +%T) $*" | tee -a "$LOG"; }
run() { local limit=$1; shift; timeout --signal=INT --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"; }

if has install; then
  stage install
  # the machine has no package index: keep its torch/triton, build without isolation
  run 120 python3 -m pip install -q --no-deps --no-build-isolation -e . || true
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem,power.draw,temperature.gpu \
    --format=csv | tee -a "$LOG"
  run 60 python3 -m aedfast info
fi
if has tests; then
  stage tests
  run 240 python3 -m pytest -x -q -p no:cacheprovider tests/test_motion.py tests/test_cvt.py \
    tests/test_smoothing.py tests/test_engine.py -k "not rss and not memory_flat"
fi
if has ceilings; then
  stage ceilings
  run 60 python3 -m bench.ceilings
fi
for k in motion cvt smoothing e2e; do
  if has $k; then
    stage "bench $k"
    run 240 python3 -m pytest -q -p no:cacheprovider "bench/test_bench_$k.py" --benchmark-disable-gc
  fi
done
if has profile; then
  stage profile
  run 120 python3 -m bench.profile_e2e
fi
stage summarize
python3 -m bench.summarize "$OUT" "$CMD" | tail -60
stage done
