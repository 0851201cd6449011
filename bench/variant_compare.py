"""Before/after tables over benchmark-family runs: several `bench.variant_table` results side by
side, one row per variant, micro / macro AUC per run, and their means.

    python -m bench.variant_compare --out bench/results/DATE-cpu-generalisation.md \
        "before=bench/results/A" "scoring=bench/results/B" ...

Each LABEL=DIR names a folder holding a `bench.variant_table` results.json; the table keeps the
order given. Writes the markdown file (with each run's command) and prints it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import numpy as np


def load_runs(specs: list[str]) -> list[tuple[str, Path, dict]]:
    """LABEL=DIR specs -> (label, dir, results.json contents), in order."""
    runs = []
    for spec in specs:
        label, sep, folder = spec.partition("=")
        if not sep or not label or not folder:
            raise SystemExit(f"expected LABEL=DIR, got {spec!r}")
        path = Path(folder) / "results.json"
        if not path.is_file():
            raise SystemExit(f"{path}: no results.json (a bench.variant_table output folder)")
        runs.append((label, Path(folder), json.loads(path.read_text())))
    return runs


def table(runs: list[tuple[str, Path, dict]]) -> list[str]:
    """Markdown rows: variant, split, then micro / macro per run; a mean row per split."""
    names: list[str] = []
    split: dict[str, str] = {}
    for _, _, res in runs:
        for r in res["rows"]:
            if r["variant"] not in names:
                names.append(r["variant"])
                split[r["variant"]] = r.get("split", "")
    head = "| variant | split | " + " | ".join(f"{lab} micro / macro" for lab, _, _ in runs) + " |"
    lines = [head, "|" + "---|" * (2 + len(runs))]
    cells: dict[str, list[tuple[float, float] | None]] = {}
    for n in names:
        row = []
        for _, _, res in runs:
            r = next((r for r in res["rows"] if r["variant"] == n), None)
            row.append(None if r is None else (r["micro_auc"], r["macro_auc"]))
        cells[n] = row
        lines.append(f"| {n} | {split[n]} | " + " | ".join(
            "-" if c is None else f"{c[0]:.4f} / {c[1]:.4f}" for c in row) + " |")
    for sp in dict.fromkeys(split.values()):
        group = [cells[n] for n in names if split[n] == sp]
        means = []
        for j in range(len(runs)):
            col = [g[j] for g in group]
            means.append("-" if any(c is None for c in col) else
                         f"{np.mean([c[0] for c in col]):.4f} / {np.mean([c[1] for c in col]):.4f}")
        lines.append(f"| mean ({sp}) | {sp} | " + " | ".join(means) + " |")
    return lines


def main() -> None:
    from aedfast.checkpoint import atomic_write

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="markdown file to write")
    p.add_argument("--title", default="Benchmark family: before / after")
    p.add_argument("runs", nargs="+", metavar="LABEL=DIR")
    args = p.parse_args()
    runs = load_runs(args.runs)
    lines = [f"# {args.title}", "",
             "Command: `python -m bench.variant_compare " + shlex.join(sys.argv[1:]) + "`", "",
             *table(runs), "", "Runs (each folder's results.md has its machine and times):", ""]
    for label, folder, res in runs:
        extra = " ".join(res.get("train_args", []))
        lines.append(f"- {label}: `{folder}`, `{res['command']}` ({res['date']}"
                     f"{'; train options ' + extra if extra else ''})")
    text = "\n".join(lines) + "\n"
    atomic_write(Path(args.out), lambda t: t.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
