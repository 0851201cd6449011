"""`aedfast demo`: the whole pipeline on the synthetic surveillance benchmark.

1. generate the benchmark (aedfast.data.synthetic; reused when already there),
2. train the tiny preset, teacher then student (reused when its checkpoint exists; a killed
   run resumes from its last checkpoint),
3. score every test video with a Detector (GPU when there is one) with the library's
   default scoring,
4. print micro and macro AUC and frames/s, and write per-video score plots, one overlay
   video and results.json into the output folder.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np

# The demo scores with the library's defaults (`aedfast.scoring.Smoothing()`), the settings
# chosen on the benchmark family's development variants by `python -m bench.choose_defaults`
# (docs/design.md §6, "Choosing the defaults"): nothing in it is tuned on the demo's test split.
DEFAULTS_RECORD = "bench/results/2026-12-01-cpu-defaults-floor/results.md"


def scoring_settings() -> dict:
    """The scoring the demo (and a Detector by default) uses: `Smoothing()`'s fields."""
    from dataclasses import asdict

    from .scoring import Smoothing

    d = asdict(Smoothing())
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


logger = logging.getLogger(__name__)


def _say(quiet: bool, text: str) -> None:
    """A stage of the demo, reported through `logging` (INFO; the CLI shows it on stderr)."""
    if not quiet:
        logger.info(text)


def run_demo(out: str | os.PathLike = "demo_out", *, quiet: bool = False, fast: bool = False,
             device: str | None = None, seed: int = 0) -> dict:
    """Run the demo; returns its results (the dict written to OUT/results.json, plus
    "summary", the text the CLI prints). Stages are reported through `logging` (logger
    ``aedfast.demo``), bars go to stderr (`aedfast.progress`); nothing is printed.

    fast: a smoke-test size (tiny data, a few dozen steps): exercises every stage in about a
    minute, without the accuracy of the full run.
    """
    from . import report
    from .data import open_dataset
    from .data.synthetic import generate
    from .detector import Detector
    from .evaluate import evaluate
    from .training import train

    t0 = time.perf_counter()
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    progress = not quiet

    _say(quiet, f"[1/4] synthetic surveillance benchmark -> {out / 'data'}")
    gen = dict(n_train=2, n_test=2, n_val=2, frames=60) if fast else {}
    root = generate(out / "data", seed=seed, progress=progress, **gen)
    dataset = open_dataset(root, "shanghaitech")
    _say(quiet, dataset.summary())

    model_dir = out / "model"
    ckpt = model_dir / "aed_tiny.safetensors"
    t_train = time.perf_counter()
    if ckpt.is_file():
        _say(quiet, f"[2/4] reusing the trained model {ckpt} (delete it to train again)")
    else:
        _say(quiet, "[2/4] training the tiny preset: teacher, then student")
        lengths = dict(teacher_steps=30, student_steps=10) if fast else {}
        resume = (model_dir / "checkpoint.pt").is_file()
        ckpt = train(dataset, dataset="shanghaitech", out=model_dir, preset="tiny",
                     device=device, seed=seed, resume=resume, progress=progress, **lengths)
    train_seconds = time.perf_counter() - t_train

    _say(quiet, "[3/4] scoring the test videos")
    det = Detector(ckpt, device=device, seed=seed)
    det.score_video(dataset.test[0].frames(0, 16))  # compile / warm up outside the timing
    result = evaluate(det, dataset, protocol="paper", plots=out / "plots", progress=progress,
                      localization=False).as_dict()

    _say(quiet, "[4/4] overlay video of the most anomalous test video")
    best = max(dataset.test, key=lambda v: float(np.mean(v.labels)))
    res = det.score_video(best.frames(), return_maps=True)
    overlay_path = out / f"overlay_{best.name}.avi"
    report.write_overlay_video(overlay_path, best.frames(), iter(res.maps), fps=25.0)

    result.update({
        "output": str(out),
        "checkpoint": str(ckpt),
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        "plots": str(out / "plots"),
        "overlay": str(overlay_path),
        "fast": fast,
        "scoring": scoring_settings(),
        "scoring_chosen_on": "the benchmark family's development variants",
        "scoring_record": DEFAULTS_RECORD,
    })
    report.write_json(out / "results.json", result)
    result["summary"] = (
        f"micro AUC {result['micro_auc']:.4f}  macro AUC {result['macro_auc']:.4f}  "
        f"{result['fps']:.1f} frames/s on {result['device']}  "
        f"(total {result['total_seconds']:.0f} s, training {result['train_seconds']:.0f} s)\n"
        f"wrote {out} (results.json, plots/, {overlay_path.name})"
    )
    return result
