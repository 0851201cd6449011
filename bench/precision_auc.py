"""bf16 against fp32 on the synthetic benchmark: the same trained model and test videos
scored at both precisions (compiled "torch" backend on the CPU, "triton" on CUDA), reporting
micro/macro AUC, the largest relative frame-score difference and frames/s.

Usage: python -m bench.precision_auc DEMO_OUT   (a finished `aedfast demo` / `make demo`
folder: its data/ and model/aed_tiny.safetensors). Writes
bench/results/<date>-<device>-precision.{json,md}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from aedfast import Detector, evaluate, open_dataset
from bench.common import bench_device, device_info


def main(demo_out: str) -> Path:
    root = Path(demo_out)
    ckpt = root / "model" / "aed_tiny.safetensors"
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt} not found: run `make demo` (or aedfast demo --out {root})")
    dataset = open_dataset(root / "data", "shanghaitech")
    device = bench_device()
    rows, scores = {}, {}
    for precision in ("fp32", "bf16"):
        det = Detector(ckpt, device=device, precision=precision)  # default scoring
        det.score_video(dataset.test[0].frames(0, 16))  # compile outside the timing
        res = evaluate(det, dataset, protocol="paper", progress=False, localization=False)
        rows[precision] = {k: res[k] for k in ("micro_auc", "macro_auc", "fps", "frames")}
        scores[precision] = np.concatenate([det.score_video(v.frames()).scores
                                            for v in dataset.test])
    a, b = scores["fp32"], scores["bf16"]
    rel = float(np.abs(a - b).max() / max(np.abs(a).max(), 1e-12))
    info = device_info(device)
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    base = Path(__file__).parent / "results" / f"{stamp}-{device.type}-precision"
    out = {"command": f"python -m bench.precision_auc {demo_out}", "machine": info,
           "results": rows, "max_rel_score_diff": rel}
    base.with_suffix(".json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [f"# bf16 vs fp32 on the synthetic benchmark ({info['name']}, {device.type}, "
             f"torch {info['torch']}, {info['date']})", "",
             f"Command: `{out['command']}`", "",
             "| precision | micro AUC | macro AUC | frames/s | frames |", "|---|---|---|---|---|"]
    for p, r in rows.items():
        lines.append(f"| {p} | {r['micro_auc']:.4f} | {r['macro_auc']:.4f} | {r['fps']:.1f} | "
                     f"{r['frames']} |")
    lines += ["", f"Largest relative frame-score difference bf16 vs fp32: {rel:.2e}", ""]
    base.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return base


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "demo_out")
