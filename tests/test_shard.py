"""Sharded scoring (aedfast.shard, docs/design.md §14): two gloo ranks on the CPU give the
results of one process, written once by rank 0; a restarted run reuses the finished videos'
part files without scoring them again."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import warnings

import numpy as np
import pytest

from aedfast.alarms import EventRule
from aedfast.calibration import calibrate_scores, calibration_path, detector_signature
from aedfast.detector import Detector
from aedfast.shard import score_many, video_key

from .alarm_support import FAST_SMOOTHING, one_thread, small_model  # noqa: F401
from .shard_worker import run_rank

KWARGS = dict(device="cpu", compile=False, batch_size=32, smoothing=FAST_SMOOTHING)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _results(out) -> list[dict]:
    return json.loads((out / "results.json").read_text())["results"]


def test_two_gloo_ranks_equal_one_process_and_resume(tmp_path, one_thread):  # noqa: F811
    import torch.multiprocessing as mp

    from aedfast.data.synthetic import generate

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("gloo test runs on Linux/macOS")
    root = generate(tmp_path / "syn", n_train=4, n_test=0, n_val=0, frames=60, size=(32, 64),
                    progress=False)
    sources = sorted(str(p) for p in (root / "training/videos").glob("*.avi"))
    ck = str(small_model(3).save(tmp_path / "m.safetensors"))
    # a calibration beside the checkpoint: every rank's Detector loads it and reports events
    det = Detector(ck, calibration=None, **KWARGS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        calibrate_scores([det.score_video(s).scores for s in sources], [1.0] * 4, ["2/min"],
                         EventRule(1, 3), detector_signature(det)).save(calibration_path(ck))

    one = score_many(ck, sources, tmp_path / "one", detector_kwargs=KWARGS)
    assert one.world == 1 and one.scored == [video_key(os.path.basename(s)[:-4], s)
                                             for s in sources]
    # an interrupted run: two videos finished (their part files), two not
    keys = one.scored
    done = tmp_path / "resumed" / "parts"
    done.mkdir(parents=True)
    for k in (keys[0], keys[2]):
        shutil.copy2(tmp_path / "one" / "parts" / f"{k}.npz", done / f"{k}.npz")
    mtimes = {k: (done / f"{k}.npz").stat().st_mtime_ns for k in (keys[0], keys[2])}

    outs = [str(tmp_path / "two"), str(tmp_path / "resumed")]
    log = str(tmp_path / "log")
    ctx = mp.start_processes(run_rank, args=(2, _free_port(), ck, sources, outs, KWARGS,
                                             log),
                             nprocs=2, join=False, start_method="spawn")
    for _ in range(180):
        if ctx.join(timeout=1):
            break
    else:
        for p in ctx.processes:
            p.kill()
        pytest.fail("sharded run timed out")
    rec = [json.load(open(f"{log}.{r}")) for r in (0, 1)]

    ref = _results(tmp_path / "one")
    assert sum(len(r["events"]) for r in ref) > 0
    for out in outs:
        got = _results(tmp_path / os.path.basename(out))
        assert [g["key"] for g in got] == [r["key"] for r in ref]
        for g, r in zip(got, ref):
            np.testing.assert_allclose(g["scores"], r["scores"], rtol=1e-6)
            np.testing.assert_allclose(g["raw_scores"], r["raw_scores"], rtol=1e-6)
            assert [(e["start"], e["end"], e["peak_frame"], e["peak_row"], e["peak_col"])
                    for e in g["events"]] == \
                [(e["start"], e["end"], e["peak_frame"], e["peak_row"], e["peak_col"])
                 for e in r["events"]]
        lines = (tmp_path / os.path.basename(out) / "events.csv").read_text().splitlines()
        assert len(lines) == 1 + sum(len(r["events"]) for r in ref)
    fresh, resumed = [r[0] for r in rec], [r[1] for r in rec]
    # fresh: round-robin shares, both ranks scored, only rank 0 holds the merged results
    assert [f["scored"] for f in fresh] == [[keys[0], keys[2]], [keys[1], keys[3]]]
    assert [f["has_results"] for f in fresh] == [True, False]
    assert {g["rank"] for g in _results(tmp_path / "two")} == {0, 1}
    assert [g["reused"] for g in _results(tmp_path / "resumed")] == [True, False, True, False]
    # resumed: the two finished videos were not scored again, the other two were shared out
    assert sorted(sum((r["scored"] for r in resumed), [])) == sorted([keys[1], keys[3]])
    assert resumed[0]["reused"] == [keys[0], keys[2]] and resumed[1]["reused"] == []
    assert all((done / f"{k}.npz").stat().st_mtime_ns == t for k, t in mtimes.items())
    # a part file made by another scorer is scored again
    other = dict(KWARGS, seed=5)
    again = score_many(ck, sources[:1], tmp_path / "one",
                       detector_kwargs={**other, "calibration": None})
    assert again.scored == [keys[0]] and again.reused == []
    with pytest.raises(ValueError, match="source 0 is not a path"):
        score_many(ck, [np.zeros((4, 32, 64, 3), np.uint8)], tmp_path / "x")


def test_score_many_command_on_a_data_set(tmp_path, capsys, one_thread):  # noqa: F811
    """One process (no torchrun): `aedfast score-many ROOT --dataset shanghaitech` scores the
    test videos, reports frame AUC, and a second run reuses every part file."""
    from aedfast.cli import main
    from aedfast.data.synthetic import generate

    root = generate(tmp_path / "syn", n_train=1, n_test=2, n_val=0, frames=60, size=(32, 64),
                    progress=False)
    ck = str(small_model(4).save(tmp_path / "m.safetensors"))
    args = ["score-many", str(root), "--dataset", "shanghaitech", "-c", ck, "--out",
            str(tmp_path / "o"), "--no-compile", "--device", "cpu", "-q", "--json"]
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    data = json.loads((tmp_path / "o" / "results.json").read_text())
    assert [r["name"] for r in data["results"]] == ["01_0001", "01_0002"]
    assert data["world_size"] == 1 and 0 <= data["metrics"]["micro_auc"] <= 1
    assert first["metrics"] == data["metrics"]
    det = Detector(ck, device="cpu", compile=False)
    np.testing.assert_allclose(data["results"][0]["scores"],
                               det.score_video(str(root / "testing/frames/01_0001")).scores,
                               rtol=1e-6)
    assert main(args[:-1]) == 0
    assert "2 videos on 1 process(es): 0 scored, 2 finished before" in capsys.readouterr().out
    assert all(r["reused"] for r in _results(tmp_path / "o"))

