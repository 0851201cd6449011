"""Choose the library's scoring defaults on the benchmark family's development variants only
(docs/design.md §6, "Benchmark family"; held-out variants are never opened here).

    python -m bench.choose_defaults --work /tmp/aedfast-dev --out bench/results/DATE-cpu-defaults

For each development variant (`aedfast.data.synthetic_variants.DEV_VARIANTS`) the model trained
by `python -m bench.variant_table --variants dev --work WORK` (trained here, the same way, when
its checkpoint is missing) scores the variant's validation videos (`open_validation`: their own
anomalies and seeds; the test split is left for the before/after tables) once per map term,
unfiltered:
a (reconstruction error), b (teacher/student discrepancy), c (the anomaly-map channel), d (the
cls head's probability, uniform over the frame). The 3D filter is linear, so the filtered map of
any weighting is the weighted sum of the filtered terms; the frame max, the temporal Gaussian
and micro/macro AUC follow. Searched, all together:

- weights a, b, c, d (`GRID`, one setting per class of proportional ones),
- the 3D box window (`WINDOWS`), the temporal Gaussian (`TEMPORAL`),
- the score floor's time constant (`FLOORS`, None = off; `aedfast.scoring.subtract_floor`),
- per-video min-max normalisation (`NORMALISATIONS`; shown, never chosen: see there).

Selection, among settings without per-video min-max: the best mean micro AUC over the
development variants; ties: the better worst variant, then the better mean macro AUC, then
search order. The chosen setting, the current defaults and the defaults before this search
are then checked with full Detector passes on every development variant (same AUCs as the
search's sums). The script prints the search and writes results.json / results.md.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aedfast import Detector
from aedfast.data.synthetic import open_validation
from aedfast.kernels.smoothing import smooth_scores
from aedfast.metrics import micro_macro_auc
from aedfast.scoring import Smoothing, minmax_normalize, subtract_floor

TERMS = ("a", "b", "c", "d")
GRID = {"a": (0.0, 0.1, 0.3, 1.0), "b": (0.0, 0.1, 0.3, 1.0, 3.0), "c": (0.0, 1.0),
        "d": (0.0, 0.3, 1.0, 3.0, 10.0)}
WINDOWS: tuple[tuple[int, int, int] | None, ...] = ((9, 9, 9), (5, 9, 9), (5, 5, 5), (9, 15, 15),
                                                    None)
TEMPORAL = ((11.0, 37), (5.0, 21), (21.0, 65))  # sigma, support (frames)
# the library's scoring defaults before this search (aedfast <= 2026-11-30), marked in the tables
BEFORE = {"a": 1.0, "b": 1.0, "c": 1.0, "d": 0.0, "window": (9, 9, 9), "sigma": 11.0,
          "support": 37, "floor": None}
# the score floor's time constant in frames (None: off); causal, so streams and alarms keep it
FLOORS: tuple[float | None, ...] = (None, 500.0, 1000.0, 2000.0, 4000.0)
# per-video min-max after the temporal Gaussian: shown for what it would add, never chosen (it
# needs the whole video, so live streams and calibrated alarm thresholds cannot use it)
NORMALISATIONS = ("none", "minmax")


def weight_grid() -> list[dict[str, float]]:
    """GRID's settings (a slowest, d fastest), all-zero left out, one per class of
    proportional ones (same scores up to scale, same AUC): the first whose largest weight is 1
    where there is one, else the first."""
    classes: dict[tuple, list[tuple]] = {}
    for v in itertools.product(*(GRID[k] for k in TERMS)):
        top = max(v)
        if top:
            classes.setdefault(tuple(round(x / top, 9) for x in v), []).append(v)
    picks = [next((v for v in vs if max(v) == 1.0), vs[0]) for vs in classes.values()]
    return [dict(zip(TERMS, (float(x) for x in v))) for v in picks]


def default_setting() -> dict:
    """The library's current defaults (`Smoothing()`) as a search setting."""
    sm = Smoothing()
    return {**{k: float(getattr(sm, k)) for k in TERMS},
            "window": None if sm.window is None else tuple(sm.window),
            "sigma": sm.sigma, "support": sm.support, "floor": sm.floor}


