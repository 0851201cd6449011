"""Decode benchmark: frames/s of the video decoders aedfast can use (docs/design.md §12), and
the end-to-end rate of scoring a file with each.

Decoders, per clip size (640 x 360 and 856 x 480 by default, the Avenue and ShanghaiTech
frame sizes):

- opencv 1 thread: cv2.VideoCapture with CAP_PROP_N_THREADS = 1 (one core);
- opencv N threads: one capture with CAP_PROP_N_THREADS = the cores (FFmpeg's own threads);
- opencv N procs: N processes (a pool started and warmed before timing), each decoding the
  whole clip with one thread: the aggregate rate of N cameras decoded side by side;
- torchcodec cpu 1 thread / auto threads: aedfast.decode.open_frames(decode="cpu") with
  FFmpeg threads 1 and 0 (FFmpeg chooses), BGR chunks of 64 as the Detector reads them;
- torchcodec nvdec (CUDA only): open_frames(decode="gpu"): frames end on the device.

Each rate is the median of --rounds timed passes over the whole clip after one untimed pass.
Every torchcodec row also gives its largest and mean absolute pixel difference to OpenCV on
the same clip, and its frame count (equal to OpenCV's or the row says so). End to end: a
tiny-preset Detector (compile off unless --compile) scores the clip from the file once per
decoder after a warm-up pass, median of --rounds; the rows give frames/s and the relative
difference of the scores to OpenCV's.

Clips: the synthetic benchmark's scene (aedfast.data.synthetic) rendered at the clip size,
--unique frames played forwards and backwards up to --frames (rendering is the slow part),
encoded once into a temporary folder as H.264 (libx264 through torchcodec's encoder, crf 23)
when torchcodec is usable, else MPEG-4 Part 2 with OpenCV's writer; the rows name the codec.

    python -m bench.decode_bench --out bench/results/DATE-cpu-decode [--frames 300]
        [--rounds 3] [--sizes 640x360,856x480] [--compile]

Writes results.json and results.md (command, machine, versions, date, rows) into --out, and
one row per measurement to $AEDFAST_BENCH_OUT/decode.jsonl when that is set (the GPU check's
"decode" stage, bench/gpu_check.py). Needs numpy, OpenCV, torch and aedfast; torchcodec and
CUDA rows are reported as unavailable, with the reason, where they cannot run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from aedfast.checkpoint import atomic_write
from aedfast.decode import open_frames, torchcodec_problem
from bench.common import device_info, record

CHUNK = 64
LAST_DECODER = [""]  # what aedfast.decode named the decoder of the last layer_decode call


def clip_frames(size: tuple[int, int], frames: int, unique: int, seed: int = 0) -> np.ndarray:
    """uint8 [frames, H, W, 3] BGR: `unique` rendered frames of the synthetic scene, played
    forwards and backwards (ping-pong) up to `frames`."""
    from aedfast.data.synthetic import render_video
    from aedfast.data.synthetic_scene import make_scene

    H, W = size
    n = max(2, min(unique, frames))
    base, _ = render_video(make_scene(seed, H, W), np.random.default_rng(seed), n, ["running"])
    cycle = np.concatenate([np.arange(n), np.arange(n - 2, 0, -1)])
    return base[np.resize(cycle, frames)]


def encode_clip(frames: np.ndarray, folder: Path, name: str) -> tuple[Path, str]:
    """Write `frames` (BGR) as H.264 via torchcodec when it can, else MPEG-4 Part 2 via
    OpenCV; (path, codec)."""
    if torchcodec_problem() is None:
        try:
            from torchcodec.encoders import VideoEncoder

            rgb = torch.from_numpy(np.ascontiguousarray(frames[..., ::-1])).permute(0, 3, 1, 2)
            path = folder / f"{name}.mp4"
            VideoEncoder(rgb.contiguous(), frame_rate=25.0).to_file(
                str(path), codec="libx264", pixel_format="yuv420p", crf=23, preset="veryfast")
            return path, "h264 (libx264, crf 23, veryfast)"
        except Exception as e:  # an FFmpeg without libx264: fall back to OpenCV's writer
            print(f"  torchcodec cannot encode H.264 ({type(e).__name__}: {e}); using mp4v",
                  flush=True)
    path = folder / f"{name}.mp4"
    H, W = frames.shape[1:3]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (W, H))
    if not w.isOpened():
        raise RuntimeError(f"OpenCV cannot write mp4v to {path}")
    for f in frames:
        w.write(f)
    w.release()
    return path, "mpeg4 part 2 (OpenCV mp4v)"


# ----------------------------------------------------------------------------- decoders


def cv2_decode(path: str, threads: int, keep: bool = False):
    """Decode every frame with cv2.VideoCapture (FFmpeg threads = `threads`); the frame count,
    or the frames [T, H, W, 3] with keep."""
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, int(threads)])
    if not cap.isOpened():
        raise RuntimeError(f"OpenCV cannot open {path}")
    n, out = 0, []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        n += 1
        if keep:
            out.append(f)
    cap.release()
    return np.stack(out) if keep else n


def _pool_decode(path: str) -> int:
    cv2.setNumThreads(1)
    return cv2_decode(path, 1)


def layer_decode(path: str, decode: str, device: torch.device, threads: int = 0,
                 keep: bool = False):
    """Decode every frame through aedfast.decode.open_frames; the count, or the frames as a
    host array with keep. CUDA work is synchronised before returning."""
    src = open_frames(path, decode=decode, device=device, chunk=CHUNK, threads=threads)
    n, out = 0, []
    for c in src.chunks():
        n += c.shape[0]
        if keep:
            out.append(torch.as_tensor(c).cpu().numpy())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    LAST_DECODER[0] = src.decoder
    return np.concatenate(out) if keep else n


def timed(fn, rounds: int) -> tuple[float, int, list[float]]:
    """(median seconds, frames, every round's seconds) of `fn` after one untimed call."""
    n = fn()
    secs = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        n = fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), int(n), [round(s, 4) for s in secs]


