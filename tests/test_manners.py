"""Library manners: library calls print nothing on stdout, report through `logging`, show
progress bars on stderr only where asked and never with AEDFAST_PROGRESS=0; the package ships
py.typed; evaluation and stream results are typed and keep reading as the dicts and tuples
they used to be, with anomalib's field names as aliases."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

import aedfast
from aedfast import cli
from aedfast.data import open_dataset
from aedfast.evaluate import EvalResult, format_report
from aedfast.progress import progress_enabled
from aedfast.stream import FrameScore, StreamStep
from aedfast.training.progress import Progress

from .data_trees import make_shanghaitech

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """A ShanghaiTech-layout tree: 2 labelled test videos (9 and 7 frames) with pixel masks."""
    root = tmp_path_factory.mktemp("st")
    make_shanghaitech(root)
    return open_dataset(root, "shanghaitech")


def test_scoring_and_evaluation_print_nothing_and_log(eager, video, tree, capsys, caplog,
                                                      monkeypatch):
    monkeypatch.delenv("AEDFAST_PROGRESS", raising=False)
    capsys.readouterr()
    eager.score_video(video[:8], progress=True)
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "frame" in cap.err  # the bar, on stderr
    with caplog.at_level(logging.DEBUG, logger="aedfast"):
        res = aedfast.evaluate(eager, tree, progress=True)
    cap = capsys.readouterr()
    assert cap.out == ""
    assert "eval" in cap.err  # the bar over the videos
    records = [r for r in caplog.records if r.name == "aedfast.evaluate"]
    assert any("evaluated 2 videos" in r.getMessage() for r in records)
    assert any(r.getMessage().startswith("01_0014: 9 frames") for r in records)
    # AEDFAST_PROGRESS=0 switches the bars off, whatever the argument says
    monkeypatch.setenv("AEDFAST_PROGRESS", "0")
    again = aedfast.evaluate(eager, tree, progress=True, localization=False)
    eager.score_video(video[:8], progress=True)
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""
    assert again.micro_auc == res.micro_auc


def test_eval_result_is_typed_and_reads_as_a_dict(eager, tree, tmp_path):
    res = aedfast.evaluate(eager, tree, progress=False, json_path=tmp_path / "r.json")
    assert isinstance(res, EvalResult)
    assert res["micro_auc"] == res.micro_auc and res.get("macro_auc") == res.macro_auc
    assert res.get("nope", 7) == 7 and "per_video" in res and "nope" not in res
    with pytest.raises(KeyError):
        res["nope"]
    d = res.as_dict()
    assert dict(res) == d and list(d) == res.keys()
    assert set(d["per_video"]) == {"01_0014", "02_0161"} and d["videos"] == 2
    assert json.loads((tmp_path / "r.json").read_text())["micro_auc"] == pytest.approx(
        res.micro_auc)
    assert format_report(res) == format_report(d)


def test_progress_switch():
    assert progress_enabled(True) and not progress_enabled(False)


@pytest.mark.parametrize("value,shown", [("0", False), ("off", False), ("False", False),
                                         ("no", False), ("1", True), ("", True)])
def test_progress_env_var(monkeypatch, value, shown):
    monkeypatch.setenv("AEDFAST_PROGRESS", value)
    assert progress_enabled(True) is shown
    assert Progress(True, total=10, initial=0, every=1).enabled is shown


def test_training_progress_off_a_terminal_is_a_log_record(capsys, caplog, monkeypatch):
    monkeypatch.delenv("AEDFAST_PROGRESS", raising=False)
    bar = Progress(True, total=10, initial=0, every=1)  # stderr is captured: not a terminal
    assert bar.bar is None
    with caplog.at_level(logging.INFO, logger="aedfast"):
        bar.update(5, 1, {"loss": 0.25}, fps=100.0)
        bar.message("stage 2: student")
    msgs = [r.getMessage() for r in caplog.records if r.name == "aedfast.training.progress"]
    assert msgs[0].startswith("stage 1 step 5/10 loss 0.2500 100.0 frames/s ETA")
    assert msgs[1] == "stage 2: student"
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err == ""


def test_cli_shows_log_records_on_stderr_and_restores_logging(monkeypatch, capsys):
    log = logging.getLogger("aedfast")
    before = (list(log.handlers), log.level)

    def fake_info(args):
        logging.getLogger("aedfast.somewhere").info("an info record")
        logging.getLogger("aedfast.somewhere").warning("a warning record")
        return 0

    monkeypatch.setattr(cli, "cmd_info", fake_info)
    assert cli.main(["info"]) == 0
    cap = capsys.readouterr()
    assert cap.out == ""
    assert cap.err.splitlines() == ["an info record", "a warning record"]
    assert cli.main(["info", "--quiet"]) == 0
    assert capsys.readouterr().err.splitlines() == ["a warning record"]
    assert (list(log.handlers), log.level) == before


def test_py_typed_ships():
    assert (Path(aedfast.__file__).parent / "py.typed").is_file()
    # in the wheel: pyproject's package-data names it (tomllib is Python >= 3.11: a regex)
    conf = (ROOT / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.setuptools\.package-data\]\n(.*?)(?=^\[|\Z)", conf,
                        flags=re.S | re.M)
    assert section and re.search(r'^aedfast = \[[^\]]*"py\.typed"', section.group(1), re.M)


def test_stream_results_are_typed(eager, video):
    stream = eager.stream(2)
    with pytest.warns(RuntimeWarning, match="frame dropped"):
        out = stream.step({0: video[0], 1: video[0].astype(np.float32)})
    assert isinstance(out, StreamStep) and out == {0: []}
    assert set(out.errors) == {1} and "uint8" in out.errors[1]
    for f in video[1:6]:
        assert stream.step([f, f]).errors == {}
    end = stream.close()
    assert isinstance(end, StreamStep) and set(end) == {0, 1}
    assert [item.frame for item in end[0]] == list(range(6))
    assert [item.frame for item in end[1]] == list(range(5))  # one frame dropped
    item = end[0][2]
    assert isinstance(item, FrameScore) and isinstance(item, tuple)
    t, s = item
    assert (t, s) == (item.frame, item.score) == (item[0], item[1]) and s == item.pred_score
    plain = end.as_dict()
    assert end == plain and plain[0][2] == (2, s) and type(plain[0][2]) is tuple
    assert end.pred_score == {sid: [v for _, v in items] for sid, items in plain.items()}
    assert json.loads(json.dumps(plain))  # plain values only


def test_video_result_aliases(eager, video):
    res = eager.score_video(video[:6], return_maps=True)
    assert res.pred_score is res.scores and res.anomaly_map is res.maps
    assert res.anomaly_map.shape == (6, 64, 128) and res.pred_score.shape == (6,)
    assert eager.score_video(video[:6]).anomaly_map is None


def test_atomic_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    """Files written through the one atomic writer are shareable like any open()ed file."""
    import os

    from aedfast.checkpoint import atomic_write

    old = os.umask(0o022)
    try:
        out = atomic_write(tmp_path / "r.json", lambda p: p.write_text("{}"))
        plain = tmp_path / "plain.json"
        plain.write_text("{}")
    finally:
        os.umask(old)
    assert (out.stat().st_mode & 0o777) == (plain.stat().st_mode & 0o777) == 0o644
