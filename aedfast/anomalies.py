"""Synthetic anomalies pasted into training samples on the fly (docs/design.md §1, §3).

A training sample for frame t is the five frames at `SAMPLE_OFFSETS` = (-3, -1, 0, 1, 3): the
model input (t-3, t, t+3) and the gradient frames of the token weights (t-1, t+1). With
probability `prob` (0.25, docs/design.md §4) `AnomalyPaster.apply` pastes one or more
anomalous objects
into all five frames along one trajectory, so each object is consistent in time (its position,
size and appearance at offset tau follow from one draw). The training target stays the clean
frame t; the union of the objects' pixel masks at t is the target's 4th channel and the anomaly
map added to the motion gradient of the token weights (docs/design.md §3). Nothing is
pre-rendered: every
epoch draws new objects, places and speeds.

Motion of an object: its centre moves as c(tau) = c0 + v * tau (c0 uniform over the frame, so
the object is visible at t; |v| drawn from `speed` in frame widths per frame, a random
direction, or 0 with probability `still_prob`: an object that should not be there at all);
its height is drawn from `size` (fraction of the frame height). Sequence objects advance 1-3 of
their own frames per video frame, sometimes backwards; shapes and cut-outs spin.

Object sources (`make_sources(spec)`):

- "shapes" (`ShapeSource`): procedural textured shapes: ellipses, rotated boxes, stars and
  random blobs with solid+noise, stripe, check or mottled textures in random colours.
- "cutouts" (`CutoutSource`): objects cut out of the training frames themselves, built per pool
  of decoded frames (`CutoutSource.from_frames`): foreground = pixels far from the temporal
  median background of a video, split into connected components of plausible size; pasted
  elsewhere, rescaled, flipped and moved at abnormal speed.
- "procedural" (default): shapes + cutouts. Needs no download.
- a folder path (`SequenceSource.from_folder`): object sequences with masks, either a UBnormal
  tree (any ``*_annotations`` folder below it; read with `aedfast.data.ubnormal.open_ubnormal`,
  anomalous object tracks only) or this simple layout::

      ROOT/<object>/frames/<n>.png|jpg   +  ROOT/<object>/masks/<n>.png   (mask != 0 = object;
                                             the same number of images, natural order)
      ROOT/<object>/<n>.png               BGRA images, alpha > 127 = object
      ROOT/<name>.png                     one BGRA image: a still object (1-frame sequence)

  Sequences are cropped to the object's bounding box and downscaled to at most `max_side`
  pixels when loaded, once.
- "none": no anomalies (the cls head then only sees negatives).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

SAMPLE_OFFSETS: tuple[int, ...] = (-3, -1, 0, 1, 3)

__all__ = [
    "SAMPLE_OFFSETS", "AnomalyPaster", "CutoutSource", "ObjectSource", "PasteResult",
    "SequenceSource", "ShapeSource", "Sprite", "check_size_range", "extract_cutouts",
    "make_sources", "paste_sprite",
    "random_shape",
]


@dataclass
class Sprite:
    """An object image and its pixel mask."""

    image: np.ndarray  # uint8 [h, w, 3] BGR
    mask: np.ndarray  # bool [h, w]

    def __post_init__(self) -> None:
        if self.image.ndim != 3 or self.image.shape[2] != 3 or self.image.dtype != np.uint8:
            raise ValueError(f"sprite image must be uint8 [h, w, 3], got {self.image.dtype} "
                             f"{self.image.shape}")
        if self.mask.shape != self.image.shape[:2]:
            raise ValueError(f"sprite mask {self.mask.shape} does not match its image "
                             f"{self.image.shape[:2]}")
        self.mask = self.mask.astype(bool, copy=False)


# ----------------------------------------------------------------------------- geometry


def _resize_sprite(s: Sprite, scale: float) -> Sprite | None:
    h, w = s.mask.shape
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    if (nh, nw) == (h, w):
        return s
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    img = cv2.resize(s.image, (nw, nh), interpolation=interp)
    m = cv2.resize(s.mask.astype(np.float32), (nw, nh), interpolation=cv2.INTER_LINEAR) > 0.5
    if not m.any():
        return None
    return Sprite(img.reshape(nh, nw, 3), m)


def _rotate_sprite(s: Sprite, degrees: float) -> Sprite:
    if abs(degrees) < 1e-3:
        return s
    h, w = s.mask.shape
    side = int(math.ceil(math.hypot(h, w))) + 2  # a canvas the rotated object fits in
    img = np.zeros((side, side, 3), np.uint8)
    m = np.zeros((side, side), np.float32)
    y0, x0 = (side - h) // 2, (side - w) // 2
    img[y0:y0 + h, x0:x0 + w] = s.image
    m[y0:y0 + h, x0:x0 + w] = s.mask
    rot = cv2.getRotationMatrix2D((side / 2, side / 2), degrees, 1.0)
    img = cv2.warpAffine(img, rot, (side, side), flags=cv2.INTER_LINEAR)
    m = cv2.warpAffine(m, rot, (side, side), flags=cv2.INTER_LINEAR) > 0.5
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return s
    sl = np.s_[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return Sprite(np.ascontiguousarray(img[sl]), np.ascontiguousarray(m[sl]))


def _flip(s: Sprite) -> Sprite:
    return Sprite(np.ascontiguousarray(s.image[:, ::-1]), np.ascontiguousarray(s.mask[:, ::-1]))


def paste_sprite(frame: np.ndarray, mask: np.ndarray, sprite: Sprite, cx: float, cy: float
                 ) -> int:
    """Paste `sprite` centred at (cx, cy) into `frame` (uint8 [H, W, 3], in place) and mark its
    pixels in `mask` (bool [H, W], in place); parts outside the frame are clipped. Returns the
    number of object pixels that landed inside the frame."""
    H, W = mask.shape
    h, w = sprite.mask.shape
    y0, x0 = int(round(cy - h / 2)), int(round(cx - w / 2))
    ya, yb, xa, xb = max(y0, 0), min(y0 + h, H), max(x0, 0), min(x0 + w, W)
    if ya >= yb or xa >= xb:
        return 0
    m = sprite.mask[ya - y0:yb - y0, xa - x0:xb - x0]
    frame[ya:yb, xa:xb][m] = sprite.image[ya - y0:yb - y0, xa - x0:xb - x0][m]
    mask[ya:yb, xa:xb] |= m
    return int(m.sum())


# ----------------------------------------------------------------------------- sources


class ObjectSource:
    """Where anomalous objects come from. `track(rng, offsets)` -> one `Sprite` per offset:
    the object's appearance at those frame offsets (its own motion in time)."""

    name = "source"

    def __len__(self) -> int:
        return 1

    def track(self, rng: np.random.Generator, offsets: Sequence[int]) -> list[Sprite]:
        raise NotImplementedError