# ----------------------------------------------------------------------------- the bench


def over(deadline: float | None) -> bool:
    """Whether the --budget is spent (the rows left are then reported as skipped)."""
    return deadline is not None and time.monotonic() > deadline


def decode_rows(path: Path, codec: str, size: tuple[int, int], rounds: int, cores: int,
                cuda: torch.device | None, pool, deadline: float | None = None) -> list[dict]:
    H, W = size
    base = {"suite": "decode", "kind": "decode", "size": f"{W}x{H}", "codec": codec}
    ref = cv2_decode(str(path), 0, keep=True)
    rows = []

    def add(case: str, fn, frames_ref=None, **extra) -> None:
        row = {**base, "case": case}
        if over(deadline):
            row["status"] = "skipped: the --budget was spent"
            rows.append(row)
            return
        try:
            sec, n, all_s = timed(fn, rounds)
            row.update(fps=round(n / sec, 1), frames=n, rounds_s=all_s, **extra)
            if frames_ref is not None:
                got = frames_ref()
                row["decoder"] = LAST_DECODER[0]
                row["frames_equal_opencv"] = got.shape == ref.shape
                if got.shape == ref.shape:
                    d = np.abs(got.astype(np.int16) - ref.astype(np.int16))
                    row.update(max_abs_diff=int(d.max()), mean_abs_diff=round(float(d.mean()), 5))
        except Exception as e:
            row["status"] = f"unavailable: {type(e).__name__}: {str(e)[:200]}"
        rows.append(row)
        print(f"  {row['size']} {case}: " + (f"{row['fps']} frames/s" if "fps" in row else
                                            row["status"]), flush=True)

    cpu = torch.device("cpu")
    problem = torchcodec_problem()
    add("opencv 1 thread", lambda: cv2_decode(str(path), 1))
    if cuda is not None and not problem:  # the GPU's row first: the point of a device run
        add("torchcodec nvdec", lambda: layer_decode(str(path), "gpu", cuda),
            frames_ref=lambda: layer_decode(str(path), "gpu", cuda, keep=True))
    add(f"opencv {cores} threads", lambda: cv2_decode(str(path), cores), threads=cores)
    if pool is not None:
        add(f"opencv {cores} procs x 1 thread",
            lambda: sum(pool.map(_pool_decode, [str(path)] * cores)), procs=cores)
    for threads, label in ((1, "torchcodec cpu 1 thread"), (0, "torchcodec cpu auto threads")):
        if problem:
            rows.append({**base, "case": label, "status": f"unavailable: {problem[:200]}"})
            continue
        add(label, lambda t=threads: layer_decode(str(path), "cpu", cpu, t),
            frames_ref=lambda t=threads: layer_decode(str(path), "cpu", cpu, t, keep=True))
    if cuda is None:
        rows.append({**base, "case": "torchcodec nvdec", "status": "unavailable: no CUDA device"})
    elif problem:
        rows.append({**base, "case": "torchcodec nvdec", "status": f"unavailable: {problem[:200]}"})
    one = next((r["fps"] for r in rows if r["case"] == "opencv 1 thread" and "fps" in r), None)
    for r in rows:
        if one and "fps" in r:
            r["vs_opencv_1_thread"] = round(r["fps"] / one, 3)
    return rows


