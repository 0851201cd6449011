"""Record a finished `aedfast demo` run under bench/results: its results.json (test AUC with the
library's default scoring, or, for runs before 2026-12-01, the demo's own weights and the
default ones) plus a markdown summary with the machine and versions.
Usage: python -m bench.record_demo DEMO_OUT [CMD]"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch

from bench.common import device_info


def _w(w: dict) -> str:
    return ", ".join(f"{k} = {w[k]:g}" for k in ("a", "b", "c", "d"))


def _weights_lines(res: dict) -> list[str]:
    """Test AUC with the demo's weights (chosen on validation) and with the default ones."""
    base = res.get("default_weights")
    if not base:  # a results.json written before the demo scored the default weights
        return []
    return [
        "| weights | a, b, c, d | test micro AUC | test macro AUC |",
        "|---|---|---|---|",
        f"| demo's, chosen on the {res['weights_chosen_on']} ({res['weights_record']}) | "
        f"{_w(res['weights'])} | {res['micro_auc']:.4f} | {res['macro_auc']:.4f} |",
        f"| default `Smoothing()` | {_w(base['weights'])} | {base['micro_auc']:.4f} | "
        f"{base['macro_auc']:.4f} |",
        "",
        "Per-video AUC, default weights: "
        + ", ".join(f"{k} {v:.4f}" for k, v in base["per_video"].items()),
        "",
    ]


def _scoring_lines(res: dict) -> list[str]:
    """The scoring settings of a demo that scores with the library's defaults."""
    if "scoring" not in res:
        return []
    return [f"Scoring: the library's defaults, chosen on {res['scoring_chosen_on']} "
            f"({res['scoring_record']}): " + ", ".join(f"{k} {v}" for k, v in
                                                       res["scoring"].items()), ""]


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
        *_weights_lines(res),
        *_scoring_lines(res),
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    print("\n".join(lines))
    return base


if __name__ == "__main__":
    main(sys.argv[1], " ".join(sys.argv[2:]) or "make demo")
