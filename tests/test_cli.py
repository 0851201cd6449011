"""The `aedfast` command line, `aedfast.evaluate` and the demo (fast mode), on the CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch

import aedfast
from aedfast import metrics
from aedfast.cli import main
from aedfast.data import open_dataset
from aedfast.data.synthetic import generate
from aedfast.model import AEDMAE
from aedfast.scoring import Smoothing

from .test_model import official_state

SUBCOMMANDS = ["demo", "train", "score", "eval", "bench", "convert", "export", "info"]


def test_every_subcommand_has_help(capsys):
    for cmd in SUBCOMMANDS:
        with pytest.raises(SystemExit) as e:
            main([cmd, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: aedfast {cmd}" in out
    assert main([]) == 2


def test_python_m_aedfast_info_json():
    out = subprocess.run([sys.executable, "-m", "aedfast", "info", "--json"],
                         capture_output=True, text=True, check=True).stdout
    info = json.loads(out)
    assert info["aedfast"] == aedfast.__version__
    assert info["torch"] == torch.__version__
    assert info["backend"] == "torch" or info["backend"].startswith("auto")


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    return AEDMAE.from_preset("tiny").save(tmp_path_factory.mktemp("ck") / "tiny.safetensors")


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("data") / "synth", n_train=1, n_test=2, frames=60,
                    progress=False)


def test_convert_official_to_native(tmp_path):
    src = AEDMAE.from_preset("shanghaitech").eval()
    torch.save({"model": official_state(src)}, tmp_path / "checkpoint-best.pth")
    torch.save({"model": official_state(src)}, tmp_path / "checkpoint-best-student.pth")
    out = tmp_path / "st.safetensors"
    code = main(["convert", str(tmp_path / "checkpoint-best.pth"),
                 str(tmp_path / "checkpoint-best-student.pth"), "--preset", "shanghaitech",
                 "--out", str(out), "--quiet"])
    assert code == 0
    m = AEDMAE.load(out)
    assert m.config.name == "shanghaitech"
    assert torch.equal(m.state_dict()["patch_embed.proj.weight"],
                       src.state_dict()["patch_embed.proj.weight"])


def test_errors_are_one_line(tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"junk")
    code = main(["convert", str(tmp_path / "junk.pth"), "--preset", "avenue",
                 "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("aedfast convert: error:") and "not a torch checkpoint" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1
    code = main(["score", str(tmp_path / "missing.avi"), "--checkpoint", "x.safetensors"])
    err = capsys.readouterr().err
    assert code == 1 and "no such video file or folder" in err


def test_score_video_file_writes_csv_json_plot_overlay(tmp_path, tiny_ckpt, synth):
    video = next((synth / "training" / "videos").glob("*.avi"))
    out = tmp_path / "out"
    code = main(["score", str(video), "--checkpoint", str(tiny_ckpt), "--out", str(out),
                 "--plot", "--overlay", "--no-compile", "--quiet", "--batch-size", "8"])
    assert code == 0
    stem = video.stem
    rows = (out / f"{stem}_scores.csv").read_text().splitlines()
    cap = cv2.VideoCapture(str(video))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert rows[0] == "frame,score,raw_score" and len(rows) == n + 1
    payload = json.loads((out / f"{stem}_scores.json").read_text())
    assert len(payload["scores"]) == n and np.isfinite(payload["scores"]).all()
    assert (out / f"{stem}_scores.png").stat().st_size > 1000
    overlay = cv2.VideoCapture(str(out / f"{stem}_overlay.avi"))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == n
    ok, first = overlay.read()
    assert ok and first.shape == cv2.VideoCapture(str(video)).read()[1].shape


def test_score_precision_flag(tmp_path, tiny_ckpt, synth):
    """--precision bf16 reaches the Detector: scores move (bf16 rounding) but stay within the
    documented tolerance of fp32."""
    video = next((synth / "training" / "videos").glob("*.avi"))
    got = {}
    for precision in ("fp32", "bf16"):
        out = tmp_path / precision
        assert main(["score", str(video), "-c", str(tiny_ckpt), "--out", str(out), "--quiet",
                     "--no-compile", "--batch-size", "8", "--precision", precision]) == 0
        got[precision] = np.array(json.loads((out / f"{video.stem}_scores.json").read_text())
                                  ["scores"])
    a, b = got["fp32"], got["bf16"]
    assert not np.array_equal(a, b)
    assert np.abs(a - b).max() <= 1e-2 * np.abs(a).max()
    with pytest.raises(SystemExit):
        main(["score", str(video), "-c", str(tiny_ckpt), "--precision", "fp16"])


def test_evaluate_and_eval_command(tmp_path, tiny_ckpt, synth, capsys):
    ds = open_dataset(synth, "shanghaitech")
    det = aedfast.Detector(tiny_ckpt, compile=False, batch_size=8)
    res = aedfast.evaluate(det, ds, plots=tmp_path / "plots", progress=False)
    # independent check: the same scores through metrics directly
    scores = [det.score_video(v.frames()).scores for v in ds.test]
    micro, macro = metrics.micro_macro_auc(scores, [v.labels for v in ds.test])
    assert res["micro_auc"] == pytest.approx(micro)
    assert res["macro_auc"] == pytest.approx(macro)
    assert set(res["per_video"]) == {v.name for v in ds.test}
    assert res["mask_rbdc"] is not None and 0 <= res["mask_rbdc"] <= 1
    assert len(list((tmp_path / "plots").glob("*.png"))) == 2
    report = tmp_path / "r.json"
    code = main(["eval", str(tiny_ckpt), str(synth), "--dataset", "shanghaitech", "--json",
                 str(report), "--quiet", "--no-compile", "--batch-size", "8"])
    assert code == 0
    data = json.loads(report.read_text())
    for key in ("micro_auc", "macro_auc", "rbdc", "tbdc", "mask_rbdc", "mask_tbdc", "fps",
                "per_video"):
        assert key in data
    assert data["micro_auc"] == pytest.approx(micro)
    assert "micro AUC" in capsys.readouterr().out


def test_eval_with_ground_truth_file_and_box_tracks(tmp_path, tiny_ckpt, synth, capsys):
    """`eval --gt FILE` takes the frame labels from a file instead of the data set's;
    `--tracks DIR` adds RBDC / TBDC as the paper computes them (aedfast.region_metrics) from
    boxes of the maps, here against box tracks made from the synthetic pixel masks."""
    from aedfast import region_metrics

    ds = open_dataset(synth, "shanghaitech")
    labels = {}
    for v in ds.test:  # the data set's labels, inverted in the second half of each video
        lab = v.labels.copy()
        lab[len(lab) // 2:] ^= 1
        labels[v.name] = lab
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps({k: lab.tolist() for k, lab in labels.items()}))
    tracks = tmp_path / "tracks"
    tracks.mkdir()
    for v in ds.test:  # one track per video: each frame's mask's bounding box
        rows = [f"0,{t},{xs.min()},{ys.min()},{xs.max()},{ys.max()}"
                for t, (ys, xs) in enumerate(np.nonzero(m) for m in v.masks) if xs.size]
        (tracks / f"{v.name}.txt").write_text("\n".join(rows) + "\n")
    report = tmp_path / "r.json"
    # a plain folder of the test frame folders: no labels of its own, the file gives them
    args = ["eval", str(tiny_ckpt), str(synth / "testing" / "frames"), "--dataset", "folder",
            "--quiet", "--no-compile", "--batch-size", "8"]
    assert main(args + ["--gt", str(gt), "--tracks", str(tracks), "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    det = aedfast.Detector(tiny_ckpt, compile=False, batch_size=8)
    results = [det.score_video(v.frames(), return_maps=True) for v in ds.test]
    micro, _ = metrics.micro_macro_auc([r.scores for r in results],
                                       [labels[v.name] for v in ds.test])
    assert data["micro_auc"] == pytest.approx(micro)
    boxes = {v.name: region_metrics.detections_from_maps(r.maps, relative=0.5,
                                                         frame_size=v.shape)
             for v, r in zip(ds.test, results)}
    want = region_metrics.rbdc_tbdc(region_metrics.read_box_tracks(tracks), boxes,
                                    {v.name: len(v) for v in ds.test})
    assert 0 <= want[0] <= 1 and (data["rbdc"], data["tbdc"]) == pytest.approx(want)
    assert data["videos"] == len(ds.test) and data["mask_rbdc"] is None  # no pixel masks
    capsys.readouterr()
    name = ds.test[1].name
    bad = tmp_path / "short.json"
    bad.write_text(json.dumps({**{k: lab.tolist() for k, lab in labels.items()},
                               name: labels[name][:-1].tolist()}))
    assert main(args + ["--gt", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "short.json" in err and repr(name) in err and "labels for its" in err


def test_evaluate_rejects_protocol_mismatch(tiny_ckpt, synth):
    det = aedfast.Detector(tiny_ckpt, compile=False)
    with pytest.raises(ValueError, match="protocol"):
        aedfast.evaluate(det, open_dataset(synth, "shanghaitech"), protocol="official")


def test_demo_fast_end_to_end(tmp_path):
    from aedfast.demo import run_demo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run_demo(out=tmp_path / "demo", quiet=True, fast=True)
    assert 0 <= res["micro_auc"] <= 1 and res["fps"] > 0
    out = tmp_path / "demo"
    written = json.loads((out / "results.json").read_text())
    assert written["micro_auc"] == res["micro_auc"]
    # the demo scores with the library's defaults, and says so
    sm, got = Smoothing(), written["scoring"]
    assert got["window"] == list(sm.window) and got["sigma"] == sm.sigma
    assert [got[k] for k in "abcd"] == [sm.a, sm.b, sm.c, sm.d]
    assert len(list((out / "plots").glob("*.png"))) == 2
    cap = cv2.VideoCapture(res["overlay"])
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) > 0
    assert "wrote" in res["summary"]


def test_train_command_and_its_errors(tmp_path, synth, capsys):
    out = tmp_path / "run"
    code = main(["train", str(synth), "--dataset", "shanghaitech", "--out", str(out), "--steps",
                 "2", "--batch-size", "4", "--streams", "2", "--workers", "0", "--quiet"])
    assert code == 0
    assert AEDMAE.load(out / "aed_tiny.safetensors").config.name == "tiny"
    assert "wrote" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    code = main(["train", str(tmp_path / "empty"), "--dataset", "folder", "--out",
                 str(tmp_path / "run2"), "--steps", "2", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and err.startswith("aedfast train: error:") and len(err.splitlines()) == 1


def test_documented_flag_combinations(tmp_path, tiny_ckpt, synth, capsys):
    """The README's documented flags not covered above, each once: score on a frame folder
    with --json, eval with --plots --overlay and --protocol official, train --resume, bench
    with a bad suite (a one-line error)."""
    folder = next(p for p in (synth / "testing" / "frames").iterdir() if p.is_dir())
    capsys.readouterr()
    assert main(["score", str(folder), "-c", str(tiny_ckpt), "--json", "--quiet",
                 "--no-compile", "--batch-size", "8"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["frames"] == len(list(folder.glob("*.jpg"))) == len(payload["scores"])
    plots, overlay = tmp_path / "plots", tmp_path / "overlay"
    assert main(["eval", str(tiny_ckpt), str(synth), "--dataset", "shanghaitech", "--plots",
                 str(plots), "--overlay", str(overlay), "--quiet", "--no-compile",
                 "--batch-size", "8"]) == 0
    n_test = len(open_dataset(synth, "shanghaitech").test)
    assert len(list(plots.glob("*.png"))) == n_test
    assert len(list(overlay.glob("*.avi"))) == n_test
    report = tmp_path / "official.json"
    assert main(["eval", str(tiny_ckpt), str(synth), "--dataset", "shanghaitech", "--protocol",
                 "official", "--json", str(report), "--quiet", "--no-compile",
                 "--batch-size", "8"]) == 0
    assert 0 <= json.loads(report.read_text())["micro_auc"] <= 1
    run = tmp_path / "run"
    common = ["train", str(synth), "--dataset", "shanghaitech", "--out", str(run),
              "--batch-size", "4", "--streams", "2", "--workers", "0", "--quiet"]
    assert main([*common, "--teacher-steps", "1", "--student-steps", "1"]) == 0
    assert main([*common, "--teacher-steps", "1", "--student-steps", "2", "--resume"]) == 0
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in log) >= 3
    capsys.readouterr()
    assert main(["bench", "--suite", "nope"]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope" in err
