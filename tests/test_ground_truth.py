"""Ground-truth label files (aedfast.data.ground_truth): each format read from a small file the
test writes, the kind detected from the file, and errors that name the file and the video when
the file and the videos' lengths disagree."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.io import savemat

from aedfast.cli import build_parser
from aedfast.data.errors import DatasetError
from aedfast.data.ground_truth import (
    GT_KINDS,
    detect_gt_kind,
    parse_ucsd_m,
    ranges_to_labels,
    read_ground_truth,
)

LENGTHS = {"01": 10, "02": 6, "03": 8}


def labels_of(n: int, *ranges: tuple[int, int]) -> np.ndarray:
    """Independent: a 0/1 array with frames s..e (1-based, inclusive) set, by a Python loop."""
    lab = np.zeros(n, np.uint8)
    for s, e in ranges:
        for f in range(s, e + 1):
            lab[f - 1] = 1
    return lab


EXPECTED = {"01": labels_of(10, (2, 4), (9, 10)), "02": labels_of(6), "03": labels_of(8, (1, 8))}


def check(got: dict, want: dict = EXPECTED) -> None:
    assert list(got) == list(want)
    for k in want:
        assert got[k].dtype == np.uint8
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)


def ffp_cell(*ranges):
    """A 2 x N [start; end] array as the future-frame-prediction files hold per video."""
    return np.array(ranges, dtype=np.int32).T.reshape(2, -1) if ranges else np.zeros((0, 0))


def test_ffp_mat(tmp_path):
    cells = np.empty((1, 3), dtype=object)
    cells[0, 0] = ffp_cell((2, 4), (9, 10))
    cells[0, 1] = ffp_cell()
    cells[0, 2] = np.array([1, 8])  # one event as a plain 2-vector
    savemat(tmp_path / "ped2.mat", {"gt": cells})
    assert detect_gt_kind(tmp_path / "ped2.mat") == "ffp-mat"
    check(read_ground_truth(tmp_path / "ped2.mat", LENGTHS))
    # the V x 1 layout too
    savemat(tmp_path / "col.mat", {"gt": cells.reshape(3, 1)})
    check(read_ground_truth(tmp_path / "col.mat", LENGTHS, kind="ffp-mat"))
    # an event past the video's last frame names the file and the video
    cells[0, 1] = ffp_cell((5, 7))
    savemat(tmp_path / "long.mat", {"gt": cells})
    with pytest.raises(DatasetError, match=r"long\.mat: video '02': frame range \[5, 7\].*6 "):
        read_ground_truth(tmp_path / "long.mat", LENGTHS)
    savemat(tmp_path / "two.mat", {"gt": cells[:, :2]})
    with pytest.raises(DatasetError, match=r"two\.mat: 'gt' has 2 cells for 3 videos.*'03'"):
        read_ground_truth(tmp_path / "two.mat", LENGTHS)
    savemat(tmp_path / "other.mat", {"labels": np.zeros(3)})
    with pytest.raises(DatasetError, match=r"other\.mat: no variable 'gt'.*labels"):
        read_ground_truth(tmp_path / "other.mat", LENGTHS)


def test_concatenated_npy(tmp_path):
    whole = np.concatenate([EXPECTED[k] for k in LENGTHS]).astype(np.int64)
    np.save(tmp_path / "gt.npy", whole)
    check(read_ground_truth(tmp_path / "gt.npy", LENGTHS))
    np.save(tmp_path / "short.npy", whole[:13])  # ends inside video 02 (frames 10..15)
    with pytest.raises(DatasetError, match=r"short\.npy: 13 labels end inside video '02'.*24"):
        read_ground_truth(tmp_path / "short.npy", LENGTHS)
    np.save(tmp_path / "long.npy", np.concatenate([whole, [0, 1]]))
    with pytest.raises(DatasetError, match=r"long\.npy: 26 labels.*24 frames.*2 labels left "
                       r"after the last video '03'"):
        read_ground_truth(tmp_path / "long.npy", LENGTHS)
    np.save(tmp_path / "bad.npy", whole * 2)
    with pytest.raises(DatasetError, match=r"bad\.npy: expected 0/1"):
        read_ground_truth(tmp_path / "bad.npy", LENGTHS)


def test_json_label_lists(tmp_path):
    data = {k: v.tolist() for k, v in EXPECTED.items()}
    data["02"] = [False] * 6  # booleans are labels too
    data["unused"] = [1, 1]  # videos not asked for are ignored
    (tmp_path / "gt.json").write_text(json.dumps(data))
    check(read_ground_truth(tmp_path / "gt.json", LENGTHS))
    data["03"] = data["03"][:-1]
    (tmp_path / "short.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"short\.json: video '03': 7 labels for its 8 frames"):
        read_ground_truth(tmp_path / "short.json", LENGTHS)
    del data["01"]
    (tmp_path / "missing.json").write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"missing\.json: no labels for video '01'"):
        read_ground_truth(tmp_path / "missing.json", LENGTHS)
    (tmp_path / "twos.json").write_text(json.dumps({"01": [2] * 10}))
    with pytest.raises(DatasetError, match="'01': expected a list of 0/1"):
        read_ground_truth(tmp_path / "twos.json", LENGTHS)


def test_ucf_crime_annotation(tmp_path):
    text = ("Abuse028_x264.mp4  Abuse  2  4  9  10\n"
            "Normal_Videos_003_x264.mp4  Normal  -1  -1  -1  -1\n"
            "Arson011_x264.mp4  Arson  1  8  -1  -1\n"
            "Other_x264.mp4  Other  1  2  -1  -1\n")
    path = tmp_path / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
    path.write_text(text)
    lengths = {"Abuse028_x264": 10, "Normal_Videos_003_x264.mp4": 6, "Arson011_x264": 8}
    assert detect_gt_kind(path) == "ucf-crime"
    got = read_ground_truth(path, lengths)
    check(got, dict(zip(lengths, EXPECTED.values())))
    with pytest.raises(DatasetError, match=r"Testing_Videos\.txt: video 'Abuse028_x264': frame "
                       r"range \[9, 10\].*9 frames"):
        read_ground_truth(path, {"Abuse028_x264": 9})
    with pytest.raises(DatasetError, match="no line for video 'Robbery001_x264'"):
        read_ground_truth(path, {"Robbery001_x264": 9})
    (tmp_path / "half.txt").write_text("A.mp4 A 3 -1 -1 -1\n")
    with pytest.raises(DatasetError, match=r"half\.txt, line 1: video 'A\.mp4'.*one end -1"):
        read_ground_truth(tmp_path / "half.txt", {"A": 5}, kind="ucf-crime")


def test_ped1_m_file(tmp_path):
    path = tmp_path / "UCSDped1.m"
    path.write_text("% UCSD Ped1 ground truth\nTestVideoFile = {};\n"
                    "TestVideoFile{end+1}.gt_frame = [2:4, 9:10];\n"
                    "TestVideoFile{end+1}.gt_frame = [];  % no anomaly\n"
                    "TestVideoFile{end+1}.gt_frame = [1:2:7 2 4:6, 8];\n")
    assert detect_gt_kind(path) == "ped1"
    lengths = {"Test001": 10, "Test002": 6, "Test003": 8}
    check(read_ground_truth(path, lengths), dict(zip(lengths, EXPECTED.values())))
    # entries are matched by the number in the name: a subset of the videos works
    check(read_ground_truth(path, {"Test003": 8}), {"Test003": EXPECTED["03"]})
    with pytest.raises(DatasetError, match=r"UCSDped1\.m: video 'Test001': frames 2\.\.10 .*"
                       r"has 9"):
        read_ground_truth(path, {"Test001": 9})
    with pytest.raises(DatasetError, match="no entry 4 for video 'Test004'"):
        read_ground_truth(path, {"Test004": 8})
    # the TestDataset.gt{k} = [s:e] form with explicit indices, in a .txt file
    other = tmp_path / "ped1_gt.txt"
    other.write_text("TestDataset.gt{2} = [];\nTestDataset.gt{1} = [2:4 9:10];\n"
                     "TestDataset.gt{3} = [1:8];\n")
    assert detect_gt_kind(other) == "ped1"
    check(read_ground_truth(other, lengths), dict(zip(lengths, EXPECTED.values())))
    (tmp_path / "gap.m").write_text("X.gt{1} = [1:2];\nX.gt{3} = [1:2];\n")
    with pytest.raises(DatasetError, match=r"gap\.m: no ground-truth entry 2"):
        parse_ucsd_m(tmp_path / "gap.m")


def test_dispatch_and_ranges(tmp_path):
    with pytest.raises(DatasetError, match="no such ground-truth file"):
        read_ground_truth(tmp_path / "nope.json", LENGTHS)
    (tmp_path / "notes.txt").write_text("hello world\n")
    with pytest.raises(DatasetError, match=r"notes\.txt: cannot tell"):
        read_ground_truth(tmp_path / "notes.txt", LENGTHS)
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown ground-truth kind"):
        read_ground_truth(tmp_path / "x.json", LENGTHS, kind="csv")
    np.testing.assert_array_equal(ranges_to_labels([(1, 1), (3, 4)], 5, source="f", video="v"),
                                  [1, 0, 1, 1, 0])
    with pytest.raises(DatasetError, match="f: video 'v': frame range \\[0, 2\\]"):
        ranges_to_labels([(0, 2)], 5, source="f", video="v")
    with pytest.raises(DatasetError, match="frame range \\[4, 3\\]"):
        ranges_to_labels([(4, 3)], 5, source="f", video="v")
    # the CLI offers exactly these kinds
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    kinds = next(a.choices for a in eval_parser._actions if a.dest == "gt_kind")
    assert list(kinds) == ["auto", *GT_KINDS]
