"""End to end on the CPU, each side in its own fresh, warmed process: the fair baseline.

`bench/test_bench_e2e.py` times the fast path and the eager baseline in one process, where the
eager side pays for the allocator state that the other detectors left behind (its rounds
spread from 8.7 to 12.5 frames/s in bench/results/2026-11-27-cpu-b). Here every timed side is
a new Python process that builds its own Detector (same weights: seed 0; same frames; same
noise), runs one untimed warm-up (compilation included) and then `--rounds` timed rounds of
`score_video` on the same frames. The parent alternates the sides' processes (eager, fast,
eager, fast, ... `--procs` of each) so that drift of a shared machine hits both alike, and
reports per side the median and the best round over all its processes, their ratios, and
the largest relative difference of the two sides' scores.

    python -m bench.fair_e2e --out bench/results/DATE-cpu-fair [--presets avenue shanghaitech]
        [--batch 8] [--frames 32] [--rounds 3] [--procs 2]

Writes results.json and results.md (command, machine, versions, every round) into --out.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

NATIVE = {"avenue": (360, 640), "shanghaitech": (480, 856), "tiny": (72, 136)}
# the score floor off on both sides: floored scores are differences of scores, whose relative
# error would measure that cancellation rather than the fast path's precision
SIDES = {
    "eager": {"backend": "eager", "compile": False, "cuda_graphs": False, "precision": "fp32",
              "smoothing": {"floor": None}},
    "fast": {"precision": "fp32", "smoothing": {"floor": None}},
}


def native_frames(preset: str, n: int, seed: int = 0) -> np.ndarray:
    """n BGR uint8 frames at the data set's native size: noise plus a moving block (also the
    frames of bench/test_bench_e2e.py)."""
    h, w = NATIVE[preset]
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 80, (h, w, 3), dtype=np.uint8)
    out = np.repeat(base[None], n, axis=0)
    side = min(60, h // 4, w // 4)
    for t in range(n):
        x = (7 * t) % (w - side)
        out[t, h // 3:h // 3 + side, x:x + side] = (30, 200, 90)
    return out


def worker(preset: str, side: str, batch: int, n: int, rounds: int, out: Path) -> None:
    """One side in this process: build, warm, time `rounds` rounds; write fps and scores."""
    import torch

    from aedfast import AEDMAE, Detector

    torch.manual_seed(0)
    model = AEDMAE.from_preset(preset).eval()
    t0 = time.perf_counter()
    det = Detector(model, device="cpu", batch_size=batch, **SIDES[side])
    src = native_frames(preset, n)
    det.score_video(src)  # warm-up: compile (fast side), allocator, caches
    warm_s = time.perf_counter() - t0
    fps, scores = [], None
    for _ in range(rounds):
        t = time.perf_counter()
        scores = det.score_video(src).scores
        fps.append(n / (time.perf_counter() - t))
    np.savez(out, fps=np.asarray(fps), scores=scores, warm_s=warm_s,
             describe=json.dumps(det.describe()))


def run_side(preset: str, side: str, args: argparse.Namespace, tmp: Path, k: int) -> dict:
    out = tmp / f"{preset}-{side}-{k}.npz"
    cmd = [sys.executable, "-m", "bench.fair_e2e", "--worker", preset, side, str(out),
           "--batch", str(args.batch), "--frames", str(args.frames), "--rounds", str(args.rounds)]
    subprocess.run(cmd, check=True, cwd=Path(__file__).resolve().parents[1])
    z = np.load(out)
    return {"fps": [round(float(v), 2) for v in z["fps"]], "scores": z["scores"],
            "warm_s": round(float(z["warm_s"]), 1), "describe": json.loads(str(z["describe"]))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", nargs=3, metavar=("PRESET", "SIDE", "OUT"))
    p.add_argument("--out", default=None)
    p.add_argument("--presets", nargs="+", default=["avenue", "shanghaitech"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--procs", type=int, default=2)
    args = p.parse_args()
    if args.worker:
        preset, side, out = args.worker
        worker(preset, side, args.batch, args.frames, args.rounds, Path(out))
        return
    if args.out is None:
        p.error("--out is required")
    import torch

    from aedfast.checkpoint import atomic_write

    rows = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for preset in args.presets:
            got: dict = {"eager": [], "fast": []}
            for k in range(args.procs):
                for side in ("eager", "fast"):
                    r = run_side(preset, side, args, tmp, k)
                    got[side].append(r)
                    print(f"{preset} {side} process {k}: {r['fps']} frames/s "
                          f"(warm-up {r['warm_s']} s)", flush=True)
            row = {"preset": preset, "batch": args.batch, "frames": args.frames,
                   "rounds_per_process": args.rounds, "processes_per_side": args.procs,
                   "fast": got["fast"][0]["describe"]}
            for side in ("eager", "fast"):
                allr = [v for r in got[side] for v in r["fps"]]
                row[f"{side}_fps_rounds"] = [r["fps"] for r in got[side]]
                row[f"{side}_fps_median"] = round(statistics.median(allr), 2)
                row[f"{side}_fps_best"] = round(max(allr), 2)
                row[f"{side}_warm_s"] = [r["warm_s"] for r in got[side]]
            row["speedup_median"] = round(row["fast_fps_median"] / row["eager_fps_median"], 2)
            row["speedup_best"] = round(row["fast_fps_best"] / row["eager_fps_best"], 2)
            a, b = got["fast"][0]["scores"], got["eager"][0]["scores"]
            row["score_rel_err"] = float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))
            rows.append(row)
    cmd = "python -m bench.fair_e2e " + " ".join(sys.argv[1:])
    meta = {"command": cmd, "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "processor": platform.processor(),
            "cpus": len(os.sched_getaffinity(0)), "python": platform.python_version(),
            "torch": torch.__version__}
    out = Path(args.out)
    atomic_write(out / "results.json",
                 lambda t: t.write_text(json.dumps({**meta, "rows": rows}, indent=1)))
    lines = [f"# End to end, each side in its own fresh warmed process ({meta['date']})", "",
             f"Command: `{cmd}`", "",
             f"Machine: {meta['machine']} {meta['processor']}, {meta['cpus']} CPUs, "
             f"python {meta['python']}, torch {meta['torch']}", "",
             "| preset | batch | eager median | eager best | fast median | fast best | "
             "speed-up (median) | speed-up (best) | score rel. err |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['batch']} | {r['eager_fps_median']} | "
                     f"{r['eager_fps_best']} | {r['fast_fps_median']} | {r['fast_fps_best']} | "
                     f"{r['speedup_median']}x | {r['speedup_best']}x | "
                     f"{r['score_rel_err']:.2g} |")
    lines += ["", "Frames/s per round, per process (each list is one process):", ""]
    for r in rows:
        lines.append(f"- {r['preset']}: eager {r['eager_fps_rounds']}, "
                     f"fast {r['fast_fps_rounds']}")
    atomic_write(out / "results.md", lambda t: t.write_text("\n".join(lines) + "\n"))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
