"""Record a finished `aedfast demo` run under bench/results: its results.json plus a markdown
summary with the machine and versions. Usage: python -m bench.record_demo DEMO_OUT [CMD]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from bench.common import device_info


def main(demo_out: str, command: str = "make demo") -> Path:
    res = json.loads((Path(demo_out) / "results.json").read_text())
    dev = device_info(torch.device(res["device"]))
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    base = Path(__file__).parent / "results" / f"{stamp}-{res['device']}-demo"
    keep = {k: v for k, v in res.items() if k not in ("output", "checkpoint", "plots", "overlay")}
    base.with_suffix(".json").write_text(json.dumps({"command": command, "machine": dev,
                                                     "results": keep}, indent=2) + "\n")
    lines = [
        f"# `{command}` on {dev['name']} ({res['device']}, {dev.get('threads', '')} threads), "
        f"torch {dev['torch']}, {dev['date']}",
        "",
        "| micro AUC | macro AUC | frames/s (scoring) | training s | total s |",
        "|---|---|---|---|---|",
        f"| {res['micro_auc']:.4f} | {res['macro_auc']:.4f} | {res['fps']:.1f} | "
        f"{res['train_seconds']:.0f} | {res['total_seconds']:.0f} |",
        "",
        "Per-video AUC: " + ", ".join(f"{k} {v:.4f}" for k, v in res["per_video"].items()),
        "",
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return base


if __name__ == "__main__":
    main(sys.argv[1], " ".join(sys.argv[2:]) or "make demo")
