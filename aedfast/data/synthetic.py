"""A seeded, deterministic synthetic surveillance benchmark: the demo's data and the library's
accuracy yardstick.

One fixed camera looks at a scene: a building with windows (a door nobody uses in training), a
lawn with trees and a bench, and a paved walkway crossing the image. Frames get per-pixel sensor
noise and a slow lighting drift. People (articulated stick figures of varied size, build and
clothing colours, scaled by perspective) walk along the walkway in both directions at normal
walking speed (about 0.033 body heights per frame at 25 fps, i.e. 1.4 m/s), entering and
leaving at the image sides.

Test and validation videos add anomalies, each in one or two intervals covering about 30-50%
of the frames:

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
    root/validation/frames/val_0001/000.jpg    the validation split: test-like videos with
    root/validation/frame_mask/val_0001.npy    their own anomalies and labels, to choose
    root/validation/pixel_mask/val_0001.npy    scoring settings without looking at the test
                                               split (`open_validation`)

The tree is written to a temporary folder beside `root` and renamed into place; calling again
with the same parameters reuses the existing tree. Every video is drawn from its own generator
seeded by `video_seed(seed, split, index)` = [seed, 0 | 1 | 2 (train | test | validation),
index], so video i is the same whatever n_train / n_test / n_val are, and the three splits
never share a seed (the manifest records each video's seed). Version 2 added the validation
split; its training and test videos are byte-identical to version 1's for the same arguments.

`generate(..., variant=NAME | Variant)` draws the tree with another camera of the benchmark
family (`aedfast.data.synthetic_variants`, docs/design.md §6): scene layout and palette,
perspective and tilt, crowd density, anomaly mix and size, lighting, noise, compression and
frame size. The default variant is today's generator, byte for byte, and its manifest is
unchanged; another variant's name and knobs are recorded in the manifest's parameters.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from .errors import DatasetError
from .masks import NpyMasks
from .readers import Dataset
from .synthetic_agents import ANOMALY_KINDS, LONG_KINDS, normal_people, plan_anomalies
from .synthetic_draw import Painter
from .synthetic_scene import Scene, make_scene
from .synthetic_variants import Variant, apply_camera, get_variant
from .videos import collect_videos

GENERATOR_VERSION = 2  # 2: the validation split (training and test unchanged)
SPLITS = ("train", "test", "validation")


def render_video(scene: Scene, rng: np.random.Generator, T: int, anomaly_kinds: list[str],
                 *, noise: float = 2.5, variant: Variant | None = None
                 ) -> tuple[np.ndarray, np.ndarray | None]:
    """Render T frames. Returns (frames uint8 [T, H, W, 3] BGR, masks uint8 [T, H, W] 0/1 or None
    when there are no anomalies). `variant`: its crowd density, anomaly size and imaging knobs
    (the scene's knobs are `scene`'s, its noise is `noise`); None is today's camera."""
    H, W = scene.H, scene.W
    v = variant if variant is not None else Variant()
    agents = normal_people(scene, rng, T, v.density)
    if anomaly_kinds:
        a_scene = scene if v.anomaly_scale == 1.0 else \
            replace(scene, slope=scene.slope * v.anomaly_scale)
        agents += plan_anomalies(a_scene, rng, T, anomaly_kinds)
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
    if v.has_imaging():  # its own generator, drawn from `rng` after everything else
        frames, masks = apply_camera(frames, masks, v,
                                     np.random.default_rng(int(rng.integers(2**63))))
    return frames, masks


def variant_scene(seed: int, variant: Variant, H: int, W: int) -> Scene:
    """The scene a tree of data set seed `seed` is drawn in with `variant` at H x W: its own
    `scene_seed` when it has one, else `seed`."""
    return make_scene(seed if variant.scene_seed is None else variant.scene_seed, H, W,
                      **variant.scene_options())


def video_seed(seed: int, split: str, index: int) -> list[int]:
    """The seed sequence of video `index` of `split` ("train", "test" or "validation"):
    [seed, 0 | 1 | 2, index]; distinct splits never share one."""
    return [int(seed), SPLITS.index(split), int(index)]


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


def _params(seed: int, n_train: int, n_test: int, n_val: int, frames: int,
            size: tuple[int, int], fps: float, image_ext: str, kinds: list[str],
            noise: float, variant: Variant) -> dict:
    """The manifest's parameters; a default variant adds nothing (version 2's manifest)."""
    p = {"generator": "aedfast.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
         "n_train": n_train, "n_test": n_test, "n_val": n_val, "frames": frames,
         "size": list(size), "fps": fps, "image_ext": image_ext, "kinds": kinds,
         "noise": noise}
    if not variant.is_default():
        p["variant"] = variant.to_dict()
    return p


