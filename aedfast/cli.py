"""The `aedfast` command: demo, train, score, calibrate, score-many, eval, bench, convert,
export, info.

Errors are one clear line on stderr and a non-zero exit code (set AEDFAST_DEBUG=1 for the
traceback); `--quiet` silences progress, `--json` prints machine-readable results. Results go
to stdout; progress bars and the library's log records (INFO and up, `logging`) to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path

EXIT_ERROR = 1
EXIT_USAGE = 2


class CliError(Exception):
    """An error reported to the user as one line, without a traceback."""


class _StderrHandler(logging.Handler):
    """Log records as plain lines on the current sys.stderr (looked up per record, so that a
    replaced stderr, as under pytest, is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _command_logging(quiet: bool) -> Iterator[None]:
    """While a command runs, show the library's log records on stderr: INFO and up, WARNING
    and up with --quiet. The handler and the "aedfast" logger's level are undone afterwards,
    so that calling `main` leaves a host program's logging as it was."""
    log = logging.getLogger("aedfast")
    handler = _StderrHandler(logging.WARNING if quiet else logging.INFO)
    old_level = log.level
    log.addHandler(handler)
    if old_level == logging.NOTSET or old_level > logging.INFO:
        log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def _emit(args: argparse.Namespace, payload: dict, text: str) -> None:
    """The command's result: JSON with --json, else the text (--quiet only hides progress)."""
    if getattr(args, "json", False):
        print(json.dumps(payload, indent=2, default=str))
    else:
        print(text)


# ----------------------------------------------------------------------------- info


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import torch

    from . import __version__
    from .kernels import HAS_TRITON, INTERPRET

    info: dict = {
        "aedfast": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": None,
        "cuda_available": torch.cuda.is_available(),
        "cuda": torch.version.cuda,
        "device": "cpu",
        "cpu_threads": torch.get_num_threads(),
        "triton_interpret": INTERPRET,
    }
    if HAS_TRITON:
        import triton

        info["triton"] = triton.__version__
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name(0)
        # "auto": per part the faster of triton and torch, measured (aedfast.backend_choice)
        info["backend"] = "auto (triton or torch, measured)" if HAS_TRITON else "torch"
    else:
        info["backend"] = "torch"
    lines = [f"{k:16s} {v}" for k, v in info.items()]
    _emit(args, info, "\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- convert


def cmd_convert(args: argparse.Namespace) -> int:
    import warnings

    from .model import AEDMAE

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = AEDMAE.from_official(args.teacher, args.student, preset=args.preset)
    for w in caught:
        if not args.quiet:
            print(f"warning: {w.message}", file=sys.stderr)
    out = model.save(args.out, extra={"converted_from": [str(args.teacher), str(args.student)]})
    _emit(args, {"checkpoint": str(out), "preset": args.preset}, f"wrote {out}")
    return 0


# ----------------------------------------------------------------------------- score


def _detector_spec(args: argparse.Namespace, protocol: str = "paper") -> tuple[object, dict]:
    """(checkpoint spec, Detector keyword arguments) from the detector options."""
    spec = args.checkpoint
    if spec is None:
        raise CliError("--checkpoint is required (an aedfast .safetensors or official .pth)")
    kwargs = {"batch_size": args.batch_size, "compile": not args.no_compile,
              "precision": args.precision, "protocol": protocol, "preset": args.preset}
    if args.device:
        kwargs["device"] = args.device
    if hasattr(args, "calibration"):  # score, score-many, calibrate (docs/design.md §13)
        kwargs.update(calibration=args.calibration, alarm_rate=args.alarm_rate)
    return ((spec, args.student) if args.student else spec), kwargs


def _load_detector(args: argparse.Namespace, protocol: str = "paper"):
    from .detector import Detector

    spec, kwargs = _detector_spec(args, protocol)
    return Detector(spec, **kwargs)


def cmd_score(args: argparse.Namespace) -> int:
    import numpy as np

    from . import report
    from .progress import progress_enabled

    source = args.source
    is_camera = source.isdigit() or "://" in source
    if not is_camera and not Path(source).exists():
        raise CliError(f"no such video file or folder: {source}")
    detector = _load_detector(args)
    out_dir = Path(args.out) if args.out else None
    show = progress_enabled(not args.quiet)  # AEDFAST_PROGRESS=0 also hides the bar
    if is_camera:
        result = detector.score_camera(
            int(source) if source.isdigit() else source, max_frames=args.max_frames,
            progress=show,
        )
    else:
        result = detector.score_video(source, return_maps=args.overlay, progress=show,
                                      decode=args.decode)
    scores = np.asarray(result.scores, dtype=np.float64)
    payload = {"source": source, "frames": int(len(scores)), "fps": result.fps,
               "decoder": result.info.get("decoder"),
               "scores": scores.tolist()}
    alarm_meta = None
    if result.events is not None:  # a calibrated detector (docs/design.md §13)
        alarm_meta = {"source": source, "threshold": detector.alarm_threshold,
                      "rule": vars(detector.calibration.rule), "map_size": detector.map_size}
        payload["events"] = [e.as_dict() for e in result.events]
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = Path(source).stem if not is_camera else "camera"
        report.write_scores_csv(out_dir / f"{stem}_scores.csv", scores, result.raw_scores)
        report.write_json(out_dir / f"{stem}_scores.json", payload)
        if alarm_meta is not None:
            from .alarms import write_events

            write_events(out_dir / f"{stem}_events.json", out_dir / f"{stem}_events.csv",
                         result.events, alarm_meta)
        if args.plot:
            report.plot_scores(out_dir / f"{stem}_scores.png", scores, None, title=stem)
        if args.overlay and result.maps is not None and not is_camera:
            from .frames import FrameSource

            src = FrameSource(source, chunk=64, pin=False, max_frames=len(result.maps))
            frames = (np.asarray(f) for chunk in src.chunks() for f in chunk)
            report.write_overlay_video(out_dir / f"{stem}_overlay.avi", frames,
                                       iter(result.maps), fps=25.0)
    text = (f"{source}: {len(scores)} frames at {result.fps:.1f} frames/s; "
            f"max score {scores.max():.4f} at frame {int(scores.argmax())}")
    if result.events is not None:
        text += (f"\n{len(result.events)} events above {detector.alarm_threshold:.4f}"
                 + "".join(f"\n  frames {e.start}-{e.end}, peak {e.peak_score:.4f} at frame "
                           f"{e.peak_frame}" for e in result.events[:20]))
    if out_dir is not None:
        text += f"\nwrote {out_dir}"
    _emit(args, payload if args.json else {}, text)
    return 0


# ----------------------------------------------------------------------------- calibrate


def cmd_calibrate(args: argparse.Namespace) -> int:
    from .alarms import EventRule
    from .calibration import calibrate, calibration_path

    args.checkpoint = args.checkpoint_pos
    args.calibration, args.alarm_rate = None, None  # calibrate the bare scorer
    if args.dataset:  # a data set root: its training videos are the normal ones
        from .shard import dataset_sources

        if len(args.sources) != 1:
            raise CliError("with --dataset give one SOURCE, the data set root")
        pairs, _ = dataset_sources(args.sources[0], args.dataset, split="train")
    elif args.sources:
        from .shard import expand_sources

        pairs = expand_sources(args.sources)
    else:
        raise CliError(f"{args.checkpoint} does not record where its training videos are "
                       "(only their number): name the normal videos, e.g. aedfast calibrate "
                       "CK VIDEO_OR_FOLDER..., or a data set root with --dataset KIND")
    rates = [r for r in args.rates.split(",") if r.strip()]
    out = args.out or calibration_path(args.checkpoint)
    cal = calibrate(_load_detector(args), [src for _, src in pairs], rates=rates,
                    fps=args.fps, rule=EventRule(args.min_length, args.merge_gap), out=out,
                    decode=args.decode, progress=not args.quiet)
    lines = [f"calibrated on {cal.videos} normal videos, {cal.frames} frames "
             f"({cal.hours * 3600:.0f} s of video); events: min length {cal.rule.min_length}, "
             f"merge gap {cal.rule.merge_gap} frames"]
    lines += [f"  {k}: threshold {v:.6g} ({cal.observed[k]} events in the normal video)"
              for k, v in cal.thresholds.items()]
    lines.append(f"wrote {out}")
    _emit(args, {"calibration": str(out), **cal.to_dict()}, "\n".join(lines))
    return 0


# ----------------------------------------------------------------------------- score-many


def cmd_score_many(args: argparse.Namespace) -> int:
    from .shard import dataset_sources, expand_sources, score_many

    labels = None
    if args.dataset:
        if len(args.sources) != 1:
            raise CliError("with --dataset give one SOURCE, the data set root")
        pairs, labels = dataset_sources(args.sources[0], args.dataset, split="test")
    else:
        pairs = expand_sources(args.sources)
    spec, kwargs = _detector_spec(args)
    run = score_many(spec, pairs, args.out, labels=labels, detector_kwargs=kwargs,
                     decode=args.decode, progress=not args.quiet)
    if run.rank != 0:
        return 0
    reused = sum(r.reused for r in run.results)
    text = (f"{len(run.results)} videos on {run.world} process(es): "
            f"{len(run.results) - reused} scored, {reused} finished before (part files); "
            f"wrote {run.path}")
    if run.metrics:
        text += (f"\nmicro AUC {run.metrics['micro_auc']:.4f}  macro AUC "
                 f"{run.metrics['macro_auc']:.4f}")
    _emit(args, {"results": str(run.path), "videos": len(run.results), "world": run.world,
                 "metrics": run.metrics}, text)
    return 0


# ----------------------------------------------------------------------------- eval


def cmd_eval(args: argparse.Namespace) -> int:
    from .data import open_dataset
    from .evaluate import evaluate, format_report

    dataset = open_dataset(args.data_root, args.dataset)
    labels = tracks = None
    if args.gt:  # frame labels from a ground-truth file (aedfast.data.ground_truth)
        from .data.ground_truth import read_ground_truth

        labels = read_ground_truth(args.gt, {v.name: len(v) for v in dataset.test},
                                   kind=args.gt_kind)
    if args.tracks:  # box tracks: RBDC / TBDC as the paper computes them (region_metrics)
        from .region_metrics import read_box_tracks

        tracks = read_box_tracks(args.tracks)
    detector = _load_detector(args, protocol=args.protocol)
    result = evaluate(detector, dataset, protocol=args.protocol, plots=args.plots,
                      overlay=args.overlay, progress=not args.quiet,
                      json_path=args.json_out, labels=labels, tracks=tracks,
                      region_threshold=args.region_threshold)
    _emit(args, result.as_dict(), format_report(result))
    return 0


# ----------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx

    spec = (args.checkpoint, args.student) if args.student else args.checkpoint
    smoothing = {"resolution": args.resolution} if args.resolution else "default"
    res = export_onnx(spec, args.onnx, output=args.output, protocol=args.protocol,
                      smoothing=smoothing, preset=args.preset, opset=args.opset,
                      verify=not args.no_verify)
    _emit(args, res.as_dict(), res.summary())
    return 0


# ----------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace) -> int:
    from .training import run_from_args

    path = run_from_args(args)
    _emit(args, {"checkpoint": str(path)}, f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    result = run_demo(out=args.out, quiet=args.quiet, fast=args.fast, device=args.device)
    _emit(args, result, result["summary"])
    return 0


# ----------------------------------------------------------------------------- bench


def cmd_bench(args: argparse.Namespace) -> int:
    from .benchmark import run_suite

    table, rows = run_suite(suites=args.suite, out=args.out, quiet=args.quiet)
    _emit(args, {"rows": rows}, table)
    return 0


# ----------------------------------------------------------------------------- parser


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument("--json", action="store_true", help="print results as JSON")


def _add_detector_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--checkpoint", "-c", required=required,
                   help="aedfast .safetensors checkpoint, or the official checkpoint-best.pth")
    p.add_argument("--student", help="official checkpoint-best-student.pth (with an official "
                   "teacher checkpoint)")
    p.add_argument("--preset", default="avenue",
                   help="preset of an official checkpoint (avenue, shanghaitech; default avenue)")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--batch-size", type=int, default=64, help="frames per model step")
    p.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                   help="model precision (auto: bf16 on CUDA, fp32 on the CPU)")


def _add_alarm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--calibration", default="auto", metavar="FILE", help="alarm thresholds "
                   "(aedfast calibrate; default: CK.calibration.json when it exists)")
    p.add_argument("--alarm-rate", metavar="R", help="which calibrated false-alarm rate sets "
                   "the threshold (default: the calibration's first)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aedfast",
        description="Fast self-distilled masked auto-encoder video anomaly detection.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="generate synthetic data, train, score, report",
                       description="One command end to end: generate the synthetic surveillance "
                       "benchmark, train the tiny preset (teacher, then student), score the test "
                       "videos, print micro/macro AUC and frames/s, write plots and an overlay "
                       "video into the output folder.")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    p.add_argument("--fast", action="store_true", help="a much shorter run (smoke test)")
    _add_common(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train on normal videos",
                       description="Two-stage training: teacher (encoder, teacher decoder, cls "
                       "head) then student. Writes OUT/<name>.safetensors.")
    try:
        from .training import add_train_arguments
    except ImportError:  # pragma: no cover - only while the training module is absent
        add_train_arguments = None
    if add_train_arguments is not None:
        add_train_arguments(p)
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("score", help="score a video file, a folder of frames, or a camera",
                       description="Score SOURCE (video file, folder of frames, camera index "
                       "or stream URL) and write per-frame scores as CSV and JSON.")
    p.add_argument("source", help="video file, folder of frame images, camera index or URL")
    _add_detector_args(p, required=True)
    p.add_argument("--out", "-o", help="folder for CSV/JSON (and --plot/--overlay outputs)")
    p.add_argument("--plot", action="store_true", help="write a PNG of the score curve")
    p.add_argument("--overlay", action="store_true", help="write an overlay video of the maps")
    p.add_argument("--max-frames", type=int, default=None, help="camera: stop after N frames")
    p.add_argument("--decode", default="opencv", choices=["opencv", "cpu", "gpu", "auto"],
                   help="video file decoder: opencv (reference, default), cpu (torchcodec), "
                   "gpu (torchcodec + NVDEC, frames stay on the GPU), auto (gpu where it "
                   "works, else opencv); docs/design.md §12")
    _add_alarm_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("calibrate", help="alarm thresholds from normal videos (no labels)",
                       description="Score videos known to be normal and store, beside the "
                       "checkpoint (CK.calibration.json), the thresholds for the false-alarm "
                       "rates asked; score then reports events. README 'Alarms'.")
    p.add_argument("checkpoint_pos", metavar="CK", help="checkpoint to calibrate")
    p.add_argument("sources", nargs="*", metavar="SOURCE", help="normal videos: files, frame "
                   "folders, folders of videos; or a data set root with --dataset (its "
                   "training videos)")
    p.add_argument("--dataset", choices=["avenue", "shanghaitech", "ped2", "official"],
                   help="SOURCE is a data set root of this layout: use its training videos")
    p.add_argument("--rates", default="1/h", help="false-alarm rates, comma-separated: N/h, "
                   "N/min, N/s, N/day (default 1/h)")
    p.add_argument("--fps", type=float, help="frame rate of the sources (default: each video "
                   "file's own; required for frame folders)")
    p.add_argument("--min-length", type=int, default=1, help="frames an event must span "
                   "(default 1)")
    p.add_argument("--merge-gap", type=int, default=25, help="runs at most this many frames "
                   "apart are one event (default 25)")
    p.add_argument("--out", help="calibration file (default: CK.calibration.json)")
    p.add_argument("--decode", default="opencv", choices=["opencv", "cpu", "gpu", "auto"],
                   help="video file decoder (see score)")
    _add_detector_args(p, required=False)
    _add_common(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("score-many", help="score many videos, sharded across torchrun ranks",
                       description="Score video files, frame folders, folders of videos or a "
                       "data set's test split; under torchrun each rank scores its share, rank "
                       "0 writes OUT/results.json once; a restarted run skips finished videos. "
                       "README 'Many GPUs'.")
    p.add_argument("sources", nargs="+", metavar="SOURCE",
                   help="video files, frame folders, folders of videos, or a data set root "
                   "with --dataset")
    p.add_argument("--dataset", choices=["avenue", "shanghaitech", "ped2", "official"],
                   help="SOURCE is a data set root: score its test videos, report frame AUC")
    p.add_argument("--out", "-o", required=True, help="output folder (results.json, parts/)")
    p.add_argument("--decode", default="opencv", choices=["opencv", "cpu", "gpu", "auto"],
                   help="video file decoder (see score)")
    _add_detector_args(p, required=True)
    _add_alarm_args(p)
    _add_common(p)
    p.set_defaults(func=cmd_score_many)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a labelled data set",
                       description="Score every test video of a data set and report micro and "
                       "macro AUC, RBDC, TBDC and frames/s.")
    p.add_argument("checkpoint_pos", metavar="CHECKPOINT", help="checkpoint to evaluate")
    p.add_argument("data_root", metavar="DATA_ROOT")
    p.add_argument("--dataset", required=True,
                   choices=["avenue", "shanghaitech", "ped2", "official", "folder"])
    p.add_argument("--protocol", default="paper", choices=["paper", "official"])
    p.add_argument("--json", dest="json_out", metavar="FILE", help="write the report as JSON")
    p.add_argument("--plots", metavar="DIR", help="write one score plot per video")
    p.add_argument("--overlay", metavar="DIR", help="write overlay videos of the maps")
    p.add_argument("--gt", metavar="FILE", help="frame labels from this ground-truth file "
                   "instead of the data set's own (README: Ground truth formats)")
    p.add_argument("--gt-kind", default="auto",
                   choices=["auto", "ffp-mat", "npy", "json", "ucf-crime", "ped1"],
                   help="format of --gt (default: from the extension / content)")
    p.add_argument("--tracks", metavar="PATH", help="box-track annotations (a folder of "
                   "per-video .txt files): RBDC / TBDC as the paper computes them")
    p.add_argument("--region-threshold", type=float, metavar="T", help="with --tracks: "
                   "detected regions are map > T (default: half of each frame's maximum)")
    _add_detector_args(p, required=False)
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("bench", help="run the benchmark suite and print its table",
                       description="Runs bench/ (pytest-benchmark) on the GPU when there is one, "
                       "else on the CPU, and prints a table of fast path vs eager PyTorch.")
    p.add_argument("--suite", action="append",
                   help="motion, cvt, smoothing, e2e (repeatable; default all)")
    p.add_argument("--out", help="folder for the JSON results")
    _add_common(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("convert", help="official checkpoints -> an aedfast checkpoint",
                       description="Convert the official implementation's checkpoint-best.pth "
                       "(and checkpoint-best-student.pth) into one aedfast .safetensors file.")
    p.add_argument("teacher", help="official checkpoint-best.pth")
    p.add_argument("student", nargs="?", help="official checkpoint-best-student.pth")
    p.add_argument("--preset", required=True, choices=["avenue", "shanghaitech"])
    p.add_argument("--out", required=True, help="output .safetensors path")
    _add_common(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("export", help="export the model step as an ONNX file",
                       description="Write the model step (uint8 frames t-3, t, t+3 and the "
                       "masking noise in; anomaly maps and/or raw frame scores out; dynamic "
                       "batch) as ONNX, traced from the pure-PyTorch path in float32, and check "
                       "it in onnxruntime. See README 'Export'.")
    p.add_argument("checkpoint", help="aedfast .safetensors, or official checkpoint-best.pth")
    p.add_argument("--onnx", required=True, metavar="FILE", help="output .onnx file")
    p.add_argument("--student", help="official checkpoint-best-student.pth")
    p.add_argument("--preset", default="avenue", help="preset of an official checkpoint")
    p.add_argument("--output", choices=["maps", "scores", "both"], default=None,
                   help="graph outputs (default: both; scores for --protocol official)")
    p.add_argument("--protocol", default="paper", choices=["paper", "official"])
    p.add_argument("--resolution", choices=["pixel", "token"],
                   help="maps per pixel (default) or per token")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the onnxruntime check of the written file")
    _add_common(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("info", help="versions, device, backend",
                       description="Print aedfast, torch, triton and CUDA versions, the device "
                       "and which backend will run.")
    _add_common(p)
    p.set_defaults(func=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    if args.command == "eval":
        args.checkpoint = args.checkpoint or args.checkpoint_pos
    try:
        with _command_logging(getattr(args, "quiet", False)):
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("aedfast: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # one clear line, no traceback
        if os.environ.get("AEDFAST_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"aedfast {args.command}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