def e2e_rows(path: Path, codec: str, size: tuple[int, int], rounds: int, device: torch.device,
             compile_: bool, deadline: float | None = None, threads: int = 1) -> list[dict]:
    """End-to-end frames/s of Detector.score_video(file) per decoder (tiny preset; the torch
    backend, CUDA graphs only with compile: what is compared is the decoders). On the CPU
    torch gets `threads` threads (default 1: the decoding thread has the other cores; a
    shared machine's OpenMP threads otherwise wait on each other for most of the time)."""
    from aedfast.detector import Detector
    from aedfast.model import AEDMAE

    torch.manual_seed(0)
    det = Detector(AEDMAE.from_preset("tiny"), device=device, compile=compile_,
                   cuda_graphs=compile_, backend="torch",
                   threads=threads if device.type == "cpu" else None,
                   batch_size=64 if device.type == "cuda" else 8)
    H, W = size
    base = {"suite": "decode", "kind": "e2e", "size": f"{W}x{H}", "codec": codec,
            "preset": "tiny", "device": str(device), "compile": compile_,
            "batch": det.batch_size,
            "torch_threads": torch.get_num_threads() if device.type == "cpu" else None}
    decoders = ["opencv"] + (["gpu"] if device.type == "cuda" else []) + ["cpu"]
    rows, ref = [], None
    for dec in decoders:
        row = {**base, "case": f"score_video decode={dec}"}
        if over(deadline):
            row["status"] = "skipped: the --budget was spent"
            rows.append(row)
            continue
        try:
            det.score_video(str(path), decode=dec)  # warm-up
            secs, res = [], None
            for _ in range(rounds):
                t0 = time.perf_counter()
                res = det.score_video(str(path), decode=dec)
                secs.append(time.perf_counter() - t0)
            sec = statistics.median(secs)
            row.update(fps=round(res.frames / sec, 1), frames=res.frames,
                       rounds_s=[round(s, 4) for s in secs], decoder=res.info["decoder"])
            if ref is None:
                ref = res.scores
            elif len(ref) == len(res.scores):
                row["score_rel_diff_vs_opencv"] = float(
                    np.abs(res.scores - ref).max() / max(np.abs(ref).max(), 1e-12))
        except Exception as e:
            row["status"] = f"unavailable: {type(e).__name__}: {str(e)[:200]}"
        rows.append(row)
        print(f"  {row['size']} {row['case']}: " + (f"{row['fps']} frames/s" if "fps" in row
                                                     else row["status"]), flush=True)
    return rows


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else the platform's machine type."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "opencv": cv2.__version__, "numpy": np.__version__}
    try:
        import torchcodec

        out["torchcodec"] = getattr(torchcodec, "__version__", "?")
        out["ffmpeg_major"] = getattr(torchcodec, "ffmpeg_major_version", None)
    except Exception as e:
        out["torchcodec"] = f"unavailable ({type(e).__name__})"
    return out


