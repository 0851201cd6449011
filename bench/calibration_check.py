"""The calibrated false-alarm rate measured on held-out normal video of the synthetic benchmark.

    python -m bench.calibration_check --out bench/results/2026-11-30-cpu-calibration \
        [--checkpoint CK] [--calib 100] [--held 100] [--frames 250] [--rates 90/h,180/h,360/h]

Normal videos are the synthetic benchmark's training split (`aedfast.data.synthetic.generate`,
seed 0, 64 x 128, 25 fps, MJPG): videos 0-7 are the demo's own training videos (byte-identical
to those `make demo` trains on), videos 8 .. 8 + calib - 1 are fresh normal videos to
calibrate on, and the next `held` ones are held out. The scorer is the demo's: its trained
checkpoint (default demo_out/model/aed_tiny.safetensors when it exists, else a random-weight
tiny model, which the output says) with the demo's scoring (the library's defaults,
`aedfast.demo.scoring_settings`).
Thresholds are calibrated (`aedfast.calibration`) on the fresh videos, and separately on the
demo's training videos, then events are counted on the held-out videos; the calibration is
repeated over random halvings of the fresh videos for the spread of the held-out rate.
Writes results.json and results.md (the command, date, machine, versions) into --out.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from aedfast.alarms import EventRule
from aedfast.calibration import calibrate_scores, detector_signature
from aedfast.checkpoint import atomic_write
from aedfast.data.synthetic import generate
from aedfast.demo import scoring_settings
from aedfast.detector import Detector
from aedfast.model import AEDMAE
from aedfast.report import write_json
from bench.common import device_info

Z = 1.96  # two-sided 95%
DEMO_TRAIN = 8  # the demo's training videos: synthetic training-split videos 0-7


def _poisson_ci(n: int) -> tuple[float, float]:
    """Exact (Garwood) 95% interval of a Poisson mean from a count n."""
    from scipy.stats import chi2

    lo = 0.0 if n == 0 else chi2.ppf(0.025, 2 * n) / 2
    return float(lo), float(chi2.ppf(0.975, 2 * n + 2) / 2)


def _cluster_sd(per_video: list[int]) -> float:
    """Standard deviation of a total of per-video counts with the videos as the sampling
    unit: sqrt(n x sample variance). Equals sqrt(total) for Poisson counts; larger when
    events gather in a few videos (overdispersion)."""
    c = np.asarray(per_video, dtype=np.float64)
    return float(math.sqrt(len(c) * c.var(ddof=1))) if len(c) > 1 else 0.0


def _rows(cal, calib_scores, held_scores, hours_held: float, rule: EventRule,
          threshold_set: str) -> list:
    from aedfast.alarms import find_events

    rows = []
    for label, th in cal.thresholds.items():
        rate = cal.rates[label]
        per_cal = [len(find_events(s, th, rule)) for s in calib_scores]
        per_held = [len(find_events(s, th, rule)) for s in held_scores]
        n = sum(per_held)
        lo, hi = _poisson_ci(n)
        tol = Z * math.sqrt(rate / cal.hours + rate / hours_held)
        # the same bound with the videos as the sampling unit: the calibration count's
        # relative error moves the threshold's rate, the held-out count has its own
        n_cal = max(sum(per_cal), 1)
        tol_v = Z * math.sqrt((rate * _cluster_sd(per_cal) / n_cal) ** 2
                              + (_cluster_sd(per_held) / hours_held) ** 2)
        mean = n / len(per_held)
        rows.append({"calibrated_on": threshold_set, "rate": label, "rate_per_hour": rate,
                     "threshold": th, "calibration_events": cal.observed[label],
                     "calibration_hours": cal.hours, "held_out_events": n,
                     "held_out_hours": hours_held, "held_out_rate_per_hour": n / hours_held,
                     "held_out_rate_ci95": [lo / hours_held, hi / hours_held],
                     "tolerance_per_hour": tol, "tolerance_videos_per_hour": tol_v,
                     "held_out_dispersion": float(np.var(per_held, ddof=1) / mean)
                     if mean > 0 else None,
                     "held_out_videos_with_events": int(np.count_nonzero(per_held)),
                     # below every calibration score: the rate is more than the normal
                     # video raises at any level (calibrate_scores warned)
                     "saturated": th < cal.distribution["quantiles"]["0"],
                     "within_tolerance": abs(n / hours_held - rate) <= tol,
                     "within_tolerance_videos": abs(n / hours_held - rate) <= tol_v})
    return rows


def _random_splits(fresh: list, rates: list[str], rule: EventRule, fps: float,
                   n_splits: int) -> dict:
    """The calibration repeated over random halvings of the fresh videos (seed 0): per
    rate, the held-out rate's mean, median and 2.5 / 97.5% points over the halvings, and the
    share of halvings within the Poisson tolerance (about 95% if events were Poisson)."""
    from aedfast.alarms import find_events

    rng = np.random.default_rng(0)
    half = len(fresh) // 2
    held_rates: dict[str, list[float]] = {}
    within: dict[str, list[bool]] = {}
    asked: dict[str, float] = {}
    for _ in range(n_splits):
        order = rng.permutation(len(fresh))
        cal_v, held_v = [fresh[i] for i in order[:half]], [fresh[i] for i in order[half:]]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            cal = calibrate_scores(cal_v, [fps] * half, rates, rule)
        hours_held = sum(len(s) for s in held_v) / fps / 3600
        for label, th in cal.thresholds.items():
            r = cal.rates[label]
            measured = sum(len(find_events(s, th, rule)) for s in held_v) / hours_held
            asked[label] = r
            held_rates.setdefault(label, []).append(measured)
            within.setdefault(label, []).append(
                abs(measured - r) <= Z * math.sqrt(r / cal.hours + r / hours_held))
    return {"splits": n_splits, "videos_each": half, "rates": {
        label: {"asked_per_hour": asked[label], "mean": float(np.mean(v)),
                "median": float(np.median(v)),
                "p2_5": float(np.percentile(v, 2.5)), "p97_5": float(np.percentile(v, 97.5)),
                "share_within_poisson_tolerance": float(np.mean(within[label]))}
        for label, v in held_rates.items()}}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--checkpoint", default="demo_out/model/aed_tiny.safetensors")
    ap.add_argument("--calib", type=int, default=100)
    ap.add_argument("--held", type=int, default=100)
    ap.add_argument("--frames", type=int, default=250)
    ap.add_argument("--rates", default="90/h,180/h,360/h")
    ap.add_argument("--rates-train", default="180/h,360/h")
    ap.add_argument("--min-length", type=int, default=1)
    ap.add_argument("--merge-gap", type=int, default=25)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data", help="folder for the generated videos (default: a temporary one)")
    ap.add_argument("--splits", type=int, default=100, help="random halvings of the fresh "
                    "videos into calibration and held-out sets, for the spread (default 100)")
    args = ap.parse_args(argv)
    command = "python -m bench.calibration_check " + " ".join(
        shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))
    print(command, flush=True)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ck = Path(args.checkpoint)
    if ck.is_file():
        model_src = str(ck)
        which = (f"trained checkpoint {ck} (sha256 "
                 f"{hashlib.sha256(ck.read_bytes()).hexdigest()[:16]})")
    else:
        torch.manual_seed(0)
        model_src = AEDMAE.from_preset("tiny").eval()
        which = f"random-weight tiny model (torch seed 0): no checkpoint at {ck}"
    print(f"scorer: {which}", flush=True)
    det = Detector(model_src, device="cpu", compile=False, calibration=None, batch_size=64)
    rule = EventRule(args.min_length, args.merge_gap)
    n_total = DEMO_TRAIN + args.calib + args.held
    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(args.data or tmp) / "synthetic", seed=0, n_train=n_total,
                        n_test=0, n_val=0, frames=args.frames, progress=False)
        videos = sorted((root / "training/videos").glob("*.avi"))
        t1 = time.perf_counter()
        scores = [det.score_video(str(v)).scores for v in videos]
        score_s = time.perf_counter() - t1
    fps = 25.0
    train_s = scores[:DEMO_TRAIN]
    calib_s = scores[DEMO_TRAIN:DEMO_TRAIN + args.calib]
    held_s = scores[DEMO_TRAIN + args.calib:]
    hours_held = sum(len(s) for s in held_s) / fps / 3600
    sig = detector_signature(det)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        cal = calibrate_scores(calib_s, [fps] * len(calib_s), args.rates.split(","), rule, sig)
        cal_train = calibrate_scores(train_s, [fps] * len(train_s),
                                     args.rates_train.split(","), rule, sig)
    rows = _rows(cal, calib_s, held_s, hours_held, rule,
                 f"{len(calib_s)} fresh normal videos") + \
        _rows(cal_train, train_s, held_s, hours_held, rule,
              f"the demo's {DEMO_TRAIN} training videos")
    splits = _random_splits(calib_s + held_s, args.rates.split(","), rule, fps, args.splits)
    frames = sum(len(s) for s in scores)
    result = {
        "command": command, "machine": device_info(torch.device("cpu")), "scorer": which,
        "smoothing": scoring_settings(), "rule": {"min_length": rule.min_length,
                                              "merge_gap": rule.merge_gap},
        "videos": {"demo_training": DEMO_TRAIN, "calibration": len(calib_s),
                   "held_out": len(held_s), "frames_each": args.frames, "fps": fps},
        "rows": rows, "random_splits": splits, "warnings": [str(w.message) for w in caught],
        "score_frames_per_s": frames / score_s, "seconds": time.perf_counter() - t0,
        "distribution_fresh": cal.distribution,
        "distribution_training": cal_train.distribution,
    }
    out = Path(args.out)
    write_json(out / "results.json", result)
    atomic_write(out / "results.md", lambda tmp: tmp.write_text(_markdown(result)))
    print(_markdown(result))
    return result


def _markdown(r: dict) -> str:
    m, v = r["machine"], r["videos"]
    lines = [
        "# Calibrated false-alarm rate on held-out normal video (synthetic benchmark)",
        "",
        f"Command: `{r['command']}`  ",
        f"Date: {m['date']}; machine: {m['name']}, CPU, {m['threads']} torch thread(s), "
        f"torch {m['torch']}, Python {m['python']}.  ",
        f"Scorer: {r['scorer']}, scoring {r['smoothing']}.  ",
        f"Event rule: min length {r['rule']['min_length']} frame(s), merge gap "
        f"{r['rule']['merge_gap']} frames. Videos: {v['frames_each']} frames at {v['fps']:g} "
        f"fps each; the demo's {v['demo_training']} training videos, {v['calibration']} fresh "
        f"normal videos to calibrate on, {v['held_out']} held out (training-split seeds "
        f"{v['demo_training']} .. {v['demo_training'] + v['calibration'] - 1} and the next "
        f"{v['held_out']}). Scoring ran at {r['score_frames_per_s']:.0f} frames/s; "
        f"{r['seconds']:.0f} s in all.",
        "",
        "Tolerances (95%): Poisson, |held-out rate - asked rate| <= 1.96 sqrt(r / H_cal + "
        "r / H_held) (events independent; the calibration count fixes the threshold with its "
        "own error); per video, the same with each count's variance taken over videos "
        "(n x sample variance of the per-video counts: larger when events gather in a few "
        "videos). CI: exact 95% Poisson interval of the held-out count. Dispersion: variance "
        "/ mean of the held-out per-video counts (1 for Poisson).",
        "",
        "| calibrated on | asked | threshold | events (calibration) | events (held out) | "
        "held-out rate /h | 95% CI /h | Poisson tolerance /h | per-video tolerance /h | "
        "dispersion | within (Poisson / per video) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]

    def yes(b: bool) -> str:
        return "yes" if b else "no"

    for row in r["rows"]:
        lo, hi = row["held_out_rate_ci95"]
        disp = row["held_out_dispersion"]
        lines.append(
            f"| {row['calibrated_on']} ({row['calibration_hours'] * 3600:.0f} s) | "
            f"{row['rate']} | {row['threshold']:.5f} | {row['calibration_events']} | "
            f"{row['held_out_events']} in {row['held_out_videos_with_events']} videos "
            f"({row['held_out_hours'] * 3600:.0f} s) | "
            f"{row['held_out_rate_per_hour']:.0f} | {lo:.0f} - {hi:.0f} | "
            f"+-{row['tolerance_per_hour']:.0f} | +-{row['tolerance_videos_per_hour']:.0f} | "
            f"{'n/a' if disp is None else f'{disp:.2f}'} | "
            f"{yes(row['within_tolerance'])} / {yes(row['within_tolerance_videos'])}"
            f"{' (saturated: every frame alarms)' if row['saturated'] else ''} |")
    sp = r["random_splits"]
    lines += ["", f"Over {sp['splits']} random halvings of the {2 * sp['videos_each']} fresh "
              f"videos ({sp['videos_each']} to calibrate on, {sp['videos_each']} held out; "
              "seed 0), the held-out rate:", "",
              "| asked | mean /h | median /h | 2.5% - 97.5% /h | within the Poisson tolerance |",
              "|---|---|---|---|---|"]
    for label, v in sp["rates"].items():
        lines.append(f"| {label} | {v['mean']:.0f} | {v['median']:.0f} | {v['p2_5']:.0f} - "
                     f"{v['p97_5']:.0f} | {v['share_within_poisson_tolerance']:.0%} |")
    if r["warnings"]:
        lines += ["", "Warnings: " + "; ".join(r["warnings"])]
    q = "quantiles"
    lines += ["", "Frame-score quantiles (50%, 99%, max): fresh normal videos "
              + ", ".join(f"{r['distribution_fresh'][q][k]:.5f}" for k in ("0.5", "0.99", "1"))
              + "; the demo's training videos "
              + ", ".join(f"{r['distribution_training'][q][k]:.5f}"
                          for k in ("0.5", "0.99", "1")), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