def random_shape(rng: np.random.Generator, size: int = 48) -> Sprite:
    """A procedural textured shape about `size` pixels high."""
    h = size
    w = max(8, int(size * rng.uniform(0.4, 1.6)))
    mask = np.zeros((h, w), np.uint8)
    kind = int(rng.integers(4))
    if kind == 0:  # ellipse
        cv2.ellipse(mask, (w // 2, h // 2), (max(2, w // 2 - 1), max(2, h // 2 - 1)), 0, 0, 360,
                    1, -1)
    elif kind == 1:  # rotated box
        box = cv2.boxPoints(((w / 2, h / 2), (w * rng.uniform(0.4, 0.9), h * rng.uniform(0.4, 0.9)),
                             float(rng.uniform(0, 180))))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    elif kind == 2:  # star
        n = int(rng.integers(4, 9))
        ang = np.arange(2 * n) * math.pi / n + rng.uniform(0, math.pi)
        rad = np.where(np.arange(2 * n) % 2 == 0, 1.0, rng.uniform(0.35, 0.7))
        pts = np.stack([w / 2 + rad * (w / 2 - 1) * np.cos(ang),
                        h / 2 + rad * (h / 2 - 1) * np.sin(ang)], 1)
        cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    else:  # blob: hull of random points
        pts = rng.uniform([0, 0], [w - 1, h - 1], size=(int(rng.integers(5, 12)), 2))
        hull = cv2.convexHull(np.round(pts).astype(np.int32))
        cv2.fillPoly(mask, [hull], 1)
    if not mask.any():
        mask[h // 4:3 * h // 4 + 1, w // 4:3 * w // 4 + 1] = 1
    c1 = rng.integers(0, 256, 3).astype(np.float32)
    c2 = rng.integers(0, 256, 3).astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    pattern = int(rng.integers(4))
    if pattern == 0:  # solid
        t = np.zeros((h, w), np.float32)
    elif pattern == 1:  # stripes
        th = rng.uniform(0, math.pi)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * (xx * math.cos(th) + yy * math.sin(th))
                               / rng.uniform(3, 12))
    elif pattern == 2:  # checks
        c = rng.uniform(3, 10)
        t = ((np.floor(xx / c) + np.floor(yy / c)) % 2).astype(np.float32)
    else:  # mottled: upsampled low-resolution noise
        small = rng.uniform(0, 1, (max(2, h // 8), max(2, w // 8))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    img = c1 + (c2 - c1) * t[..., None] + rng.normal(0, 12, (h, w, 3))
    return Sprite(np.clip(img, 0, 255).astype(np.uint8), mask.astype(bool))


class ShapeSource(ObjectSource):
    """Procedural textured shapes (no download), spinning up to `max_spin` degrees a frame."""

    name = "shapes"

    def __init__(self, size: int = 48, max_spin: float = 20.0):
        self.size = int(size)
        self.max_spin = float(max_spin)

    def track(self, rng: np.random.Generator, offsets: Sequence[int]) -> list[Sprite]:
        base = random_shape(rng, self.size)
        spin = rng.uniform(-self.max_spin, self.max_spin)
        return [_rotate_sprite(base, spin * tau) for tau in offsets]


def _reflect(i: int, n: int) -> int:
    """Index i folded into 0..n-1 by bouncing at the ends (ping-pong playback)."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    i = i % period
    return i if i < n else period - i


class SequenceSource(ObjectSource):
    """Object sequences with masks: each a (frames uint8 [n, h, w, 3], masks bool [n, h, w])
    pair, cropped to the object. A track plays the sequence at 1-3 frames per video frame
    (forwards or backwards, bouncing at its ends), maybe mirrored."""

    name = "sequences"

    def __init__(self, sequences: Sequence[tuple[np.ndarray, np.ndarray]], source: str = ""):
        self.sequences: list[tuple[np.ndarray, np.ndarray]] = []
        for k, (f, m) in enumerate(sequences):
            f, m = np.asarray(f), np.asarray(m)
            if f.ndim != 4 or f.shape[-1] != 3 or f.dtype != np.uint8 or m.shape != f.shape[:3]:
                raise ValueError(f"{source or 'sequence'} #{k}: expected frames uint8 "
                                 f"[n, h, w, 3] and masks [n, h, w], got {f.dtype} {f.shape} "
                                 f"and {m.shape}")
            if len(f) and m.any():
                self.sequences.append((f, m.astype(bool, copy=False)))
        if not self.sequences:
            raise ValueError(f"{source or 'object sequences'}: no object with a non-empty mask")
        self.source = source

    def __len__(self) -> int:
        return len(self.sequences)

    def track(self, rng: np.random.Generator, offsets: Sequence[int]) -> list[Sprite]:
        frames, masks = self.sequences[int(rng.integers(len(self.sequences)))]
        n = len(frames)
        rate = int(rng.integers(1, 4)) * (1 if rng.random() < 0.75 else -1)
        k0 = int(rng.integers(n))
        flip = rng.random() < 0.5
        lo = min(offsets)
        out = []
        for tau in offsets:
            k = _reflect(k0 + rate * (tau - lo), n)
            s = Sprite(frames[k], masks[k])
            if not s.mask.any():  # a sequence may lose its object for a frame: reuse the first
                s = Sprite(frames[k0], masks[k0])
            out.append(_flip(s) if flip else s)
        return out

    @classmethod
    def from_folder(cls, root: str | os.PathLike, *, max_side: int = 160, max_frames: int = 48,
                    max_sequences: int = 512, min_area: int = 16) -> SequenceSource:
        """Load the object sequences of a folder (a UBnormal tree or the simple layout of the
        module docstring), cropped and downscaled to at most `max_side` pixels."""
        root = Path(root).expanduser()
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: anomaly object folder not found")
        seqs: list[tuple[np.ndarray, np.ndarray]] = []
        if any(p.name.endswith("_annotations") for p in _walk_dirs(root, 4)):
            from .data.ubnormal import open_ubnormal

            ub = open_ubnormal(root)
            for s in ub.sequences(min_length=1):
                f, m = s.load(crop=True, min_area=min_area, max_frames=max_frames)
                if len(f):
                    seqs.append(_shrink(f, m, max_side))
                if len(seqs) >= max_sequences:
                    break
        else:
            seqs = _read_object_folder(root, max_side, max_frames, max_sequences)
        if not seqs:
            raise ValueError(
                f"{root}: no object sequences found; expected a UBnormal tree (folders "
                "<video>_annotations) or ROOT/<object>/frames/*.png + ROOT/<object>/masks/*.png, "
                "ROOT/<object>/*.png with alpha, or ROOT/*.png with alpha")
        return cls(seqs, source=str(root))


def _walk_dirs(root: Path, depth: int) -> list[Path]:
    out = []
    for cur, dirs, _ in os.walk(root):
        if len(Path(cur).relative_to(root).parts) >= depth:
            dirs[:] = []
        out += [Path(cur) / d for d in dirs]
    return out


def _shrink(f: np.ndarray, m: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = m.shape[1:]
    s = max_side / max(h, w)
    if s >= 1:
        return f, m
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    f2 = np.stack([cv2.resize(x, (nw, nh), interpolation=cv2.INTER_AREA) for x in f])
    m2 = np.stack([cv2.resize(x.astype(np.float32), (nw, nh), interpolation=cv2.INTER_AREA) > 0.5
                   for x in m])
    return f2.reshape(len(f), nh, nw, 3), m2


def _image_files(folder: Path) -> list[Path]:
    from .frames import list_frame_files

    return list_frame_files(folder)


def _crop(f: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.nonzero(m.any(axis=0))
    if ys.size == 0:
        return f[:0], m[:0]
    sl = np.s_[:, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return np.ascontiguousarray(f[sl]), np.ascontiguousarray(m[sl])


def _read_bgra(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise ValueError(f"{path}: cannot read image")
    if img.ndim != 3 or img.shape[2] != 4:
        raise ValueError(f"{path}: expected an image with an alpha channel (BGRA: alpha = the "
                         "object's mask), or frames/ + masks/ folders")
    if img.dtype != np.uint8:
        img = (img / 257).astype(np.uint8)
    return np.ascontiguousarray(img[..., :3]), img[..., 3] > 127


def _read_object_folder(root: Path, max_side: int, max_frames: int, max_sequences: int
                        ) -> list[tuple[np.ndarray, np.ndarray]]:
    seqs = []
    for p in sorted(root.iterdir()):
        if len(seqs) >= max_sequences or p.name.startswith("."):
            continue
        frames, masks = [], []
        if p.is_file() and p.suffix.lower() == ".png":
            f, m = _read_bgra(p)
            frames, masks = [f], [m]
        elif p.is_dir() and (p / "frames").is_dir() and (p / "masks").is_dir():
            fp, mp = _image_files(p / "frames"), _image_files(p / "masks")
            if len(fp) != len(mp):
                raise ValueError(f"{p}: {len(fp)} frames but {len(mp)} masks")
            for a, b in list(zip(fp, mp))[:max_frames]:
                f = cv2.imread(str(a), cv2.IMREAD_COLOR)
                m = cv2.imread(str(b), cv2.IMREAD_UNCHANGED)
                if f is None or m is None:
                    raise ValueError(f"{a if f is None else b}: cannot read image")
                m = m.max(axis=2) if m.ndim == 3 else m
                if m.shape != f.shape[:2]:
                    raise ValueError(f"{b}: mask {m.shape} does not match its frame {f.shape[:2]}")
                frames.append(f)
                masks.append(m != 0)
        elif p.is_dir():
            for a in [q for q in _image_files(p) if q.suffix.lower() == ".png"][:max_frames]:
                f, m = _read_bgra(a)
                frames.append(f)
                masks.append(m)
        if not frames:
            continue
        if len({f.shape for f in frames}) != 1:
            raise ValueError(f"{p}: the frames of one object sequence must share one size")
        f, m = _crop(np.stack(frames), np.stack(masks))
        if len(f):
            seqs.append(_shrink(f, m, max_side))
    return seqs


def extract_cutouts(frames: np.ndarray, rng: np.random.Generator, *, max_cutouts: int = 8,
                    threshold: float = 30.0, min_area: float = 0.002, max_area: float = 0.2,
                    tries: int = 6) -> list[Sprite]:
    """Moving objects cut out of consecutive frames of one video (uint8 [n, H, W, 3]).

    The background is the per-pixel median of up to 15 frames spread over the clip; the
    foreground of a frame is where some channel differs from it by more than `threshold`,
    cleaned by a morphological opening and closing; each connected component with an area
    between `min_area` and `max_area` of the frame becomes a sprite (its bounding box, masked).
    Static clips give none."""
    n, H, W = frames.shape[:3]
    if n < 5:
        return []
    idx = np.unique(np.linspace(0, n - 1, min(n, 15)).round().astype(int))
    bg = np.median(frames[idx], axis=0).astype(np.int16)
    kernel = np.ones((3, 3), np.uint8)
    out: list[Sprite] = []
    for i in rng.choice(n, size=min(n, tries), replace=False):
        fg = (np.abs(frames[i].astype(np.int16) - bg).max(axis=2) > threshold).astype(np.uint8)
        fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, kernel)
        fg = cv2.morphologyEx(fg, cv2.MORPH_CLOSE, kernel, iterations=2)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
        for c in range(1, count):
            x, y, w, h, area = (int(v) for v in stats[c])
            if not min_area * H * W <= area <= max_area * H * W or w < 3 or h < 3:
                continue
            m = labels[y:y + h, x:x + w] == c
            out.append(Sprite(np.ascontiguousarray(frames[i, y:y + h, x:x + w]), m))
            if len(out) >= max_cutouts:
                return out
    return out


class CutoutSource(ObjectSource):
    """Rigid objects cut out of training frames (`extract_cutouts`), mirrored at random and
    tumbling up to `max_spin` degrees a frame."""

    name = "cutouts"

    def __init__(self, sprites: Sequence[Sprite], max_spin: float = 8.0):
        self.sprites = list(sprites)
        self.max_spin = float(max_spin)

    def __len__(self) -> int:
        return len(self.sprites)

    @classmethod
    def from_frames(cls, clips: Sequence[np.ndarray], rng: np.random.Generator,
                    max_cutouts: int = 64) -> CutoutSource:
        """Cut-outs from several clips (each uint8 [n, H, W, 3] consecutive frames)."""
        sprites: list[Sprite] = []
        per = max(2, max_cutouts // max(1, len(clips)))
        for clip in clips:
            sprites += extract_cutouts(clip, rng, max_cutouts=per)
        return cls(sprites[:max_cutouts])

    def track(self, rng: np.random.Generator, offsets: Sequence[int]) -> list[Sprite]:
        base = self.sprites[int(rng.integers(len(self.sprites)))]
        if rng.random() < 0.5:
            base = _flip(base)
        spin = rng.uniform(-self.max_spin, self.max_spin)
        return [_rotate_sprite(base, spin * tau) for tau in offsets]


def make_sources(spec: str | os.PathLike | None) -> tuple[list[ObjectSource], bool]:
    """(static sources, use cut-outs) for an anomaly spec: "procedural" (shapes + cut-outs),
    "shapes", "cutouts", "none", a folder of object sequences, or several joined by "+"
    (e.g. "/data/ubnormal+shapes")."""
    if spec is None:
        return [], False
    parts = [p.strip() for p in str(spec).split("+") if p.strip()] if not Path(
        str(spec)).exists() else [str(spec)]
    sources: list[ObjectSource] = []
    cutouts = False
    for p in parts:
        key = p.lower()
        if key == "none":
            continue
        if key == "procedural":
            sources.append(ShapeSource())
            cutouts = True
        elif key == "shapes":
            sources.append(ShapeSource())
        elif key == "cutouts":
            cutouts = True
        elif Path(p).expanduser().exists():
            sources.append(SequenceSource.from_folder(p))
        else:
            raise ValueError(f"unknown anomaly source {p!r}: use 'procedural', 'shapes', "
                             "'cutouts', 'none' or a folder of object sequences")
    return sources, cutouts


# ----------------------------------------------------------------------------- pasting


class PasteResult(NamedTuple):
    frames: np.ndarray  # uint8 [T, H, W, 3]: the frames with the objects pasted
    masks: np.ndarray  # bool [T, H, W]: union of the objects' pixels per frame
    label: bool  # whether any object is visible in the current frame (offset 0)


def check_size_range(size) -> tuple[float, float]:
    """(lo, hi) as floats: the pasted objects' height range as fractions of the frame height,
    checked (0 < lo <= hi <= 1). Raises ValueError naming the range."""
    try:
        lo, hi = (float(v) for v in size)
    except (TypeError, ValueError):
        raise ValueError(f"anomaly size range must be two numbers (lo, hi), got {size!r}"
                         ) from None
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"anomaly size range {lo:g},{hi:g}: need 0 < lo <= hi <= 1 (object "
                         "height as a fraction of the frame height)")
    return lo, hi


@dataclass
class AnomalyPaster:
    """Pastes anomalous objects into the frames of a training sample (module docstring).

    sources: static object sources; `apply(..., cutouts=...)` may add a per-pool one.
    prob: chance that a sample is augmented. max_objects: 1..max_objects objects per sample.
    size: object height range as a fraction of the frame height. speed: |v| range in frame
    widths per frame. still_prob: chance that an object does not move at all.
    """

    sources: list[ObjectSource] = field(default_factory=lambda: [ShapeSource()])
    prob: float = 0.25
    max_objects: int = 2
    size: tuple[float, float] = (0.15, 0.5)
    speed: tuple[float, float] = (0.01, 0.05)
    still_prob: float = 0.15

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ValueError(f"anomaly probability must be in [0, 1], got {self.prob}")
        if self.max_objects < 1:
            raise ValueError("max_objects must be >= 1")
        self.size = check_size_range(self.size)

    def apply(self, frames: np.ndarray, rng: np.random.Generator,
              offsets: Sequence[int] = SAMPLE_OFFSETS, cutouts: ObjectSource | None = None,
              force: bool | None = None) -> PasteResult:
        """frames: uint8 [T, H, W, 3], the sample's frames at `offsets` (one must be 0).
        Returns new arrays (the input is not modified); without an anomaly (probability
        1 - prob, or no source) the frames are returned as they are, with empty masks.
        `force` True/False overrides the coin flip."""
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected frames uint8 [T, H, W, 3], got {frames.dtype} "
                             f"{frames.shape}")
        if len(offsets) != len(frames) or 0 not in offsets:
            raise ValueError(f"offsets {tuple(offsets)} must give one offset per frame and "
                             "include 0 (the current frame)")
        T, H, W = frames.shape[:3]
        pick = [s for s in self.sources if len(s)]
        if cutouts is not None and len(cutouts):
            pick.append(cutouts)
        hit = (rng.random() < self.prob) if force is None else bool(force)
        masks = np.zeros((T, H, W), bool)
        if not hit or not pick:
            return PasteResult(frames, masks, False)
        out = frames.copy()
        t0 = list(offsets).index(0)
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            src = pick[int(rng.integers(len(pick)))]
            self._paste_object(out, masks, src.track(rng, offsets), offsets, t0, rng)
        return PasteResult(out, masks, bool(masks[t0].any()))

    def _paste_object(self, out: np.ndarray, masks: np.ndarray, sprites: list[Sprite],
                      offsets: Sequence[int], t0: int, rng: np.random.Generator) -> None:
        H, W = masks.shape[1:]
        ref = sprites[t0].mask.shape[0]
        height = rng.uniform(*self.size) * H
        scale = height / ref
        widest = max(s.mask.shape[1] for s in sprites)
        scale = min(scale, 0.6 * W / widest)
        sized = [_resize_sprite(s, scale) for s in sprites]
        if any(s is None for s in sized):
            return
        if rng.random() < self.still_prob:
            vx = vy = 0.0
        else:
            v = rng.uniform(*self.speed) * W
            a = rng.uniform(0, 2 * math.pi)
            vx, vy = v * math.cos(a), v * math.sin(a)
        for _ in range(4):  # the object must show in the current frame
            cx, cy = rng.uniform(0, W), rng.uniform(0, H)
            probe = np.zeros((H, W), bool)
            scratch = np.empty((H, W, 3), np.uint8)
            if paste_sprite(scratch, probe, sized[t0], cx, cy) >= max(
                    4, 0.25 * sized[t0].mask.sum()):
                break
        else:
            return
        for k, tau in enumerate(offsets):
            paste_sprite(out[k], masks[k], sized[k], cx + vx * tau, cy + vy * tau)
