"""aedfast.integrations.anomalib: an aedfast checkpoint run by anomalib's own Engine on a tree in
anomalib's UCSDped layout, checked against the Detector on the same frames, and the protocol
numbers (FrameAUC, aedfast_protocol_scores) against scipy / sklearn.

The tree (built here): UCSDped2/Train/Train001 and UCSDped2/Test/Test00{1,2} of colour TIFF
frames at 48 x 80 (not the tiny preset's 64 x 128, so frames are resized up and maps down),
written by OpenCV (BGR on disk) and read by anomalib with PIL (RGB), with ground-truth masks
Test00N_gt/*.bmp. The reference is `Detector.score_video` on each test folder, read by OpenCV
(docs/design.md §6), uncompiled like the module's: its raw scores and maps of frames 3 .. T-4.

Without anomalib the module is skipped; `make test` sets AEDFAST_REQUIRE_ANOMALIB=1, which turns
that skip into a failure (and the anomalib extra is installed there first).
"""

from __future__ import annotations

import importlib
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter1d
from sklearn.metrics import roc_auc_score

from aedfast.detector import Detector
from aedfast.metrics import official_auc
from aedfast.model import AEDMAE
from aedfast.scoring import Smoothing
from tests.detector_fixtures import perturb_bn, rel
from tests.test_scoring import floor_reference

if os.environ.get("AEDFAST_REQUIRE_ANOMALIB") == "1":
    integ = importlib.import_module("aedfast.integrations.anomalib")
else:
    integ = pytest.importorskip("aedfast.integrations.anomalib",
                                reason="anomalib is not installed: pip install 'aedfast[anomalib]'")

from anomalib.data import UCSDped  # noqa: E402
from anomalib.engine import Engine  # noqa: E402
from lightning.pytorch import Callback  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = (48, 80)  # frame H x W in the tree
TEST_LENGTHS = {"Test001": 12, "Test002": 15}
ANOMALY_FROM = {"Test001": 6, "Test002": 4}  # first anomalous frame of each test video
SM = Smoothing()  # the default scoring, which AedMae uses
TOL = 1e-5  # pred_score / anomaly_map against the Detector, max |a - b| / max |b|


def _video(T: int, seed: int, anomaly_from: int | None) -> tuple[np.ndarray, np.ndarray]:
    """BGR frames [T, H, W, 3] (a textured background, a walker, and from `anomaly_from` on an
    orange block) and masks [T, H, W] of the block."""
    rng = np.random.default_rng(seed)
    H, W = SIZE
    v = rng.integers(0, 90, (T, H, W, 3), dtype=np.uint8)
    masks = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        v[t, 8:30, 2 + 2 * t:10 + 2 * t] = (40, 160, 60)
        if anomaly_from is not None and t >= anomaly_from:
            y, x = 20, 50 - 2 * (t - anomaly_from)
            v[t, y:y + 14, x:x + 16] = (20, 140, 250)
            masks[t, y:y + 14, x:x + 16] = 255
    return v, masks


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """anomalib's UCSDped layout: root/UCSDped2/{Train,Test}/..., TIFF frames, BMP masks."""
    root = tmp_path_factory.mktemp("ucsd")
    base = root / "UCSDped2"
    train = base / "Train" / "Train001"
    train.mkdir(parents=True)
    for t, f in enumerate(_video(9, 100, None)[0]):
        cv2.imwrite(str(train / f"{t + 1:03d}.tif"), f)
    for i, (name, T) in enumerate(TEST_LENGTHS.items()):
        frames, masks = _video(T, i, ANOMALY_FROM[name])
        d, g = base / "Test" / name, base / "Test" / f"{name}_gt"
        d.mkdir(parents=True)
        g.mkdir()
        for t in range(T):
            cv2.imwrite(str(d / f"{t + 1:03d}.tif"), frames[t])
            cv2.imwrite(str(g / f"{t + 1:03d}.bmp"), masks[t])
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    perturb_bn(AEDMAE.from_preset("tiny"), seed=3).save(path)
    return path


