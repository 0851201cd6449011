"""Drawing for the synthetic benchmark: the Painter's anomaly mask and occlusion."""

from __future__ import annotations

import numpy as np

from aedfast.data.synthetic_draw import Painter


def test_normal_objects_in_front_occlude_the_mask():
    img = np.zeros((20, 20, 3), np.uint8)
    mask = np.zeros((20, 20), np.uint8)
    p = Painter(img, mask)
    p.begin(False)
    p.rect(0, 0, 4, 4, (9, 9, 9))  # a normal object before any anomaly: mask untouched
    p.begin(True)
    p.rect(2, 2, 14, 14, (255, 0, 0))
    p.begin(False)
    p.rect(8, 8, 18, 18, (0, 255, 0))  # in front: hides part of the anomaly
    assert mask[4, 4] == 255 and mask[10, 10] == 0 and mask[16, 16] == 0
    assert (img[10, 10] == (0, 255, 0)).all() and (img[4, 4] == (255, 0, 0)).all()
