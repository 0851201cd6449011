"""The synthetic benchmark as a family of cameras (docs/design.md §6, "Benchmark family"): a
`Variant` holds the knobs a real camera varies along, `VARIANTS` names a fixed set of them, and
`DEV_VARIANTS` / `HELDOUT_VARIANTS` split that set once and for all.

The knobs and where they act:

- scene (`aedfast.data.synthetic_scene.make_scene`): `scene_seed` (another layout and texture
  draw than the data set's seed), `style` (palette: "default", "plaza", "autumn", "dusk",
  "overcast"), `texture` (texture amplitude factor), `horizon` (row fraction where the
  building meets the lawn), `walkway` (row fractions of the paved band);
- camera height and angle: `vanish` (row fraction, possibly negative, where a person would be
  0 px tall: 0.2 today; lower is a higher camera, sizes vary less with the row; higher is a
  lower, more oblique camera), scaled so that a person on the middle of the walkway keeps
  today's size; `tilt` (camera roll in degrees: the frame and the masks are rotated and zoomed
  just enough to leave no empty corner);
- people: `density` (arrival rate of walkers, a factor on today's 0.010-0.018 per frame);
- anomalies: `kinds` (which kinds; None: the generator's) and `anomaly_scale` (size factor of
  anomalous objects, speeds scale with it since they are in body heights per frame);
- imaging, applied to rendered frames by `apply_camera`: `drift` (a linear lighting gain change
  over the video: -0.3 ends 30% darker; on top of the slow drift every video has), `flicker`
  (per-frame gain noise, relative sigma), `noise` (sensor noise sigma in grey levels; None: the
  generator's, 2.5), `jpeg` (per-frame JPEG quality, None: no compression beyond the files');
- `size`: (H, W) of the frames (None: the generator's).

The split rule: the three development variants are where any default may be chosen (scoring
weights, smoothing, normalisation, training length, anomaly probability); the five held-out
variants are only ever scored, with defaults fixed beforehand. Both lists were written down by
name before anything was measured on any variant and are never changed after looking at
results; every held-out variant differs from every development variant along at least three
knobs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import cv2
import numpy as np

from .synthetic_agents import ANOMALY_KINDS

STYLES = ("default", "plaza", "autumn", "dusk", "overcast")


@dataclass(frozen=True)
class Variant:
    """One camera of the benchmark family; every default reproduces today's generator."""

    name: str = "default"
    scene_seed: int | None = None
    style: str = "default"
    texture: float = 1.0
    horizon: float = 0.30
    walkway: tuple[float, float] = (0.60, 0.90)
    vanish: float = 0.2
    tilt: float = 0.0
    density: float = 1.0
    kinds: tuple[str, ...] | None = None
    anomaly_scale: float = 1.0
    drift: float = 0.0
    flicker: float = 0.0
    noise: float | None = None
    jpeg: int | None = None
    size: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        bad = []
        if self.style not in STYLES:
            bad.append(f"style {self.style!r} (choose from {STYLES})")
        if not 0 <= self.texture <= 4:
            bad.append(f"texture {self.texture} (0 .. 4)")
        wt, wb = self.walkway
        if not (0.1 <= self.horizon and self.horizon + 0.2 < wt < wb <= 0.98 and wb - wt >= 0.15):
            bad.append(f"horizon {self.horizon} / walkway {self.walkway} (need 0.1 <= horizon, "
                       "horizon + 0.2 < top < bottom <= 0.98, band >= 0.15)")
        if not -2.0 <= self.vanish <= 0.5:
            bad.append(f"vanish {self.vanish} (-2 .. 0.5)")
        if not -10 <= self.tilt <= 10:
            bad.append(f"tilt {self.tilt} degrees (-10 .. 10)")
        if not 0 <= self.density <= 10:
            bad.append(f"density {self.density} (0 .. 10)")
        if self.kinds is not None and (not self.kinds
                                       or any(k not in ANOMALY_KINDS for k in self.kinds)):
            bad.append(f"kinds {self.kinds} (a non-empty subset of {ANOMALY_KINDS})")
        if not 0.3 <= self.anomaly_scale <= 3:
            bad.append(f"anomaly_scale {self.anomaly_scale} (0.3 .. 3)")
        if not -0.8 <= self.drift <= 0.8 or not 0 <= self.flicker <= 0.3:
            bad.append(f"drift {self.drift} (-0.8 .. 0.8) / flicker {self.flicker} (0 .. 0.3)")
        if self.noise is not None and not 0 <= self.noise <= 50:
            bad.append(f"noise {self.noise} (0 .. 50)")
        if self.jpeg is not None and not 1 <= self.jpeg <= 100:
            bad.append(f"jpeg {self.jpeg} (1 .. 100)")
        if self.size is not None and min(self.size) < 32:
            bad.append(f"size {self.size} (at least 32 x 32)")
        if bad:
            raise ValueError(f"variant {self.name!r}: bad " + "; ".join(bad))

    def to_dict(self) -> dict:
        """The name and every knob, JSON-ready (tuples as lists), as the manifest records it."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def knobs(self) -> dict:
        """Every knob except the name (what makes two variants the same camera)."""
        d = self.to_dict()
        d.pop("name")
        return d

    def is_default(self) -> bool:
        """Whether every knob has today's value (the name aside)."""
        return self.knobs() == Variant().knobs()

    def scene_options(self) -> dict:
        """Keyword arguments of `make_scene` for this variant."""
        return {"style": self.style, "texture": self.texture, "horizon": self.horizon,
                "walkway": self.walkway, "vanish": self.vanish}

    def has_imaging(self) -> bool:
        """Whether `apply_camera` changes anything (tilt, drift, flicker or compression)."""
        return bool(self.tilt or self.drift or self.flicker or self.jpeg is not None)


