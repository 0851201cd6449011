"""Merge the suites' JSON-lines rows in a results folder into results.json, results.md and
results.png (speed-up over eager per case). Usage: python -m bench.summarize DIR [CMD]

Rows already in DIR/results.json are kept unless a new JSON-lines file of the same suite
replaces them (so a suite can be re-run into a summarised folder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aedfast.benchmark import load_rows, markdown_tables


def speedup_plot(rows: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for suite, rs in rows.items():
        for r in rs:
            s = r.get("speedup", r.get("torch_speedup"))
            if isinstance(s, (int, float)):
                keys = ("mode", "case", "part", "shape", "preset", "batch", "dtype", "precision",
                        "compile", "source", "streams")
                case = ", ".join(f"{k}={r[k]}" for k in keys if r.get(k) not in (None, ""))
                labels.append(f"{suite}: {case}"[:90])
                values.append(float(s))
    if not values:
        return
    fig, ax = plt.subplots(figsize=(9, 0.28 * len(values) + 1.2))
    ax.barh(range(len(values)), values, color="tab:blue")
    ax.set_yticks(range(len(values)), labels, fontsize=7)
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("speed-up over eager PyTorch (same run)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(folder: str, command: str = "") -> None:
    out = Path(folder)
    rows = {}
    if (out / "results.json").is_file():  # an earlier summary: new rows replace its suites
        rows = json.loads((out / "results.json").read_text())["rows"]
    rows.update(load_rows(out))
    meta = rows.get("ceilings", [{}])[0]
    (out / "results.json").write_text(json.dumps({"command": command, "device": meta,
                                                  "rows": rows}, indent=1))
    head = (f"Device: {meta.get('name')} (driver {meta.get('driver')}), torch {meta.get('torch')},"
            f" triton {meta.get('triton')}, {meta.get('date')}\n\nCommand: `{command}`\n\n")
    (out / "results.md").write_text(head + markdown_tables(rows))
    speedup_plot(rows, out / "results.png")
    for f in out.glob("*.jsonl"):
        f.unlink()
    print(head + markdown_tables(rows))


if __name__ == "__main__":
    main(sys.argv[1], " ".join(sys.argv[2:]))