def term_maps(ckpt, videos: list) -> tuple[dict[str, list[np.ndarray]], list[np.ndarray]]:
    """Per term, each video's unfiltered maps (float32 [T, H, W]; d: [T], the cls probability)
    from a Detector (of `ckpt`: a checkpoint path or an AEDMAE) with that term's weight 1 and
    the others 0; and the frame labels (videos: objects with `.frames()` and `.labels`)."""
    out: dict[str, list[np.ndarray]] = {}
    for term in TERMS:
        det = Detector(ckpt, device="cpu", seed=0, compile=False,
                       smoothing={"window": None, "sigma": None, "support": None,
                                  **{k: float(k == term) for k in TERMS}})
        maps = [det.score_video(v.frames(), return_maps=True).maps for v in videos]
        out[term] = [m[:, 0, 0].copy() if term == "d" else m for m in maps]
    return out, [np.asarray(v.labels).reshape(-1) for v in videos]


def box(maps: np.ndarray, window: tuple[int, int, int] | None) -> torch.Tensor:
    """One video's maps [T, H, W] through a 3D box window with replicated borders (the filter
    of `smooth_scores`, before its frame max); None: unchanged. float32 [T, H, W]. The box is
    separable: three 1-D means, one per axis."""
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    if window is None:
        return x
    for axis, k in enumerate(window):
        if k > 1:
            y = x.movedim(axis, -1)
            shape = y.shape
            y = F.pad(y.reshape(-1, 1, shape[-1]), (k // 2, k // 2), mode="replicate")
            x = F.avg_pool1d(y, k, stride=1).reshape(shape).movedim(-1, axis)
    return x.contiguous()


class Variant:
    """One development variant's filtered terms, packed along frames per window."""

    def __init__(self, name: str, maps: dict[str, list[np.ndarray]], labels: list[np.ndarray]):
        self.name = name
        self.labels = labels
        self.lengths = [len(lab) for lab in labels]
        self.filtered: dict = {}
        for win in WINDOWS:
            # d is uniform over the frame: its 3D box is the window's temporal box
            time_only = None if win is None else (win[0], 1, 1)
            self.filtered[win] = {
                k: torch.cat([box(m[:, None, None], time_only)[:, 0, 0] if k == "d"
                              else box(m, win) for m in maps[k]])
                for k in TERMS}

    def frame_max(self, w: dict[str, float], win) -> torch.Tensor:
        """Filtered frame max of a*F(rec) + b*F(dis) + c*F(y), plus d*F(p): float32 [N]."""
        f = self.filtered[win]
        o = None
        for k in ("a", "b", "c"):
            if w[k]:
                o = w[k] * f[k] if o is None else o.add_(w[k] * f[k])
        s = torch.zeros_like(f["d"]) if o is None else o.amax(dim=(1, 2))
        return s + w["d"] * f["d"] if w["d"] else s

    def scores(self, s: torch.Tensor, sigma: float, support: int) -> list[np.ndarray]:
        """Frame maxima [N] -> each video's temporally smoothed scores (float32 [T])."""
        t = smooth_scores(s.reshape(-1, 1, 1), self.lengths, window=None, sigma=sigma,
                          support=support, protocol="centered")
        return np.split(t.numpy(), np.cumsum(self.lengths)[:-1])

    @staticmethod
    def post(parts: list[np.ndarray], norm: str = "none", floor: float | None = None
             ) -> list[np.ndarray]:
        """`scores`' output after the score floor (when given, as a Detector does), then
        per-video min-max when norm is "minmax": float64 [T] per video."""
        if floor is not None:
            parts = [subtract_floor(x, floor)[0] for x in parts]
        parts = [x.astype(np.float64) for x in parts]
        return [minmax_normalize(x) for x in parts] if norm == "minmax" else parts

    def auc(self, parts: list[np.ndarray], norm: str = "none", floor: float | None = None
            ) -> tuple[float, float]:
        micro, macro = micro_macro_auc(self.post(parts, norm, floor), self.labels)
        return float(micro), float(macro)


def search(variants: list[Variant]) -> list[dict]:
    """Every setting's micro/macro AUC per variant, with their means and worst micro."""
    rows = []
    for win in WINDOWS:
        for w in weight_grid():
            maxes = [v.frame_max(w, win) for v in variants]
            for sigma, support in TEMPORAL:
                smoothed = [v.scores(m, sigma, support) for v, m in zip(variants, maxes)]
                post = [("none", f) for f in FLOORS] + [(n, None) for n in NORMALISATIONS
                                                         if n != "none"]
                for norm, floor in post:
                    per = {v.name: v.auc(p, norm, floor) for v, p in zip(variants, smoothed)}
                    micro = [p[0] for p in per.values()]
                    macro = [p[1] for p in per.values()]
                    rows.append({**w, "window": win, "sigma": sigma, "support": support,
                                 "floor": floor, "normalisation": norm,
                                 "per_variant": {n: {"micro_auc": p[0], "macro_auc": p[1]}
                                                 for n, p in per.items()},
                                 "mean_micro": float(np.mean(micro)),
                                 "worst_micro": float(np.min(micro)),
                                 "mean_macro": float(np.mean(macro))})
    return rows


def rank_key(r: dict) -> tuple:
    return (-round(r["mean_micro"], 10), -round(r["worst_micro"], 10),
            -round(r["mean_macro"], 10))


def same(r: dict, s: dict) -> bool:
    return (all(r[k] == s[k] for k in (*TERMS, "window", "sigma", "support"))
            and r["floor"] == s.get("floor") and r["normalisation"] == s.get("normalisation",
                                                                             "none"))


def detector_check(ckpt: Path, root: Path, s: dict) -> dict:
    """A full Detector pass of setting `s` over one variant's validation videos: micro/macro
    AUC."""
    from aedfast import evaluate

    sm = {**{k: s[k] for k in TERMS}, "window": s["window"], "sigma": s["sigma"],
          "support": s["support"], "floor": s["floor"]}
    det = Detector(ckpt, device="cpu", seed=0, compile=False, smoothing=sm)
    res = evaluate(det, open_validation(root), progress=False, localization=False)
    return {"micro_auc": float(res["micro_auc"]), "macro_auc": float(res["macro_auc"])}


def describe(s: dict) -> str:
    win = "none" if s["window"] is None else "x".join(map(str, s["window"]))
    floor = "off" if s["floor"] is None else f"{s['floor']:g} frames"
    return (", ".join(f"{k} = {s[k]:g}" for k in TERMS)
            + f"; box {win}; temporal sigma {s['sigma']:g} (support {s['support']})"
            + f"; score floor {floor}")


def table(rows: list[dict], names: list[str], marks: dict[str, dict], top: int) -> list[str]:
    head = ("| rank | a | b | c | d | box | sigma | floor | per-video min-max | mean micro | "
            "worst micro | mean macro | " + " | ".join(f"{n} micro" for n in names) + " | note |")
    lines = [head, "|" + "---|" * (13 + len(names))]
    for i, r in enumerate(rows, 1):
        note = "; ".join(m for m, s in marks.items() if same(r, s))
        if i > top and not note:
            continue
        win = "none" if r["window"] is None else "x".join(map(str, r["window"]))
        floor = "off" if r["floor"] is None else f"{r['floor']:g}"
        lines.append(f"| {i} | {r['a']:g} | {r['b']:g} | {r['c']:g} | {r['d']:g} | {win} | "
                     f"{r['sigma']:g} | {floor} | "
                     f"{'yes' if r['normalisation'] == 'minmax' else 'no'} | "
                     f"{r['mean_micro']:.4f} | {r['worst_micro']:.4f} | "
                     f"{r['mean_macro']:.4f} | "
                     + " | ".join(f"{r['per_variant'][n]['micro_auc']:.4f}" for n in names)
                     + f" | {note} |")
    return lines


def main() -> None:
    from aedfast.checkpoint import atomic_write
    from aedfast.data.synthetic_variants import DEV_VARIANTS
    from bench.variant_table import variant_row

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", default="/tmp/aedfast-dev")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=25, help="rows of the ranked search printed")
    args = p.parse_args()
    t0 = time.perf_counter()
    work, out = Path(args.work), Path(args.out)
    names = list(DEV_VARIANTS)
    variants, ckpts, roots = [], {}, {}
    for name in names:
        root = work / f"{name}-seed{args.seed}"
        ckpt = work / f"{name}-seed{args.seed}-model" / "aed_tiny.safetensors"
        if not ckpt.is_file():
            print(f"{name}: no checkpoint in {work}; generating and training it", flush=True)
            variant_row(name, args.seed, work)
        ckpts[name], roots[name] = ckpt, root
        maps, labels = term_maps(ckpt, open_validation(root).test)
        variants.append(Variant(name, maps, labels))
        del maps
        print(f"{name}: {len(labels)} validation videos, {sum(map(len, labels))} frames scored "
              f"per term ({time.perf_counter() - t0:.0f} s)", flush=True)
    rows = sorted(search(variants), key=rank_key)
    chosen = next(r for r in rows if r["normalisation"] == "none")
    default = next(r for r in rows if same(r, default_setting()))
    before = next(r for r in rows if same(r, BEFORE))
    marks = {"chosen": chosen, "current default": default, "default before 2026-12-01": before}
    lines = table(rows, names, marks, args.top)
    print("\n".join(lines))
    print(f"chosen: {describe(chosen)}; dev mean micro {chosen['mean_micro']:.4f} (default "
          f"{default['mean_micro']:.4f})", flush=True)
    check: dict[str, dict] = {}
    for label, s in marks.items():  # a setting marked twice is checked once
        done = next((check[lab] for lab, t in marks.items() if lab in check and same(t, s)),
                    None)
        check[label] = done or {n: detector_check(ckpts[n], roots[n], s) for n in names}
    for label, per in check.items():
        print(f"Detector check, {label}: " + ", ".join(
            f"{n} micro {c['micro_auc']:.4f} macro {c['macro_auc']:.4f}" for n, c in per.items()))

    def plain(s: dict) -> dict:
        return {**{k: s[k] for k in TERMS}, "window": None if s["window"] is None
                else list(s["window"]), "sigma": s["sigma"], "support": s["support"],
                "floor": s["floor"]}

    meta = {"command": "python -m bench.choose_defaults " + " ".join(sys.argv[1:]),
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__, "dev_variants": names, "seed": args.seed,
            "grid": {k: list(v) for k, v in GRID.items()},
            "windows": [None if w is None else list(w) for w in WINDOWS],
            "temporal": [list(t) for t in TEMPORAL], "floors": list(FLOORS),
            "settings": len(rows),
            "normalisations": list(NORMALISATIONS),
            "selection": "among settings without per-video min-max: max mean dev micro AUC; "
                         "ties: worst dev micro, mean dev macro",
            "chosen": plain(chosen), "current_default": plain(default),
            "default_before": plain(before),
            "detector_check": check, "seconds": round(time.perf_counter() - t0, 1)}
    doc = {**meta, "rows": [{**r, "window": plain(r)["window"]} for r in rows]}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", lambda t: t.write_text(json.dumps(doc, indent=1)))
    md = [f"# Scoring defaults chosen on the development variants ({meta['date']})", "",
          f"Command: `{meta['command']}`", "",
          f"Development variants: {', '.join(names)} (seed {args.seed}; models from "
          f"`python -m bench.variant_table --variants dev`), validation splits. Held-out "
          f"variants are not read. "
          f"{len(rows)} settings: weights " + ", ".join(
              f"{k} in {{{', '.join(f'{x:g}' for x in v)}}}" for k, v in GRID.items())
          + "; box windows " + ", ".join("none" if w is None else "x".join(map(str, w))
                                         for w in WINDOWS)
          + "; temporal sigma " + ", ".join(f"{s:g}" for s, _ in TEMPORAL)
          + "; score floor " + ", ".join("off" if f is None else f"{f:g}" for f in FLOORS)
          + "; per-video min-max no / yes (shown, never chosen: streams and alarms cannot use it)"
          + f". Selection: {meta['selection']}.", "",
          f"Chosen: {describe(chosen)}.", f"Current default: {describe(default)}.",
          f"Default before 2026-12-01: {describe(before)}.", "",
          "Full Detector passes (check of the search's sums):", ""]
    for label, per in check.items():
        md.append(f"- {label}: " + ", ".join(
            f"{n} micro {c['micro_auc']:.4f} / macro {c['macro_auc']:.4f}"
            for n, c in per.items()))
    md += ["", f"Seconds: {meta['seconds']}.", "", "## Search (best first)", "", *lines, ""]
    atomic_write(out / "results.md", lambda t: t.write_text("\n".join(md)))
    print(f"wrote {out}/results.json and results.md")


if __name__ == "__main__":
    main()
