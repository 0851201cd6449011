"""Choose the demo's scoring weights on the synthetic benchmark's validation split, then report
test AUC for the chosen weights and for the library's default ones.

Usage: python -m bench.tune_demo_weights DEMO_OUT   (a finished `aedfast demo` folder: its
data/, generated with a validation split, and model/aed_tiny.safetensors). Prints the search
and writes bench/results/<date>-<device>-demo-weights.{json,md}.

The demo's frame score is o = a*rec + b*distill + c*y + d*p per pixel (docs/design.md §1; p is
the cls head's probability, `aedfast.scoring.Smoothing`), the demo's 3D box filter, frame max
and temporal Gaussian (`aedfast.demo.DEMO_FILTER`, fixed here). How the weights are chosen:

1. The validation videos (`aedfast.data.synthetic.open_validation`: their own anomalies, from
   seeds no training or test video uses) are scored once per term with the demo's model: a
   Detector pass with that term's weight 1 and the others 0, keeping the per-frame maps.
2. Each term's maps go through the demo's 3D box filter once. The filter is linear, so for
   every setting of GRID the weighted sum of the filtered terms is the filtered map a Detector
   with those weights computes; then the frame max, the demo's temporal Gaussian
   (`smooth_scores`), micro and macro AUC.
3. The best validation micro AUC wins (ties: the better macro AUC, then the earlier setting in
   grid order). The winner and the default weights are checked with full Detector passes on
   the validation videos (same AUCs, frame scores equal to float32 rounding).
4. Only then is the test split scored, twice, with the demo's Detector set-up: the chosen and
   the default weights. Nothing measured on test feeds back into the choice.
"""

from __future__ import annotations

import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from aedfast import Detector, __version__, evaluate, open_dataset
from aedfast.data import Dataset
from aedfast.data.synthetic import load_manifest, open_validation
from aedfast.demo import DEMO_FILTER, default_weights
from aedfast.kernels.smoothing import smooth_scores
from aedfast.metrics import micro_macro_auc
from bench.common import bench_device, device_info

TERMS = ("a", "b", "c", "d")
# AUC does not change when all four weights are scaled: `grid` keeps one of proportional ones
GRID = {"a": (0.0, 0.1, 0.3, 1.0), "b": (0.0, 0.1, 0.3, 1.0), "c": (0.0, 1.0),
        "d": (0.0, 0.3, 1.0, 3.0)}
DEFAULT_WEIGHTS = default_weights()  # the library's, Smoothing(): a = b = c = 1, d = 0
# the weights the demo used before this search, picked by looking at the test split: shown in
# the validation table for comparison only
PREVIOUS_DEMO_WEIGHTS = {"a": 0.1, "b": 0.1, "c": 1.0, "d": 1.0}
RESULTS = Path(__file__).parent / "results"


def grid() -> list[dict[str, float]]:
    """The settings of GRID in grid order (a slowest, d fastest), all zeros left out, and one
    setting per class of proportional ones (same scores up to scale, same AUC): the one whose
    largest weight is 1 where there is one, else the first."""
    classes: dict[tuple, list[tuple]] = {}
    for v in itertools.product(*(GRID[k] for k in TERMS)):
        top = max(v)
        if top:
            classes.setdefault(tuple(round(x / top, 9) for x in v), []).append(v)
    picks = [next((v for v in vs if max(v) == 1.0), vs[0]) for vs in classes.values()]
    return [dict(zip(TERMS, (float(x) for x in v))) for v in picks]


def _detector(ckpt: Path, device: torch.device, weights: dict[str, float],
              compile: bool = True) -> Detector:
    return Detector(ckpt, device=device, smoothing={**DEMO_FILTER, **weights}, seed=0,
                    compile=compile)