def _resolve(name: str, arg, variant: Variant, default):
    """A generation argument that the variant may also set (size, kinds, noise): the
    argument, else the variant's value, else the built-in default; both set and different is
    an error naming the field."""
    own = getattr(variant, name)
    if arg is None:
        return own if own is not None else default
    if own is not None:
        same = float(arg) == float(own) if name == "noise" else tuple(arg) == tuple(own)
        if not same:
            raise ValueError(f"{name}={arg!r} contradicts variant {variant.name!r}, which sets "
                             f"{name}={own!r}; leave {name} out")
    return arg


def load_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of a generated tree, or None if there is none (or it is unreadable)."""
    p = Path(root) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def _older_version(man: dict | None, params: dict) -> bool:
    """Whether `man` is the manifest of a complete tree of an older generator version with
    otherwise the same parameters: its training and test videos are the ones asked for, so it
    may be replaced without `overwrite` (a model trained on it stays valid)."""
    old = (man or {}).get("params") or {}
    if not (man or {}).get("complete") or old.get("generator") != params["generator"] \
            or not isinstance(old.get("version"), int) or old["version"] >= GENERATOR_VERSION:
        return False
    skip = ("version", "n_val")
    return {k: v for k, v in old.items() if k not in skip} == \
        {k: v for k, v in params.items() if k not in skip}


def generate(root: str | os.PathLike, *, seed: int = 0, n_train: int = 8, n_test: int = 6,
             n_val: int = 7, frames: int = 250, size: tuple[int, int] | None = None,
             fps: float = 25.0, image_ext: str = ".jpg",
             kinds: tuple[str, ...] | list[str] | None = None, noise: float | None = None,
             variant: str | Variant = "default", overwrite: bool = False,
             progress: bool = True) -> Path:
    """Write the synthetic benchmark to `root` (ShanghaiTech layout, see the module docstring)
    and return `root`.

    size: (H, W) of the frames; frames: T per video; n_val: validation videos (7 by default:
    each anomaly kind comes first in one of them); kinds: anomaly kinds used, cycled over the
    test videos and, separately, over the validation videos; image_ext: ".jpg" (quality 95)
    or ".png" for the test and validation frames; noise: sensor noise sigma in grey levels.
    variant: a camera of the benchmark family, by name (`VARIANTS`) or a `Variant`; size,
    kinds and noise left out (None) take the variant's values, else (64, 128), all kinds and
    2.5; given, they must agree with the variant's.
    If `root` already holds a complete tree generated with the same parameters it is reused;
    one of an older generator version and otherwise the same parameters is regenerated (same
    training and test videos, plus what the new version adds); a different tree there raises
    FileExistsError unless `overwrite`.
    """
    root = Path(root).expanduser()
    var = get_variant(variant)
    size = _resolve("size", size, var, (64, 128))
    kinds = _resolve("kinds", kinds, var, ANOMALY_KINDS)
    noise = _resolve("noise", noise, var, 2.5)
    H, W = (int(size[0]), int(size[1]))
    if H < 32 or W < 32:
        raise ValueError(f"size must be at least 32 x 32, got {size}")
    if frames < 60:
        raise ValueError(f"frames must be >= 60 (anomaly intervals need room), got {frames}")
    if min(n_train, n_test, n_val) < 0 or n_train + n_test + n_val == 0:
        raise ValueError("need n_train, n_test, n_val >= 0 and at least one video")
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in ANOMALY_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown anomaly kinds {bad}; choose from {ANOMALY_KINDS}")
    params = _params(seed, n_train, n_test, n_val, frames, (H, W), float(fps), image_ext, kinds,
                     float(noise), var)
    if root.exists():
        man = load_manifest(root)
        if man is not None and man.get("complete") and man.get("params") == params:
            return root
        if not overwrite and (root.is_file() or any(root.iterdir())) \
                and not _older_version(man, params):
            raise FileExistsError(f"{root} exists and is not a synthetic tree with these "
                                  "parameters; pass overwrite=True or choose another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _generate_into(tmp, params, var, progress)
        if root.exists():
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _write_labelled(vdir: Path, frames: np.ndarray, masks: np.ndarray, labels_dir: Path,
                    pixels_dir: Path, name: str, image_ext: str) -> np.ndarray:
    """One labelled video as frame images + .npy frame labels and pixel masks; its labels."""
    vdir.mkdir()
    enc = [cv2.IMWRITE_JPEG_QUALITY, 95] if image_ext == ".jpg" else \
        [cv2.IMWRITE_PNG_COMPRESSION, 1]
    for t in range(len(frames)):
        if not cv2.imwrite(str(vdir / f"{t:03d}{image_ext}"), frames[t], enc):
            raise RuntimeError(f"cannot write {vdir / f'{t:03d}'}")
    labels = masks.reshape(len(masks), -1).any(axis=1).astype(np.uint8)
    np.save(labels_dir / f"{name}.npy", labels)
    np.save(pixels_dir / f"{name}.npy", masks)
    return labels


def _generate_into(out: Path, params: dict, var: Variant, progress: bool) -> None:
    from ..progress import progress_bar

    seed, T = params["seed"], params["frames"]
    H, W = params["size"]
    scene = variant_scene(seed, var, H, W)
    (out / "training/videos").mkdir(parents=True)
    for sub in ("frames", "test_frame_mask", "test_pixel_mask"):
        (out / "testing" / sub).mkdir(parents=True)
    for sub in ("frames", "frame_mask", "pixel_mask"):
        (out / "validation" / sub).mkdir(parents=True)
    cv2.imwrite(str(out / "background.png"), scene.background)
    # where each labelled split goes: frames, frame labels, pixel masks, video name
    dirs = {"test": (out / "testing/frames", out / "testing/test_frame_mask",
                     out / "testing/test_pixel_mask", "01_{:04d}"),
            "validation": (out / "validation/frames", out / "validation/frame_mask",
                           out / "validation/pixel_mask", "val_{:04d}")}
    info: dict[str, dict] = {"test": {}, "validation": {}}
    seeds: dict[str, list[list[int]]] = {s: [] for s in SPLITS}
    jobs = [(split, i) for split, n in zip(SPLITS, ("n_train", "n_test", "n_val"))
            for i in range(params[n])]
    with progress_bar(jobs, enabled=progress, desc="synthetic benchmark", unit="video") as bar:
        for split, i in bar:
            vseed = video_seed(seed, split, i)
            seeds[split].append(vseed)
            rng = np.random.default_rng(vseed)
            if split == "train":
                f, _ = render_video(scene, rng, T, [], noise=params["noise"], variant=var)
                _write_video(out / "training/videos" / f"01_{i + 1:03d}.avi", f, params["fps"])
                continue
            kinds = _test_kinds(i, params["kinds"], rng)
            f, m = render_video(scene, rng, T, kinds, noise=params["noise"], variant=var)
            fdir, ldir, pdir, pattern = dirs[split]
            name = pattern.format(i + 1)
            labels = _write_labelled(fdir / name, f, m, ldir, pdir, name, params["image_ext"])
            info[split][name] = {"kinds": kinds, "intervals": _intervals(labels),
                                 "anomalous_frames": int(labels.sum()), "seed": vseed}
    manifest = {"params": params, "variant": var.to_dict(), "complete": True,
                "test_videos": info["test"],
                "validation_videos": info["validation"], "seeds": seeds}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


def open_validation(root: str | os.PathLike) -> Dataset:
    """The validation split of a generated tree as a `Dataset` whose `.test` holds the
    labelled validation videos (frame labels and pixel masks) and `.train` is empty, so that
    `aedfast.evaluate` scores it like a test split."""
    root = Path(root).expanduser()
    base = root / "validation"
    man = load_manifest(root)
    if man is None or not man.get("complete") or not (base / "frames").is_dir():
        raise DatasetError(f"{root}: no validation split (a synthetic tree of generator "
                           f"version >= 2 has one in {base})")
    videos = collect_videos(base / "frames", what="validation videos")
    for v in videos:
        masks = NpyMasks(base / "pixel_mask" / f"{v.name}.npy")
        v.set_ground_truth(np.load(base / "frame_mask" / f"{v.name}.npy"), masks)
    return Dataset("shanghaitech", base, [], videos)


__all__ = ["ANOMALY_KINDS", "GENERATOR_VERSION", "SPLITS", "Scene", "Variant", "generate",
           "load_manifest", "make_scene", "open_validation", "render_video", "variant_scene",
           "video_seed"]
