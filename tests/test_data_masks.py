"""Pixel masks: a memory-mapped .npy mask store is pickled by path, not by value."""

from __future__ import annotations

import pickle

import numpy as np

from aedfast.data import open_dataset

from .data_trees import make_shanghaitech


def test_npy_masks_pickle_by_path(tmp_path):
    gt = make_shanghaitech(tmp_path)
    v = open_dataset(tmp_path, "shanghaitech").test[0]
    blob = pickle.dumps(v)
    assert len(blob) < 2000  # the mask array is not copied into the pickle
    v2 = pickle.loads(blob)
    np.testing.assert_array_equal(v2.mask(1), gt[v.name][1] != 0)
    np.testing.assert_array_equal(v2.labels, v.labels)