def box_filter(maps: np.ndarray) -> torch.Tensor:
    """One video's maps [T, H, W] through the demo's 3D box filter, borders replicated (the
    filter of `smooth_scores`, before its frame max): float32 [T, H, W]."""
    kt, kh, kw = DEMO_FILTER["window"]
    x = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))[None, None]
    x = F.pad(x, (kw // 2, kw // 2, kh // 2, kh // 2, kt // 2, kt // 2), mode="replicate")
    return F.avg_pool3d(x, (kt, kh, kw), stride=1)[0, 0]


def filtered_terms(ckpt: Path, dataset: Dataset, device: torch.device
                   ) -> tuple[dict[str, torch.Tensor], list[int], list[np.ndarray]]:
    """Per term, the box-filtered maps of all `dataset.test` videos packed along frames
    (float32 [N, H, W]; the cls term [N], uniform over a frame), the video lengths and the
    frame labels. The filter is linear, so a setting's filtered map is the weighted sum of
    these; the frame max comes after the sum."""
    videos = dataset.test
    out: dict[str, torch.Tensor] = {}
    for term in TERMS:
        det = _detector(ckpt, device, {k: float(k == term) for k in TERMS}, compile=False)
        parts = []
        for v in videos:
            m = det.score_video(v.frames(), return_maps=True).maps
            parts.append(box_filter(m[:, :1, :1])[:, 0, 0] if term == "d" else box_filter(m))
        out[term] = torch.cat(parts)
    return out, [len(v) for v in videos], [np.asarray(v.labels) for v in videos]


def setting_scores(filt: dict[str, torch.Tensor], lengths: list[int],
                   w: dict[str, float]) -> list[np.ndarray]:
    """Frame scores per video of weights `w`: the frame max of a*F(rec) + b*F(distill) +
    c*F(y), plus d*F(p), then the demo's temporal Gaussian (F: the demo's box filter)."""
    o = None
    for term in ("a", "b", "c"):
        if w[term]:
            t = w[term] * filt[term]
            o = t if o is None else o.add_(t)
    s = torch.zeros_like(filt["d"]) if o is None else o.amax(dim=(1, 2))
    if w["d"]:
        s = s + w["d"] * filt["d"]
    s = smooth_scores(s.reshape(-1, 1, 1), lengths, window=None, sigma=DEMO_FILTER["sigma"],
                      support=DEMO_FILTER["support"], protocol="centered")
    return np.split(s.numpy().astype(np.float64), np.cumsum(lengths)[:-1])


def search(filt: dict[str, torch.Tensor], lengths: list[int], labels: list[np.ndarray]
           ) -> list[dict]:
    rows = []
    for w in grid():
        micro, macro = micro_macro_auc(setting_scores(filt, lengths, w), labels)
        rows.append({**w, "micro_auc": float(micro), "macro_auc": float(macro)})
    return rows


def choose(rows: list[dict]) -> dict:
    """The best validation micro AUC; ties: macro AUC, then grid order (max keeps the first)."""
    return max(rows, key=lambda r: (round(r["micro_auc"], 10), round(r["macro_auc"], 10)))


def _weights(row: dict) -> dict[str, float]:
    return {k: float(row[k]) for k in TERMS}


def _w(w: dict[str, float]) -> str:
    return ", ".join(f"{k} = {w[k]:g}" for k in TERMS)


def _score(ckpt: Path, device: torch.device, weights: dict[str, float], dataset: Dataset
           ) -> dict:
    """A full Detector evaluation, set up as the demo's (compiled, seed 0, warmed up)."""
    det = _detector(ckpt, device, weights)
    det.score_video(dataset.test[0].frames(0, 16))
    res = evaluate(det, dataset, protocol="paper", progress=False, localization=False)
    return {k: res[k] for k in ("micro_auc", "macro_auc", "per_video", "frames", "fps")}


def _check(ckpt: Path, device: torch.device, weights: dict[str, float], dataset: Dataset,
           filt: dict[str, torch.Tensor], lengths: list[int], labels: list[np.ndarray]) -> dict:
    """Full Detector passes (as the demo's) over `dataset.test` against the search's scores."""
    det = _detector(ckpt, device, weights)
    got = [det.score_video(v.frames()).scores.astype(np.float64) for v in dataset.test]
    want = setting_scores(filt, lengths, weights)
    a, b = np.concatenate(got), np.concatenate(want)
    micro, macro = micro_macro_auc(got, labels)
    return {"micro_auc": float(micro), "macro_auc": float(macro),
            "max_rel_score_diff": float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))}


