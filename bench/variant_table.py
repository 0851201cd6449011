"""Accuracy on the benchmark family's variants with the library's defaults, through the CLI
exactly as a user runs it (docs/design.md §6, "Benchmark family").

For each named variant: generate its synthetic data set (8 training videos, 6 test videos of
250 frames, seed --seed), then `aedfast train ROOT --preset tiny` (the tiny preset's default
schedule) and `aedfast eval CK ROOT --dataset shanghaitech` (default scoring), each as its own
process; record micro/macro AUC and the training wall time. Results are rewritten after every
variant, so a cut run keeps what finished.

    python -m bench.variant_table --out bench/results/DATE-cpu-variants \
        [--variants heldout | dev | NAME ...] [--seed 0] [--work /tmp/aedfast-variants] \
        [--train-arg=--anomaly-prob=0.5 ...] [--reuse]

--train-arg adds an option to `aedfast train` (experiments against the defaults); --reuse
evaluates the model already trained in --work (same command; its recorded training time is
reported) instead of training again, e.g. after a change of scoring defaults.

Writes results.json and results.md (command, machine, versions, one row per variant).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path


def _run(cmd: list[str]) -> float:
    """Run one CLI command; its wall time in seconds (raises with its output on failure)."""
    t = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - t


def variant_row(name: str, seed: int, work: Path, train_args: list[str] | None = None,
                reuse: bool = False) -> dict:
    """Generate, train and evaluate one variant; its table row. reuse: keep a model already
    trained in `work` by the same command (its training time is read from train.json)."""
    from aedfast.checkpoint import atomic_write
    from aedfast.data.synthetic import generate
    from aedfast.data.synthetic_variants import VARIANTS

    root = work / f"{name}-seed{seed}"
    t = time.perf_counter()
    generate(root, seed=seed, variant=name, progress=False)
    gen_s = time.perf_counter() - t
    aedfast = str(Path(sys.executable).with_name("aedfast"))
    out = work / f"{name}-seed{seed}-model"
    cmd = [aedfast, "train", str(root), "--preset", "tiny", "--out", str(out), "--quiet",
           *(train_args or [])]
    record = out / "train.json"
    old = json.loads(record.read_text()) if reuse and record.is_file() else None
    if old is not None and old["command"][1:] == cmd[1:]:
        train_s = old["train_s"]
    else:
        train_s = _run(cmd)
        atomic_write(record, lambda t: t.write_text(json.dumps({"command": cmd,
                                                                "train_s": round(train_s, 1)})))
    report = out / "eval.json"
    eval_s = _run([aedfast, "eval", str(out / "aed_tiny.safetensors"), str(root),
                   "--dataset", "shanghaitech", "--json", str(report), "--quiet"])
    res = json.loads(report.read_text())
    v = VARIANTS[name]
    return {"variant": name, "seed": seed, "frame_size": list(v.size or (64, 128)),
            "micro_auc": res["micro_auc"], "macro_auc": res["macro_auc"],
            "train_s": round(train_s, 1), "eval_s": round(eval_s, 1),
            "train_reused": old is not None,
            "generate_s": round(gen_s, 1), "train_frames": 8 * 250}


def write(out: Path, meta: dict, rows: list[dict]) -> None:
    from aedfast.checkpoint import atomic_write

    atomic_write(out / "results.json",
                 lambda t: t.write_text(json.dumps({**meta, "rows": rows}, indent=1)))
    reused = any(r.get("train_reused") for r in rows)
    extra = "".join(" " + a for a in meta.get("train_args", []))
    lines = [f"# Benchmark family: defaults on each variant, train then eval by the CLI "
             f"({meta['date']})", "", f"Command: `{meta['command']}`", "",
             f"Machine: {meta['machine']}, {meta['cpus']} CPUs, python {meta['python']}, "
             f"torch {meta['torch']}. Each variant: `aedfast train ROOT --preset tiny --out OUT "
             f"--quiet{extra}`"
             f"{' (where marked reused: the model that command trained earlier)' if reused else ''}"
             f", then `aedfast eval OUT/aed_tiny.safetensors ROOT --dataset "
             f"shanghaitech --json OUT/eval.json --quiet` (library defaults throughout).", "",
             "| variant | split | frame size | micro AUC | macro AUC | training s (2,000 frames) "
             "| eval s |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['variant']} | {r['split']} | {r['frame_size'][0]} x "
                     f"{r['frame_size'][1]} | {r['micro_auc']:.4f} | {r['macro_auc']:.4f} | "
                     f"{r['train_s']}{' (reused)' if r.get('train_reused') else ''} | "
                     f"{r['eval_s']} |")
    atomic_write(out / "results.md", lambda t: t.write_text("\n".join(lines) + "\n"))


def main() -> None:
    from aedfast.data.synthetic_variants import DEV_VARIANTS, HELDOUT_VARIANTS, VARIANTS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--variants", nargs="+", default=["heldout"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", default="/tmp/aedfast-variants")
    p.add_argument("--train-arg", action="append", default=[],
                   help="an extra `aedfast train` option (repeat; e.g. --train-arg=--steps=100)")
    p.add_argument("--reuse", action="store_true",
                   help="evaluate models already trained in --work by the same command")
    args = p.parse_args()
    names: list[str] = []
    for v in args.variants:
        names += {"heldout": list(HELDOUT_VARIANTS), "dev": list(DEV_VARIANTS)}.get(v, [v])
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        p.error(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    import torch

    meta = {"command": "python -m bench.variant_table " + " ".join(sys.argv[1:]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": platform.machine(), "cpus": len(os.sched_getaffinity(0)),
            "python": platform.python_version(), "torch": torch.__version__,
            "train_args": list(args.train_arg)}
    out, work = Path(args.out), Path(args.work)
    rows: list[dict] = []
    for name in names:
        row = variant_row(name, args.seed, work, args.train_arg, args.reuse)
        row["split"] = "held-out" if name in HELDOUT_VARIANTS else "dev"
        rows.append(row)
        write(out, meta, rows)
        print(f"{name}: micro {row['micro_auc']:.4f} macro {row['macro_auc']:.4f} "
              f"train {row['train_s']} s", flush=True)


if __name__ == "__main__":
    main()