@pytest.fixture(scope="module")
def reference(tree, checkpoint) -> dict:
    """Per test video: the Detector's raw scores and maps, frame labels and masks."""
    det = Detector(str(checkpoint), device="cpu", compile=False, batch_size=8)
    out = {}
    for name in TEST_LENGTHS:
        folder = tree / "UCSDped2" / "Test" / name
        res = det.score_video(folder, return_maps=True)
        masks = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0
                          for p in sorted((folder.parent / f"{name}_gt").glob("*.bmp"))])
        out[str(folder)] = {"raw": res.raw_scores, "maps": res.maps, "masks": masks,
                            "labels": masks.any(axis=(1, 2)).astype(np.int64)}
    return out


def _expected_protocol(reference: dict) -> tuple[dict, float, float]:
    """aedfast's paper protocol without the 3D filter, computed independently: per video the
    frames 3 .. T-4, the default's normalised Gaussian (`Smoothing()`'s sigma, radius support // 2,
    edges replicated: scipy), the default's score floor (the tests' own reference), then
    sklearn's ROC AUC (micro: all frames; macro: per video with a 0 put in front of labels and
    scores and a 1 appended, docs/design.md §5)."""
    smoothed, aucs, all_s, all_l = {}, [], [], []
    for video, r in reference.items():
        s = gaussian_filter1d(r["raw"][3:-3].astype(np.float64), SM.sigma, mode="nearest",
                              truncate=(SM.support // 2) / SM.sigma)
        if SM.floor is not None:  # the default's score floor, last
            s = np.asarray(floor_reference(s.tolist(), SM.floor))
        lab = r["labels"][3:-3]
        smoothed[video] = s
        all_s.append(s)
        all_l.append(lab)
        aucs.append(roc_auc_score(np.r_[0, lab, 1], np.r_[0.0, s, 1.0]))
    micro = roc_auc_score(np.concatenate(all_l), np.concatenate(all_s))
    return smoothed, float(micro), float(np.mean(aucs))


def _datamodule(tree: Path, **kw) -> UCSDped:
    args = {"clip_length_in_frames": 7, "target_frame": "mid", "frames_between_clips": 1,
            "eval_batch_size": 5, "num_workers": 0, **kw}
    return UCSDped(root=tree, category="UCSDped2", **args)


class _Capture(Callback):
    """What each test step returned (after the model's post-processor)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                          dataloader_idx=0) -> None:
        for i, video in enumerate(outputs.video_path):
            self.rows.append({"video": video, "frame": int(outputs.frames[i]),
                              "score": float(outputs.pred_score[i]),
                              "map": outputs.anomaly_map[i].cpu().numpy(),
                              "label": int(outputs.gt_label[i])})


def test_engine_test_matches_detector(tree, checkpoint, reference, tmp_path):
    model = integ.AedMae(str(checkpoint), device="cpu", compile=False,
                         batch_size=4)  # < eval_batch_size: a batch takes two model steps
    cap = _Capture()
    engine = Engine(accelerator="cpu", devices=1, logger=False, callbacks=[cap],
                    default_root_dir=tmp_path, enable_progress_bar=False)
    results = engine.test(model, datamodule=_datamodule(tree), verbose=False)[0]

    by_video: dict[str, list[dict]] = {}
    for row in cap.rows:
        by_video.setdefault(row["video"], []).append(row)
    assert sorted(by_video) == sorted(reference)
    for video, rows in by_video.items():
        r = reference[video]
        T = len(r["raw"])
        rows.sort(key=lambda d: d["frame"])
        frames = [d["frame"] for d in rows]
        assert frames == list(range(3, T - 3)), video  # first and last 3 frames: no clip
        assert [d["label"] for d in rows] == r["labels"][3:-3].tolist()
        scores = np.array([d["score"] for d in rows])
        assert rel(scores, r["raw"][3:-3]) < TOL
        H, W = SIZE
        maps = np.stack([d["map"][0] for d in rows])
        want = np.stack([cv2.resize(r["maps"][t], (W, H), interpolation=cv2.INTER_LINEAR)
                         for t in frames])
        assert maps.shape == (len(frames), H, W)
        assert rel(maps, want) < TOL

    # anomalib's own metrics on these numbers, and aedfast's protocol metrics
    vids = sorted(reference)
    frames_all = [np.arange(3, len(reference[v]["raw"]) - 3) for v in vids]
    raw = np.concatenate([reference[v]["raw"][f] for v, f in zip(vids, frames_all)])
    labels = np.concatenate([reference[v]["labels"][f] for v, f in zip(vids, frames_all)])
    assert results["image_AUROC"] == pytest.approx(roc_auc_score(labels, raw), abs=1e-6)
    masks = np.concatenate([reference[v]["masks"][f] for v, f in zip(vids, frames_all)])
    maps = np.concatenate([np.stack([d["map"][0] for d in sorted(by_video[v],
                                                                 key=lambda d: d["frame"])])
                           for v in vids])
    assert results["pixel_AUROC"] == pytest.approx(
        roc_auc_score(masks.reshape(-1), maps.reshape(-1)), abs=1e-4)
    _, micro, macro = _expected_protocol(reference)
    assert results["aedfast_micro_auc"] == pytest.approx(micro, abs=1e-6)
    assert results["aedfast_macro_auc"] == pytest.approx(macro, abs=1e-6)


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"^## Use it from anomalib\n(.*?)(?=^## )", text, flags=re.M | re.S)
    assert m, "README.md has no '## Use it from anomalib' section"
    blocks = re.findall(r"```python\n(.*?)```", m.group(1), flags=re.S)
    assert len(blocks) == 1, "expected one python block in 'Use it from anomalib'"
    return blocks[0]


def test_readme_snippet_runs(tree, checkpoint, reference, tmp_path, monkeypatch):
    """The README's snippet, pointed at the tiny tree and checkpoint by its environment
    variables; its model built uncompiled (a test-time setting only)."""
    monkeypatch.setenv("AEDFAST_CHECKPOINT", str(checkpoint))
    monkeypatch.setenv("AEDFAST_UCSD_ROOT", str(tree))
    monkeypatch.chdir(tmp_path)  # anomalib writes its results/ folder here

    class Uncompiled(integ.AedMae):
        def __init__(self, *args, **kwargs):
            kwargs.setdefault("compile", False)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(integ, "AedMae", Uncompiled)
    ns: dict = {}
    exec(compile(_readme_snippet(), "README.md", "exec"), ns)
    results, scores = ns["results"], ns["scores"]
    smoothed, micro, macro = _expected_protocol(reference)
    assert scores.videos == sorted(reference)
    for video, s in zip(scores.videos, scores.scores):
        # floored scores are differences of scores: the error on the scores' own scale
        scale = np.abs(reference[video]["raw"]).max()
        assert np.abs(s - smoothed[video]).max() < TOL * scale
    assert scores.micro_auc == pytest.approx(micro, abs=1e-6)
    assert scores.macro_auc == pytest.approx(macro, abs=1e-6)
    assert results[0]["aedfast_micro_auc"] == pytest.approx(scores.micro_auc, abs=1e-9)
    assert results[0]["aedfast_macro_auc"] == pytest.approx(scores.macro_auc, abs=1e-9)


# ----------------------------------------------------------------------------- without Engine


def _clips(video_bgr: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Every 7-frame clip of a BGR video as anomalib builds it: RGB, uint8 -> float with
    torchvision's scaling; [n, 7, 3, H, W] and the middle frames' indices [n]."""
    from torchvision.transforms.v2.functional import to_dtype

    rgb = torch.from_numpy(np.ascontiguousarray(video_bgr[..., ::-1])).permute(0, 3, 1, 2)
    x = to_dtype(rgb, torch.float32, scale=True)
    T = x.shape[0]
    clips = torch.stack([x[s:s + 7] for s in range(T - 6)])
    return clips, torch.arange(3, T - 3)


def test_clip_frames_uint8_inverts_anomalib_scaling():
    v = np.random.default_rng(1).integers(0, 256, (9, 5, 7, 3), dtype=np.uint8)
    v[0, 0, 0] = (0, 255, 128)
    clips, _ = _clips(v)
    got = integ.clip_frames_uint8(clips)  # [n, 3, H, W, 3] RGB
    for s in range(clips.shape[0]):
        want = v[[s, s + 3, s + 6]][..., ::-1]
        assert np.array_equal(got[s].numpy(), want)


@pytest.mark.parametrize("dataset", ["avenue", "shanghaitech"])
def test_official_protocol_matches_detector_and_metrics(checkpoint, dataset):
    frames_a, masks_a = _video(13, 7, 5)
    frames_b, masks_b = _video(11, 8, 3)
    kw = {"device": "cpu", "compile": False, "protocol": "official",
          "official_dataset": dataset}
    model = integ.AedMae(str(checkpoint), batch_size=8, **kw)
    det = Detector(str(checkpoint), batch_size=8, **kw)
    raw, labels, videos, frames = [], [], [], []
    for name, v, m in (("a", frames_a, masks_a), ("b", frames_b, masks_b)):
        clips, tids = _clips(v)
        out = model.score_clips(clips, tids)
        assert out.anomaly_map is None
        ref = det.score_video(v).raw_scores
        assert rel(out.pred_score.numpy(), ref[3:-3]) < TOL
        raw.append(out.pred_score.numpy())
        labels.append(m.any(axis=(1, 2))[3:-3].astype(np.int64))
        videos += [name] * len(tids)
        frames.append(tids.numpy())
    res = integ.protocol_scores(videos, np.concatenate(frames), np.concatenate(raw),
                                np.concatenate(labels), protocol="official", dataset=dataset)
    micro, macro = official_auc(raw, labels, dataset)  # metrics' numpy filter and min-max
    assert res.micro_auc == pytest.approx(micro, abs=1e-6)
    assert res.macro_auc == pytest.approx(macro, abs=1e-6)


def test_forward_is_score_clips_between_pre_and_post_processor(checkpoint):
    model = integ.AedMae(str(checkpoint), device="cpu", compile=False)
    clips, tids = _clips(_video(10, 4, 5)[0])
    out, want = model(clips, tids), model.score_clips(clips, tids)
    assert torch.equal(out.pred_score, want.pred_score)
    assert torch.equal(out.anomaly_map, want.anomaly_map)
    assert out.anomaly_map.shape == (4, 1, *SIZE)
    with pytest.raises(ValueError, match="target frame index"):
        model(clips)


def test_clear_errors(checkpoint):
    model = integ.AedMae(str(checkpoint), device="cpu", compile=False)
    clips, tids = _clips(_video(9, 0, None)[0])
    with pytest.raises(ValueError, match="clip_length_in_frames=7"):
        model.score_clips(clips[:, :5], tids)
    with pytest.raises(ValueError, match="batch.frames"):
        model.score_clips(clips, None)
    with pytest.raises(ValueError, match="2 indices for 3 clips"):
        model.score_clips(clips, tids[:2])
    with pytest.raises(RuntimeError, match="aedfast train"):
        model.training_step(None)
    with pytest.raises(ValueError, match=r"video b: frames 4 and 6 are not consecutive"):
        integ.protocol_scores(["a", "a", "b", "b"], [3, 4, 4, 6], [0.1, 0.2, 0.3, 0.4])
    with pytest.raises(ValueError, match=r"video a: frame 3 scored twice"):
        integ.protocol_scores(["a", "a"], [3, 3], [0.1, 0.2])
    with pytest.raises(ValueError, match="protocol must be one of"):
        integ.AedMae(str(checkpoint), protocol="fast")


@pytest.mark.parametrize("setting, match", [
    ({"clip_length_in_frames": 2}, "clip_length_in_frames is 2"),
    ({"target_frame": "last"}, "target_frame is 'last'"),
    ({"frames_between_clips": 2}, "frames_between_clips is 2"),
])
def test_datamodule_settings_checked(tree, checkpoint, tmp_path, setting, match):
    model = integ.AedMae(str(checkpoint), device="cpu", compile=False)
    engine = Engine(accelerator="cpu", devices=1, logger=False, default_root_dir=tmp_path,
                    enable_progress_bar=False)
    with pytest.raises(ValueError, match=match):
        engine.test(model, datamodule=_datamodule(tree, **setting), verbose=False)


def test_core_never_imports_the_integration():
    """The integration is an optional extra: no library module outside aedfast/integrations
    imports it, and the package's __init__ imports none of its modules."""
    import ast

    pkg = ROOT / "aedfast"
    bad = []
    for f in pkg.rglob("*.py"):
        rel_path = f.relative_to(pkg)
        if rel_path.parts[0] in ("integrations", "kernels"):
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any("integrations" in n or n.split(".")[0] == "anomalib" for n in names):
                bad.append(str(rel_path))
    assert not bad, bad
    init = ast.parse((pkg / "integrations" / "__init__.py").read_text())
    assert not [n for n in ast.walk(init) if isinstance(n, (ast.Import, ast.ImportFrom))]
