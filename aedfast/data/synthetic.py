"""A seeded, deterministic synthetic surveillance benchmark: the demo's data and the library's
accuracy yardstick.

One fixed camera looks at a scene: a building with windows (a door nobody uses in training), a
lawn with trees and a bench, and a paved walkway crossing the image. Frames get per-pixel sensor
noise and a slow lighting drift. People (articulated stick figures of varied size, build and
clothing colours, scaled by perspective) walk along the walkway in both directions at normal
walking speed (about 0.033 body heights per frame at 25 fps, i.e. 1.4 m/s), entering and
leaving at the image sides.

Test videos add anomalies, each in one or two intervals covering about 30-50% of the frames:

- ``running``: a person running along the walkway at 4x walking speed, faster gait;
- ``cyclist``: a cyclist at 4x walking speed;
- ``vehicle``: a car of a vivid colour at 5x walking speed on the walkway;
- ``thrown``: a ball thrown across the scene on a parabola, bouncing on the ground;
- ``falling``: a crate falling from the top of the image, bouncing, lying for a moment;
- ``wrong_way``: a person leaving the building's door and walking down across the lawn and
  the walkway towards the camera (where and in a direction nobody walks in training);
- ``cart``: a person pushing a large, brightly coloured cart, leaving the walkway
  diagonally towards the camera.

In videos shorter than about 200 frames an anomaly that would take more than half of the
video is sped up (at most 3x) to fit in about 40% of it.

Ground truth is exact: the pixel mask of a frame holds the visible pixels of the anomalous
objects (normal people in front of them occlude the mask), and a frame is anomalous iff its mask
is not empty.

`generate(root, ...)` writes the ShanghaiTech layout read by
``aedfast.data.open_dataset(root, "shanghaitech")``::

    root/manifest.json                         parameters, per-test-video intervals and kinds
    root/background.png                        the empty scene
    root/training/videos/01_001.avi ...        MJPG (lossy, like the real data sets' videos)
    root/testing/frames/01_0001/000.jpg ...    one image per frame
    root/testing/test_frame_mask/01_0001.npy   uint8 [T] frame labels
    root/testing/test_pixel_mask/01_0001.npy   uint8 [T, H, W] pixel masks (0/1)

The tree is written to a temporary folder beside `root` and renamed into place; calling again
with the same parameters reuses the existing tree. Every video is drawn from its own generator
seeded by (seed, split, index), so video i is the same whatever n_train / n_test are.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np

from .synthetic_agents import ANOMALY_KINDS, LONG_KINDS, normal_people, plan_anomalies
from .synthetic_draw import Painter
from .synthetic_scene import Scene, make_scene

GENERATOR_VERSION = 1


def render_video(scene: Scene, rng: np.random.Generator, T: int, anomaly_kinds: list[str],
                 *, noise: float = 2.5) -> tuple[np.ndarray, np.ndarray | None]:
    """Render T frames. Returns (frames uint8 [T, H, W, 3] BGR, masks uint8 [T, H, W] 0/1 or None
    when there are no anomalies)."""
    H, W = scene.H, scene.W
    agents = normal_people(scene, rng, T)
    if anomaly_kinds:
        agents += plan_anomalies(scene, rng, T, anomaly_kinds)
    # slow lighting drift: a per-channel gain oscillating over several hundred frames
    amp = float(rng.uniform(0.04, 0.08))
    period = float(rng.uniform(300, 900))
    ph0 = float(rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(0.9, 1.1, 3)
    tt = np.arange(T)[:, None]
    gain = (1.0 + amp * tint[None] * np.sin(2 * np.pi * tt / period + ph0)).astype(np.float32)
    frames = np.empty((T, H, W, 3), np.uint8)
    masks = np.zeros((T, H, W), np.uint8) if anomaly_kinds else None
    for t in range(T):
        canvas = scene.background.copy()
        mask = masks[t] if masks is not None else None
        p = Painter(canvas, mask)
        live = [a for a in agents if a.t0 <= t < a.t1]
        live.sort(key=lambda a: float(a.y[t - a.t0]))  # far (small y) first
        for a in live:
            a.draw(p, t)
        f = canvas.astype(np.float32) * gain[t]
        f += rng.standard_normal((H, W, 3), dtype=np.float32) * noise
        np.clip(f, 0, 255, out=f)
        frames[t] = f.astype(np.uint8)
    if masks is not None:
        masks = (masks > 0).astype(np.uint8)
    return frames, masks


def _intervals(labels: np.ndarray) -> list[list[int]]:
    d = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    return [[int(a), int(b)] for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0])]


def _test_kinds(i: int, kinds: list[str], rng: np.random.Generator) -> list[str]:
    """Anomaly kinds of test video i, one per interval: kinds[i % n]; a long kind fills one
    interval; a short kind gets a second interval, of another short kind (from the other half
    of the list) in two of three videos, else of the same kind."""
    n = len(kinds)
    first = kinds[i % n]
    if first in LONG_KINDS:
        return [first]
    if rng.random() < 0.67:
        for j in range(n - 1):
            cand = kinds[(i + n // 2 + j) % n]
            if cand not in LONG_KINDS and cand != first:
                return [first, cand]
    return [first, first]


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    H, W = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    w = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, (W, H))
    if w.isOpened():
        w.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    else:  # OpenCV built without its own MJPEG writer: let it choose a backend
        w = cv2.VideoWriter(str(path), fourcc, fps, (W, H))
    if not w.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MJPG .avi at {path}")
    for f in frames:
        w.write(f)
    w.release()


def _params(seed: int, n_train: int, n_test: int, frames: int, size: tuple[int, int],
            fps: float, image_ext: str, kinds: list[str], noise: float) -> dict:
    return {"generator": "aedfast.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
            "n_train": n_train, "n_test": n_test, "frames": frames, "size": list(size),
            "fps": fps, "image_ext": image_ext, "kinds": kinds, "noise": noise}


def load_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of a generated tree, or None if there is none (or it is unreadable)."""
    p = Path(root) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def generate(root: str | os.PathLike, *, seed: int = 0, n_train: int = 8, n_test: int = 6,
             frames: int = 250, size: tuple[int, int] = (64, 128), fps: float = 25.0,
             image_ext: str = ".jpg", kinds: tuple[str, ...] | list[str] = ANOMALY_KINDS,
             noise: float = 2.5, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the synthetic benchmark to `root` (ShanghaiTech layout, see the module docstring)
    and return `root`.

    size: (H, W) of the frames; frames: T per video; kinds: anomaly kinds used, cycled over the
    test videos; image_ext: ".jpg" (quality 95) or ".png" for the test frames; noise: sensor
    noise sigma in grey levels. If `root` already holds a complete tree generated with the same
    parameters it is reused; a different tree there raises FileExistsError unless `overwrite`.
    """
    root = Path(root).expanduser()
    H, W = (int(size[0]), int(size[1]))
    if H < 32 or W < 32:
        raise ValueError(f"size must be at least 32 x 32, got {size}")
    if frames < 60:
        raise ValueError(f"frames must be >= 60 (anomaly intervals need room), got {frames}")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ValueError("need n_train >= 0, n_test >= 0 and at least one video")
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in ANOMALY_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown anomaly kinds {bad}; choose from {ANOMALY_KINDS}")
    params = _params(seed, n_train, n_test, frames, (H, W), float(fps), image_ext, kinds,
                     float(noise))
    if root.exists():
        man = load_manifest(root)
        if man is not None and man.get("complete") and man.get("params") == params:
            return root
        if not overwrite and (root.is_file() or any(root.iterdir())):
            raise FileExistsError(f"{root} exists and is not a synthetic tree with these "
                                  "parameters; pass overwrite=True or choose another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _generate_into(tmp, params, progress)
        if root.exists():
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _generate_into(out: Path, params: dict, progress: bool) -> None:
    from tqdm.auto import tqdm

    seed, T = params["seed"], params["frames"]
    H, W = params["size"]
    scene = make_scene(seed, H, W)
    (out / "training/videos").mkdir(parents=True)
    for sub in ("frames", "test_frame_mask", "test_pixel_mask"):
        (out / "testing" / sub).mkdir(parents=True)
    cv2.imwrite(str(out / "background.png"), scene.background)
    test_info = {}
    jobs = [("train", i) for i in range(params["n_train"])] + \
        [("test", i) for i in range(params["n_test"])]
    with tqdm(jobs, desc="synthetic benchmark", unit="video", disable=not progress) as bar:
        for split, i in bar:
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
            if split == "train":
                f, _ = render_video(scene, rng, T, [], noise=params["noise"])
                _write_video(out / "training/videos" / f"01_{i + 1:03d}.avi", f, params["fps"])
                continue
            kinds = _test_kinds(i, params["kinds"], rng)
            f, m = render_video(scene, rng, T, kinds, noise=params["noise"])
            name = f"01_{i + 1:04d}"
            vdir = out / "testing/frames" / name
            vdir.mkdir()
            enc = [cv2.IMWRITE_JPEG_QUALITY, 95] if params["image_ext"] == ".jpg" else \
                [cv2.IMWRITE_PNG_COMPRESSION, 1]
            for t in range(T):
                if not cv2.imwrite(str(vdir / f"{t:03d}{params['image_ext']}"), f[t], enc):
                    raise RuntimeError(f"cannot write {vdir / f'{t:03d}'}")
            labels = m.reshape(T, -1).any(axis=1).astype(np.uint8)
            np.save(out / "testing/test_frame_mask" / f"{name}.npy", labels)
            np.save(out / "testing/test_pixel_mask" / f"{name}.npy", m)
            test_info[name] = {"kinds": kinds, "intervals": _intervals(labels),
                               "anomalous_frames": int(labels.sum())}
    manifest = {"params": params, "complete": True, "test_videos": test_info}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


__all__ = ["ANOMALY_KINDS", "Scene", "generate", "load_manifest", "make_scene", "render_video"]
