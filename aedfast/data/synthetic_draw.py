"""Drawing for the synthetic benchmark (see `aedfast.data.synthetic`): a `Painter` that draws
each shape on the frame and on the anomaly mask at sub-pixel precision, articulated stick
figures, random clothing and the vivid colours of anomalous objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions for smooth slow motion
_ONE = 1 << _SHIFT
Color = tuple[int, int, int]  # BGR
VIVID = [(30, 30, 230), (20, 200, 250), (0, 140, 255), (220, 60, 20), (200, 40, 200),
         (40, 230, 60)]


class Painter:
    """Draws on a frame and, with the same shapes, on the anomaly mask: anomalous objects
    write 255 into the mask, normal ones 0 (they occlude anomalies behind them)."""

    def __init__(self, frame: np.ndarray, mask: np.ndarray | None):
        self.frame = frame
        self.mask = mask
        self.mval = 0
        self.active = False  # whether the mask has anything to occlude yet

    def begin(self, anomalous: bool) -> None:
        self.mval = 255 if anomalous else 0
        self.active = self.active or anomalous

    def _both(self, fn: Callable, color: Color) -> None:
        fn(self.frame, color)
        if self.mask is not None and self.active:
            fn(self.mask, self.mval)

    @staticmethod
    def _p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * _ONE)), int(round(y * _ONE))

    def circle(self, x: float, y: float, r: float, color: Color) -> None:
        c, rr = self._p(x, y), max(int(round(r * _ONE)), _ONE // 2)
        self._both(lambda im, col: cv2.circle(im, c, rr, col, -1, cv2.LINE_AA, _SHIFT), color)

    def ring(self, x: float, y: float, r: float, th: float, color: Color) -> None:
        c, rr, t = self._p(x, y), max(int(round(r * _ONE)), _ONE), max(1, int(round(th)))
        self._both(lambda im, col: cv2.circle(im, c, rr, col, t, cv2.LINE_AA, _SHIFT), color)

    def line(self, x0: float, y0: float, x1: float, y1: float, th: float, color: Color) -> None:
        a, b, t = self._p(x0, y0), self._p(x1, y1), max(1, int(round(th)))
        self._both(lambda im, col: cv2.line(im, a, b, col, t, cv2.LINE_AA, _SHIFT), color)

    def poly(self, pts: np.ndarray, color: Color) -> None:
        p = np.round(np.asarray(pts) * _ONE).astype(np.int32)[None]
        self._both(lambda im, col: cv2.fillPoly(im, p, col, cv2.LINE_AA, _SHIFT), color)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color: Color) -> None:
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), color)


def draw_person(p: Painter, x: float, y: float, h: float, phase: float, look: dict, *,
                facing: int = 1, amp: float = 1.0, lean: float = 0.0, frontal: bool = False,
                arms_forward: bool = False) -> None:
    """A stick figure with feet at (x, y), height h, gait `phase` (radians); `facing` +1/-1
    (walking right/left); `frontal`: walking towards the camera (legs alternate up and down)."""
    b = look["build"]
    s = math.sin(phase)
    hip = (x + facing * lean * 0.1 * h, y - 0.47 * h)
    neck = (x + facing * lean * 0.25 * h, y - 0.80 * h)
    leg_w, arm_w = max(1.0, 0.10 * h * b), max(1.0, 0.07 * h * b)
    if frontal:
        feet = [(x - 0.07 * h, y - max(0.0, s) * 0.06 * h),
                (x + 0.07 * h, y - max(0.0, -s) * 0.06 * h)]
    else:
        dx = 0.2 * h * amp * s
        lift = 0.05 * h * amp
        feet = [(x + dx, y - lift * max(0.0, math.cos(phase))),
                (x - dx, y - lift * max(0.0, -math.cos(phase)))]
    for fx, fy in feet:
        p.line(hip[0], hip[1], fx, fy, leg_w, look["pants"])
    p.line(neck[0], neck[1], hip[0], hip[1], max(2.0, 0.22 * h * b), look["shirt"])
    shoulder = (neck[0], neck[1] + 0.05 * h)
    if arms_forward:
        hands = [(shoulder[0] + facing * 0.3 * h, y - 0.55 * h)] * 2
    elif frontal:
        hands = [(x - 0.16 * h, y - 0.48 * h - 0.03 * h * s),
                 (x + 0.16 * h, y - 0.48 * h + 0.03 * h * s)]
    else:
        ax = 0.14 * h * amp * s
        hands = [(shoulder[0] - ax, y - 0.48 * h), (shoulder[0] + ax, y - 0.48 * h)]
    for hx, hy in hands:
        p.line(shoulder[0], shoulder[1], hx, hy, arm_w, look["shirt"])
    p.circle(neck[0], neck[1] - 0.1 * h, 0.1 * h, look["skin"])
    if look.get("hair") is not None:
        p.circle(neck[0], neck[1] - 0.13 * h, 0.085 * h, look["hair"])


def random_look(rng: np.random.Generator) -> dict:
    """A person's appearance for `draw_person`: shirt, pants, skin and hair colours (BGR; hair
    may be None) and a build factor."""
    def hsv(hh, ss, vv):
        c = cv2.cvtColor(np.uint8([[[hh, ss, vv]]]), cv2.COLOR_HSV2BGR)[0, 0]
        return tuple(int(v) for v in c)

    skins = [(170, 200, 235), (120, 160, 210), (80, 110, 160), (60, 80, 110), (150, 185, 225)]
    pants = [(60, 40, 30), (40, 40, 40), (110, 80, 50), (90, 90, 95), (40, 60, 90), (150, 150, 150)]
    return {
        "shirt": hsv(int(rng.integers(0, 180)), int(rng.integers(40, 200)),
                     int(rng.integers(60, 230))),
        "pants": pants[int(rng.integers(len(pants)))],
        "skin": skins[int(rng.integers(len(skins)))],
        "hair": (20, 25, 35) if rng.random() < 0.6 else None,
        "build": float(rng.uniform(0.85, 1.2)),
    }
