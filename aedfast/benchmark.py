"""`aedfast bench`: run the bench/ suites (pytest-benchmark) and print their results.

The suites live in the source checkout's bench/ folder; each records one row per case
(fast path vs eager PyTorch, same run) through bench.common.record. This module runs them
in a subprocess and turns the rows into markdown tables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

SUITES = ("motion", "cvt", "smoothing", "e2e")


def bench_dir(package_dir: Path | None = None) -> Path:
    """The bench/ folder of the source checkout aedfast was installed from (editable install).

    The suites are not part of the wheel: from a wheel install `aedfast bench` stops with a
    FileNotFoundError that says so and how to get a checkout."""
    pkg = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    here = pkg.parent / "bench"
    if not (here / "common.py").is_file():
        raise FileNotFoundError(
            "`aedfast bench` needs a source checkout: the benchmark suites (bench/) are not part "
            "of the installed package; clone the repository and install it with "
            "`pip install -e .` (see README, GPU checks)"
        )
    return here


def load_rows(out: Path) -> dict[str, list[dict]]:
    """{suite: [row, ...]} from the JSON-lines files the suites wrote into `out`."""
    rows: dict[str, list[dict]] = {}
    for f in sorted(out.glob("*.jsonl")):
        rows[f.stem] = [json.loads(line) for line in f.read_text().splitlines() if line.strip()]
    return rows


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return str(v)


def markdown_tables(rows: dict[str, list[dict]]) -> str:
    """One markdown table per suite; columns in the order the rows first name them."""
    parts = []
    for suite, rs in rows.items():
        cols: list[str] = []
        for r in rs:
            cols += [k for k in r if k not in cols and not isinstance(r[k], (dict, list))]
        parts.append(f"### {suite}\n")
        parts.append("| " + " | ".join(cols) + " |")
        parts.append("|" + "---|" * len(cols))
        for r in rs:
            parts.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        parts.append("")
    return "\n".join(parts)


def run_suite(suites: list[str] | None = None, out: str | os.PathLike | None = None,
              quiet: bool = False) -> tuple[str, dict[str, list[dict]]]:
    """Run the chosen suites (default all); returns (markdown table, rows)."""
    suites = list(suites or SUITES)
    bad = [s for s in suites if s not in SUITES]
    if bad:
        raise ValueError(f"unknown suite(s) {bad}; choose from {list(SUITES)}")
    root = bench_dir()
    out_dir = Path(out) if out else Path(tempfile.mkdtemp(prefix="aedfast-bench-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [root / f"test_bench_{s}.py" for s in suites]
    files = [str(p) for p in paths if p.exists()]
    if not files:
        raise FileNotFoundError(f"no benchmark files for {suites} in {root}")
    env = dict(os.environ, AEDFAST_BENCH_OUT=str(out_dir))
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider",
           f"--benchmark-json={out_dir / 'pytest-benchmark.json'}", "--rootdir", str(root.parent)]
    proc = subprocess.run(cmd, env=env, cwd=root.parent,
                          stdout=subprocess.DEVNULL if quiet else None)
    if proc.returncode not in (0, 5):
        raise RuntimeError(f"the benchmark run failed (pytest exit code {proc.returncode})")
    rows = load_rows(out_dir)
    table = markdown_tables(rows) + f"\nresults in {out_dir}"
    return table, rows