def markdown(doc: dict) -> str:
    lines = [f"# Decode benchmark ({doc['date']})", "",
             f"Command: `{doc['command']}`", "",
             f"Machine: {doc['machine']}", "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in doc["versions"].items()), "",
             f"Clips: {doc['frames']} frames per size ({doc['unique']} rendered, ping-pong), "
             f"{doc['rounds']} timed rounds after one warm-up, medians.", ""]
    if doc.get("note"):
        lines += [doc["note"], ""]
    load = doc.get("load_average_1_5_15min")
    if load:
        lines += [f"Load average (1, 5, 15 min) at the start {load['start']}, at the end "
                  f"{load['end']}, on {doc['cores']} cores.", ""]
    lines += ["## Decoding", "", "| size | codec | decoder | frames/s | x opencv 1 thread | "
              "frames | max / mean abs diff to OpenCV |", "|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if r["kind"] != "decode":
            continue
        diff = (f"{r['max_abs_diff']} / {r['mean_abs_diff']}" if "max_abs_diff" in r else
                ("frame counts differ" if r.get("frames_equal_opencv") is False else ""))
        lines.append(f"| {r['size']} | {r['codec']} | {r['case']} | "
                     f"{r.get('fps', r.get('status', ''))} | {r.get('vs_opencv_1_thread', '')}"
                     f" | {r.get('frames', '')} | {diff} |")
    lines += ["", "## End to end (Detector.score_video on the file)", "",
              "| size | decoder | device | torch threads | frames/s | score rel. diff to opencv |",
              "|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        if r["kind"] == "e2e":
            d = r.get("score_rel_diff_vs_opencv")
            lines.append(f"| {r['size']} | {r['case']} | {r['device']} | "
                         f"{r.get('torch_threads') or ''} | "
                         f"{r.get('fps', r.get('status', ''))} | "
                         f"{'' if d is None else f'{d:.2g}'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decode_bench",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="folder for results.json and results.md")
    ap.add_argument("--frames", type=int, default=300)
    ap.add_argument("--unique", type=int, default=60, help="rendered frames per clip")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="640x360,856x480", help="W x H, comma-separated")
    ap.add_argument("--compile", action="store_true", help="compile the end-to-end Detector")
    ap.add_argument("--torch-threads", type=int, default=1,
                    help="CPU threads of the end-to-end Detector's torch (default 1)")
    ap.add_argument("--no-procs", action="store_true", help="skip the process-pool row")
    ap.add_argument("--note", default="", help="a line for results.md (e.g. machine load)")
    ap.add_argument("--budget", type=float, default=None,
                    help="seconds: measurements not started by then are reported as skipped "
                    "(the GPU check's stage limit)")
    args = ap.parse_args(argv)
    sizes = []
    for s in args.sizes.split(","):
        w, h = (int(v) for v in s.lower().split("x"))
        sizes.append((h, w))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cuda = torch.device("cuda") if torch.cuda.is_available() else None
    pool = None if args.no_procs else mp.get_context("spawn").Pool(cores)
    rows: list[dict] = []
    load_start = os.getloadavg()
    deadline = None if args.budget is None else time.monotonic() + args.budget
    try:
        with tempfile.TemporaryDirectory(prefix="aedfast-decode-") as tmp:
            for size in sizes:
                t0 = time.perf_counter()
                frames = clip_frames(size, args.frames, args.unique)
                path, codec = encode_clip(frames, Path(tmp), f"clip_{size[1]}x{size[0]}")
                print(f"{size[1]}x{size[0]}: {codec}, {len(frames)} frames, "
                      f"{path.stat().st_size / 1e6:.2f} MB, made in "
                      f"{time.perf_counter() - t0:.1f} s", flush=True)
                if pool is not None:  # warm the workers (imports) outside the timing
                    pool.map(_pool_decode, [str(path)] * cores)
                rows += decode_rows(path, codec, size, args.rounds, cores, cuda, pool,
                                    deadline)
                rows += e2e_rows(path, codec, size, args.rounds, cuda or torch.device("cpu"),
                                 args.compile, deadline, args.torch_threads)
    finally:
        if pool is not None:
            pool.terminate()
    info = device_info(cuda or torch.device("cpu"))
    machine = f"{cpu_name()}, {cores} cores" + (
        f"; {info.get('name')}, CUDA {info.get('cuda')}" if cuda is not None else "")
    doc = {"command": "python -m bench.decode_bench " + shlex.join(
        sys.argv[1:] if argv is None else argv), "date": info["date"], "machine": machine,
        "versions": versions(), "frames": args.frames, "unique": args.unique,
        "rounds": args.rounds, "cores": cores, "note": args.note,
        "load_average_1_5_15min": {"start": [round(v, 2) for v in load_start],
                                   "end": [round(v, 2) for v in os.getloadavg()]},
        "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", lambda p: p.write_text(json.dumps(doc, indent=1)))
    atomic_write(out / "results.md", lambda p: p.write_text(markdown(doc)))
    for r in rows:
        record("decode", r)
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