KNOBS = tuple(f.name for f in fields(Variant) if f.name != "name")

# Written down before anything was measured on any of them; see the module docstring.
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("default"),
    Variant("plaza_high", scene_seed=11, style="plaza", vanish=-0.6, density=1.6,
            size=(96, 128)),
    Variant("evening_noisy", scene_seed=12, drift=-0.3, flicker=0.02, noise=5.0, jpeg=60),
    Variant("low_camera_crowd", scene_seed=101, style="autumn", texture=1.6, vanish=0.4,
            tilt=3.0, density=2.5),
    Variant("square_flicker", scene_seed=102, style="overcast", flicker=0.05, noise=4.0,
            jpeg=40, size=(80, 80)),
    Variant("night_compressed", scene_seed=103, style="dusk", drift=0.25, noise=7.0, jpeg=30,
            density=0.6, horizon=0.25, walkway=(0.55, 0.88)),
    Variant("small_anomalies", scene_seed=104, texture=1.8, tilt=-2.0, anomaly_scale=0.6,
            kinds=("running", "thrown", "falling", "cyclist"), size=(72, 128)),
    Variant("wide_big_vehicles", scene_seed=105, vanish=0.0, anomaly_scale=1.3,
            kinds=("vehicle", "cart", "wrong_way"), horizon=0.26, walkway=(0.58, 0.92),
            drift=0.15, size=(64, 160)),
)}
DEV_VARIANTS: tuple[str, ...] = ("default", "plaza_high", "evening_noisy")
HELDOUT_VARIANTS: tuple[str, ...] = ("low_camera_crowd", "square_flicker", "night_compressed",
                                     "small_anomalies", "wide_big_vehicles")


def get_variant(variant: str | Variant) -> Variant:
    """A `Variant` by name from `VARIANTS`, or `variant` itself."""
    if isinstance(variant, Variant):
        return variant
    try:
        return VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown variant {variant!r}; choose from {sorted(VARIANTS)}") \
            from None


def tilt_frames(frames: np.ndarray, masks: np.ndarray | None, degrees: float
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """Camera roll: rotate every frame (bilinear) and mask (nearest) by `degrees` about the
    centre, zoomed by cos a + max(W/H, H/W) sin |a| so no corner is left empty.
    frames uint8 [T, H, W, 3]; masks uint8 [T, H, W] or None; same shapes back."""
    H, W = frames.shape[1:3]
    a = math.radians(degrees)
    zoom = math.cos(a) + max(W / H, H / W) * abs(math.sin(a))
    M = cv2.getRotationMatrix2D(((W - 1) / 2, (H - 1) / 2), degrees, zoom)
    out = np.stack([cv2.warpAffine(f, M, (W, H), flags=cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_REPLICATE) for f in frames])
    if masks is not None:
        masks = np.stack([cv2.warpAffine(m, M, (W, H), flags=cv2.INTER_NEAREST,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                          for m in masks])
    return out, masks


def lighting_gain(T: int, drift: float, flicker: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame gain float32 [T]: a linear ramp from 1 to 1 + drift times 1 + flicker * N(0, 1)
    per frame (one standard-normal draw per frame from `rng`, whatever `flicker` is)."""
    ramp = 1.0 + drift * np.arange(T, dtype=np.float64) / max(T - 1, 1)
    jitter = 1.0 + flicker * rng.standard_normal(T)
    return (ramp * jitter).astype(np.float32)


def jpeg_roundtrip(frame: np.ndarray, quality: int) -> np.ndarray:
    """A frame (uint8 [H, W, 3]) after JPEG encoding at `quality` and decoding."""
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV cannot JPEG-encode a frame of shape {frame.shape}")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def apply_camera(frames: np.ndarray, masks: np.ndarray | None, v: Variant,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """The imaging knobs of `v` on rendered frames, in camera order: tilt (frames and masks),
    lighting gain (drift and flicker, rounded and clipped), then JPEG compression per frame.
    frames uint8 [T, H, W, 3]; masks uint8 [T, H, W] 0/1 or None; new arrays back."""
    if v.tilt:
        frames, masks = tilt_frames(frames, masks, v.tilt)
    gain = lighting_gain(len(frames), v.drift, v.flicker, rng)
    if v.drift or v.flicker:
        f = frames.astype(np.float32) * gain[:, None, None, None]
        frames = np.clip(np.rint(f), 0, 255).astype(np.uint8)
    if v.jpeg is not None:
        frames = np.stack([jpeg_roundtrip(f, v.jpeg) for f in frames])
    return frames, masks


__all__ = ["DEV_VARIANTS", "HELDOUT_VARIANTS", "KNOBS", "STYLES", "VARIANTS", "Variant",
           "apply_camera", "get_variant", "jpeg_roundtrip", "lighting_gain", "tilt_frames"]