def _table(rows: list[dict], chosen: dict[str, float]) -> list[str]:
    lines = ["| rank | a | b | c | d | val micro AUC | val macro AUC | note |",
             "|---|---|---|---|---|---|---|---|"]
    ranked = sorted(rows, key=lambda r: (-r["micro_auc"], -r["macro_auc"]))
    for i, r in enumerate(ranked, 1):
        w = _weights(r)
        note = "; ".join(n for n, ref in (("chosen", chosen), ("default", DEFAULT_WEIGHTS),
                                          ("previous demo, chosen on test",
                                           PREVIOUS_DEMO_WEIGHTS)) if w == ref)
        lines.append(f"| {i} | {w['a']:g} | {w['b']:g} | {w['c']:g} | {w['d']:g} | "
                     f"{r['micro_auc']:.4f} | {r['macro_auc']:.4f} | {note} |")
    return lines


def main(demo_out: str) -> Path:
    t0 = time.perf_counter()
    root = Path(demo_out)
    ckpt = root / "model" / "aed_tiny.safetensors"
    if not ckpt.is_file():
        raise SystemExit(f"{ckpt} not found: run `aedfast demo --out {root}` first")
    try:
        val = open_validation(root / "data")
    except ValueError as e:  # DatasetError
        raise SystemExit(f"{e}\nre-run `aedfast demo --out {root}`: it regenerates the data "
                         "with a validation split and reuses the trained model") from e
    device = bench_device()

    filt, lengths, labels = filtered_terms(ckpt, val, device)
    t_maps = time.perf_counter() - t0
    rows = search(filt, lengths, labels)
    t_search = time.perf_counter() - t0 - t_maps
    best = choose(rows)
    chosen = _weights(best)
    default_row = next(r for r in rows if _weights(r) == DEFAULT_WEIGHTS)
    ranked = _table(rows, chosen)
    print(f"validation: {len(lengths)} videos, {sum(lengths)} frames; filter {DEMO_FILTER}")
    print("\n".join(ranked))
    print(f"chosen on validation: {_w(chosen)} (val micro AUC {best['micro_auc']:.4f}, "
          f"macro {best['macro_auc']:.4f})")
    # the check: full Detector passes on validation give the same scores and AUCs
    val_check = {"chosen": _check(ckpt, device, chosen, val, filt, lengths, labels),
                 "default": _check(ckpt, device, DEFAULT_WEIGHTS, val, filt, lengths, labels)}
    del filt
    for name, row in (("chosen", best), ("default", default_row)):
        c = val_check[name]
        print(f"validation {name}: search micro {row['micro_auc']:.4f} macro "
              f"{row['macro_auc']:.4f}; Detector micro {c['micro_auc']:.4f} macro "
              f"{c['macro_auc']:.4f}; largest score difference {c['max_rel_score_diff']:.1e} "
              "(relative)")

    # now, and only now, the test split
    t1 = time.perf_counter()
    test_ds = open_dataset(root / "data", "shanghaitech")
    test = {"tuned": _score(ckpt, device, chosen, test_ds),
            "default": _score(ckpt, device, DEFAULT_WEIGHTS, test_ds)}
    t_test = time.perf_counter() - t1
    for name, r in test.items():
        print(f"test {name:7s} micro AUC {r['micro_auc']:.4f}  macro AUC {r['macro_auc']:.4f}")

    info = device_info(device)
    info.update({"aedfast": __version__, "numpy": np.__version__})
    man = load_manifest(root / "data") or {}
    command = f"python -m bench.tune_demo_weights {demo_out}"
    doc = {
        "command": command, "machine": info,
        "data": {"params": man.get("params"),
                 "validation_videos": man.get("validation_videos"),
                 "test_videos": sorted(man.get("test_videos", {}))},
        "checkpoint": "model/aed_tiny.safetensors (from `aedfast demo`)",
        "filter": {**DEMO_FILTER, "window": list(DEMO_FILTER["window"])},
        "grid": {k: list(v) for k, v in GRID.items()},
        "selection": "max validation micro AUC; ties: macro AUC, then grid order",
        "validation_search": rows,
        "chosen": {"weights": chosen, "validation": {"micro_auc": best["micro_auc"],
                                                     "macro_auc": best["macro_auc"]}},
        "default": {"weights": DEFAULT_WEIGHTS,
                    "validation": {"micro_auc": default_row["micro_auc"],
                                   "macro_auc": default_row["macro_auc"]}},
        "validation_detector_check": val_check,
        "test": {"tuned": {"weights": chosen, **test["tuned"]},
                 "default": {"weights": DEFAULT_WEIGHTS, **test["default"]}},
        "seconds": {"validation_maps": round(t_maps, 1), "search": round(t_search, 1),
                    "test_scoring": round(t_test, 1),
                    "total": round(time.perf_counter() - t0, 1)},
    }
    stamp = time.strftime("%Y-%m-%d", time.gmtime())
    base = RESULTS / f"{stamp}-{device.type}-demo-weights"
    base.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    sec = doc["seconds"]
    vids = ", ".join(f"{n} ({'+'.join(i['kinds'])})"
                     for n, i in (man.get("validation_videos") or {}).items())
    lines = [
        f"# The demo's scoring weights, chosen on validation ({info['name']}, {device.type}, "
        f"{info.get('threads', '')} threads, torch {info['torch']}, aedfast {__version__}, "
        f"{info['date']})", "",
        f"Command: `{command}` (after `aedfast demo --out {demo_out}`)", "",
        f"Validation split: {len(lengths)} videos, {sum(lengths)} frames, own seeds "
        f"(data/manifest.json `seeds`): {vids}.", "",
        f"Filter (fixed, the demo's): box {tuple(DEMO_FILTER['window'])}, frame max, temporal "
        f"Gaussian sigma {DEMO_FILTER['sigma']:g}, support {DEMO_FILTER['support']}. Grid: "
        + ", ".join(f"{k} in {{{', '.join(f'{x:g}' for x in v)}}}" for k, v in GRID.items())
        + f" ({len(rows)} settings). Selection: {doc['selection']}.", "",
        "## Test AUC (scored once per row, after the choice)", "",
        "| weights | a | b | c | d | test micro AUC | test macro AUC | val micro AUC |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, name, w, vrow in (("tuned", "tuned on validation", chosen, best),
                               ("default", "default `Smoothing()`", DEFAULT_WEIGHTS,
                                default_row)):
        r = test[key]
        lines.append(f"| {name} | {w['a']:g} | {w['b']:g} | {w['c']:g} | {w['d']:g} | "
                     f"{r['micro_auc']:.4f} | {r['macro_auc']:.4f} | {vrow['micro_auc']:.4f} |")
    lines += [
        "",
        "Per-video test AUC, tuned: " + ", ".join(
            f"{k} {v:.4f}" for k, v in test["tuned"]["per_video"].items()),
        "",
        "Per-video test AUC, default: " + ", ".join(
            f"{k} {v:.4f}" for k, v in test["default"]["per_video"].items()),
        "",
        "Full Detector passes on validation (check of the search's sums): chosen micro "
        f"{val_check['chosen']['micro_auc']:.4f} / macro {val_check['chosen']['macro_auc']:.4f}, "
        f"default micro {val_check['default']['micro_auc']:.4f} / macro "
        f"{val_check['default']['macro_auc']:.4f}; largest relative frame-score difference "
        f"{max(c['max_rel_score_diff'] for c in val_check.values()):.1e}.",
        "",
        f"Seconds: validation maps {sec['validation_maps']}, search {sec['search']}, test "
        f"scoring {sec['test_scoring']}, total {sec['total']}.",
        "",
        "## Validation search", "",
        *ranked, "",
    ]
    base.with_suffix(".md").write_text("\n".join(lines))
    print(f"wrote {base}.json and .md")
    return base


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python -m bench.tune_demo_weights DEMO_OUT")
    main(sys.argv[1])
