"""Two-stage training (aedfast.train): losses, stages, data stream, checkpoints, DDP, errors."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import socket
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedfast.anomalies import SAMPLE_OFFSETS, AnomalyPaster, ShapeSource
from aedfast.kernels import motion_token_weights
from aedfast.model import AEDMAE, CheckpointError, get_preset, patchify, read_checkpoint

# the module (aedfast.train is also the name of the function the package exports)
T = importlib.import_module("aedfast.train")

SMALL = dict(img_size=(32, 64), patch_size=8, embed_dim=32, depth=1, num_heads=2,
             decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2)
BASE = dict(preset="tiny", model_overrides=SMALL, batch_size=8, streams=2, workers=0, lr=2e-3,
            warmup_steps=0, lr_schedule="constant", log_every=1)


class ArrayVideo:
    """An in-memory video (the reader protocol: name, len, [i], frames(start, stop))."""

    def __init__(self, name: str, frames: np.ndarray):
        self.name = name
        self.data = frames

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[i].copy()

    def frames(self, start: int = 0, stop: int | None = None):
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(0, start), stop):
            yield self[i]


def make_videos(n: int = 4, T_: int = 40, H: int = 32, W: int = 64, seed: int = 0
                ) -> list[ArrayVideo]:
    """A static textured scene with two blocks walking across it, per video."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(40, 140, (H // 4, W // 4, 3), dtype=np.uint8), (W, H),
                    interpolation=cv2.INTER_LINEAR)
    vids = []
    for v in range(n):
        frames = np.empty((T_, H, W, 3), np.uint8)
        for t in range(T_):
            f = bg.copy()
            for k, (y, speed, col) in enumerate([(6, 1.0, 200), (18, -1.5, 30)]):
                x = int((v * 7 + k * 20 + speed * t) % (W - 6))
                f[y:y + 10, x:x + 6] = (col, 255 - col, (col + 90) % 256)
            noise = rng.integers(-3, 4, f.shape)
            frames[t] = np.clip(f.astype(int) + noise, 0, 255).astype(np.uint8)
        vids.append(ArrayVideo(f"v{v}", frames))
    return vids


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[1]


def _log(out: Path) -> list[dict]:
    return [json.loads(x) for x in (out / T.LOG_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def videos():
    return make_videos()


# ----------------------------------------------------------------------------- training


def test_loss_decreases(videos, tmp_path):
    out = tmp_path / "run"
    path = T.train(videos, out=out, teacher_steps=40, student_steps=20, progress=False, **BASE)
    log = _log(out)
    rec = [r["rec"] for r in log if r["stage"] == 1]
    cls = [r["cls"] for r in log if r["stage"] == 1]
    stu = [r["student"] for r in log if r["stage"] == 2]
    assert len(rec) == 40 and len(stu) == 20
    assert np.mean(rec[-5:]) < 0.6 * np.mean(rec[:5]), rec
    assert np.mean(stu[-5:]) < 0.8 * np.mean(stu[:5]), stu
    assert all(np.isfinite(cls))
    model = AEDMAE.load(path)
    assert model.config.img_size == (32, 64) and model.config.embed_dim == 32
    _, _, extra = read_checkpoint(path)
    assert extra["steps"] == 60 and extra["train"]["batch_size"] == 8


def test_stage2_changes_only_student(videos, tmp_path):
    snap = {}

    def cb(info):
        if info["step"] == 3:  # end of stage 1
            snap.update({k: v.clone() for k, v in info["model"].state_dict().items()})

    path = T.train(videos, out=tmp_path / "r", teacher_steps=3, student_steps=4, progress=False,
                   callback=cb, **BASE)
    final = _weights(path)
    assert snap and set(snap) == set(final)
    student = [k for k in final if k.startswith("decoder_student_")]
    assert student
    for k, v in final.items():
        if k.startswith("decoder_student_"):
            continue
        # parameters and buffers (BatchNorm running statistics too) stay bit-identical
        assert torch.equal(v, snap[k]), f"stage 2 changed {k}"
    changed = [k for k in student if not torch.equal(final[k], snap[k])]
    params = {n for n, _ in AEDMAE(get_preset("tiny", **SMALL)).named_parameters()}
    assert set(changed) >= {k for k in student if k in params}, "student parameters must train"


def test_stage1_leaves_student_alone(videos, tmp_path):
    torch.manual_seed(BASE.get("seed", 0))
    init = AEDMAE(get_preset("tiny", **SMALL)).state_dict()
    path = T.train(videos, out=tmp_path / "r", teacher_steps=3, student_steps=0, progress=False,
                   **BASE)
    final = _weights(path)
    for k, v in final.items():
        if k.startswith("decoder_student_"):
            assert torch.equal(v, init[k]), k
    assert not torch.equal(final["blocks.0.attn.proj.weight"], init["blocks.0.attn.proj.weight"])


def test_reproducible_and_independent_of_workers(videos, tmp_path):
    kw = dict(BASE, teacher_steps=3, student_steps=2)
    a = _weights(T.train(videos, out=tmp_path / "a", progress=False, **kw))
    kw["workers"] = 2
    b = _weights(T.train(videos, out=tmp_path / "b", progress=False, **kw))
    assert all(torch.equal(a[k], b[k]) for k in a)
    kw["seed"] = 1
    c = _weights(T.train(videos, out=tmp_path / "c", progress=False, **kw))
    assert not all(torch.equal(a[k], c[k]) for k in a)


class _Kill(Exception):
    pass


@pytest.mark.parametrize("kill_at", [3, 7])  # in stage 1 / in stage 2 (optimizer state too)
def test_resume_equals_uninterrupted(videos, tmp_path, kill_at):
    kw = dict(BASE, teacher_steps=4, student_steps=4, checkpoint_every=2)
    ref = _weights(T.train(videos, out=tmp_path / "ref", progress=False, **kw))

    def die(info):
        if info["step"] == kill_at:
            raise _Kill

    out = tmp_path / "killed"
    with pytest.raises(_Kill):
        T.train(videos, out=out, progress=False, callback=die, **kw)
    ck = torch.load(out / T.CHECKPOINT_NAME, weights_only=True)
    assert ck["step"] == kill_at - 1  # the last checkpoint: at most checkpoint_every lost
    assert ck["stage"] == (1 if kill_at <= 4 else 2)
    assert not (out / "aed_tiny.safetensors").exists()
    with pytest.raises(T.TrainingError, match="resume"):
        T.train(videos, out=out, progress=False, **kw)
    got = _weights(T.train(videos, out=out, progress=False, resume=True, **kw))
    for k in ref:
        assert torch.equal(ref[k], got[k]), f"{k} differs after resume"
    steps = [r["step"] for r in _log(out)]
    assert steps == list(range(1, 9)), "the log keeps one record per step across the resume"


def test_resume_other_preset_is_an_error(videos, tmp_path):
    out = tmp_path / "r"
    T.train(videos, out=out, teacher_steps=1, student_steps=0, progress=False, **BASE)
    other = dict(BASE, model_overrides=dict(SMALL, embed_dim=64))
    with pytest.raises(CheckpointError, match="preset|embed_dim"):
        T.train(videos, out=out, teacher_steps=2, student_steps=0, progress=False, resume=True,
                **other)
    with pytest.raises(CheckpointError, match="preset 'avenue'"):
        T.train(videos, out=out, teacher_steps=2, student_steps=0, progress=False, resume=True,
                **dict(BASE, preset="avenue", model_overrides={}))


def test_resume_extends_or_refuses_moved_stage_boundary(videos, tmp_path):
    out = tmp_path / "r"
    T.train(videos, out=out, teacher_steps=2, student_steps=2, progress=False, **BASE)
    with pytest.raises(T.TrainingError, match="stage-1 length"):
        T.train(videos, out=out, teacher_steps=3, student_steps=3, progress=False, resume=True,
                **BASE)
    path = T.train(videos, out=out, teacher_steps=2, student_steps=4, progress=False,
                   resume=True, **BASE)  # a longer student stage continues the run
    assert torch.load(out / T.CHECKPOINT_NAME, weights_only=True)["step"] == 6
    assert read_checkpoint(path)[2]["steps"] == 6


def test_epochs_schedule(videos):
    cfg = T.resolve_config(epochs=2, **{k: v for k, v in BASE.items() if k != "log_every"})
    plan = T._Plan([len(v) for v in videos], cfg.streams, 1, cfg.batch_size, cfg.seed, 1000)
    s1, s2 = T._stage_lengths(cfg, plan)
    # 4 videos x 40 frames over 2 streams of micro-batch 4: 20 steps an epoch
    assert (s1, s2) == (20, 20)
    cfg = T.resolve_config(steps=30, student_fraction=0.2, **BASE)
    assert T._stage_lengths(cfg, plan) == (24, 6)
    tiny = T.resolve_config(preset="tiny")
    assert tiny.teacher_epochs and tiny.student_epochs and tiny.batch_size
    official = T.resolve_config(preset="avenue")
    assert (official.lr, official.batch_size, official.teacher_epochs, official.student_epochs,
            official.weight_decay, official.betas) == (1e-4, 100, 100, 100, 0.05, (0.9, 0.95))
    # one stage given: the other keeps its default; a total length replaces both
    one = T.resolve_config(preset="tiny", teacher_steps=5)
    assert one.teacher_epochs is None and one.student_epochs == tiny.student_epochs
    assert T.resolve_config(preset="tiny", epochs=3).teacher_epochs is None


# ----------------------------------------------------------------------------- data stream


class _Counting(ArrayVideo):
    counts: dict = {}

    def __getitem__(self, i):
        key = (self.name, int(i))
        _Counting.counts[key] = _Counting.counts.get(key, 0) + 1
        return super().__getitem__(i)


def _stream(videos, *, streams=2, batch=8, pool=1000, start=0, stop=20, prob=0.0, stage=1,
            seed=0):
    lengths = [len(v) for v in videos]
    sizes = [v[0].shape[:2] for v in videos]
    plan = T._Plan(lengths, streams, 1, batch, seed, pool)
    paster = AnomalyPaster(sources=[ShapeSource(size=16)], prob=prob) if prob else None
    ds = T._StreamDataset(videos, lengths, sizes, plan, stage, start, stop, 0,
                          sizes[0], seed, paster, False)
    return ds, plan


def test_each_frame_decoded_at_most_once_per_epoch(videos):
    counting = [_Counting(v.name, v.data) for v in videos]
    # small pools: a stream crosses pool boundaries, whose margin frames are carried over
    ds, plan = _stream(counting, pool=8)
    steps = plan.epoch(1, 0).steps
    assert steps == 20
    _Counting.counts.clear()
    n = 0
    for step, _lane, mb in ds:
        assert step < steps
        n += len(mb["index"])
    assert n == steps * 8
    assert max(_Counting.counts.values()) == 1
    assert len(_Counting.counts) == 160  # and every frame was read


def test_every_sample_once_per_epoch_and_shuffled(videos):
    ds, plan = _stream(videos)
    seen = [tuple(i) for _, _, mb in ds for i in mb["index"]]
    assert len(seen) == len(set(seen)) == 160
    first = [tuple(i) for i in next(iter(ds))[2]["index"]]
    assert first != sorted(first)
    # the next epoch is another permutation
    ds2, _ = _stream(videos, start=20, stop=40)
    seen2 = [tuple(i) for _, _, mb in ds2 for i in mb["index"]]
    assert sorted(seen2) == sorted(seen) and seen2 != seen


def test_sample_frames_and_edges(videos):
    ds, _ = _stream(videos)
    t0 = SAMPLE_OFFSETS.index(0)
    checked_edge = False
    for _, _, mb in ds:
        for k, (v, t) in enumerate(mb["index"]):
            data = videos[v].data
            for q, d in enumerate(SAMPLE_OFFSETS):
                want = data[t + d] if 0 <= t + d < len(data) else data[t]  # edges: frame t
                assert np.array_equal(mb["frames"][k, q], want)
                checked_edge |= not 0 <= t + d < len(data)
            assert np.array_equal(mb["clean"][k], data[t])
            assert mb["label"][k] == 0 and not mb["mask"][k].any()
        assert np.array_equal(mb["frames"][:, t0], mb["clean"])
    assert checked_edge


def test_anomaly_samples_consistent(videos):
    ds, _ = _stream(videos, prob=1.0)
    t0 = SAMPLE_OFFSETS.index(0)
    n_anom = 0
    for _, _, mb in ds:
        for k, (v, t) in enumerate(mb["index"]):
            clean = videos[v].data[t]
            assert np.array_equal(mb["clean"][k], clean), "the clean target must be untouched"
            m = mb["mask"][k].astype(bool)
            assert bool(mb["label"][k]) == m.any()
            diff = (mb["frames"][k, t0] != clean).any(-1)
            assert not diff[~m].any(), "input frame t changed outside the anomaly mask"
            n_anom += int(m.any())
    assert n_anom > 100


def test_anomalies_reproducible(videos):
    a = [mb for _, _, mb in _stream(videos, prob=0.5, stop=3)[0]]
    b = [mb for _, _, mb in _stream(videos, prob=0.5, stop=3)[0]]
    c = [mb for _, _, mb in _stream(videos, prob=0.5, stop=3, seed=1)[0]]
    assert all(np.array_equal(x["frames"], y["frames"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["frames"], y["frames"]) for x, y in zip(a, c))


def test_prepare_batch_targets_and_weights(videos):
    ds, _ = _stream(videos, prob=1.0, stop=1)
    parts = [mb for _, _, mb in ds]
    batch = {k: torch.cat([torch.as_tensor(p[k]) for p in parts]) for k in parts[0]}
    cfg = get_preset("tiny", **SMALL)
    x, target, weights, label = T.prepare_batch(batch, cfg, torch.device("cpu"))
    B = len(label)
    fr = batch["frames"].float()
    assert x.shape == (B, 9, 32, 64)
    # channels: t-3, t, t+3, each B, G, R, scaled to [-1, 1]
    assert torch.allclose(x[:, 3:6], (fr[:, 2].permute(0, 3, 1, 2) - 127.5) / 127.5)
    assert torch.allclose(x[:, 6:9], (fr[:, 4].permute(0, 3, 1, 2) - 127.5) / 127.5)
    tgt = torch.cat([batch["clean"].permute(0, 3, 1, 2).float(),
                     batch["mask"][:, None].float() * 255], 1)
    assert torch.equal(target, patchify((tgt - 127.5) / 127.5, 8))
    mask4 = target.reshape(B, -1, 4)[..., 3]
    assert set(mask4.unique().tolist()) <= {-1.0, 1.0}
    want = motion_token_weights(batch["frames"][:, 1], batch["frames"][:, 3], 8,
                                anomaly_map=batch["mask"].float())
    assert torch.equal(weights, want)
    assert torch.allclose(weights.sum(1), torch.ones(B))
    # the pasted object pulls weight towards its tokens
    plain = motion_token_weights(batch["frames"][:, 1], batch["frames"][:, 3], 8)
    tok = patchify(batch["mask"][:, None].float(), 8).amax(-1) > 0
    hit = label.bool()
    assert (weights[hit][tok[hit]].sum() > plain[hit][tok[hit]].sum())


# ----------------------------------------------------------------------------- bad input


def _write_folder(root: Path, name: str, frames: np.ndarray, ext: str = ".png") -> Path:
    d = root / name
    d.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:03d}{ext}"), f)
    return d


def test_empty_training_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found none|no training videos"):
        T.train(tmp_path / "empty", dataset="folder", out=tmp_path / "o", steps=1,
                progress=False, **BASE)
    with pytest.raises(T.TrainingDataError, match="no training videos"):
        T.train([], out=tmp_path / "o", steps=1, progress=False, **BASE)


def test_unreadable_frame(videos, tmp_path):
    root = tmp_path / "data"
    for v in videos[:2]:
        _write_folder(root, v.name, v.data)
    bad = root / videos[1].name / "007.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(T.TrainingDataError, match="007.png"):
        T.train(root, dataset="folder", out=tmp_path / "o", teacher_steps=10, student_steps=0,
                progress=False, **BASE)


def test_mixed_resolutions(videos, tmp_path):
    big = [ArrayVideo("big", np.stack([cv2.resize(f, (96, 48)) for f in videos[0].data]))]
    with pytest.raises(T.TrainingDataError, match="mixed resolutions.*allow_mixed_sizes"):
        T.train(videos[:1] + big, out=tmp_path / "o", steps=1, progress=False, **BASE)
    # allowed on request: every frame is resized to the model's input
    T.train(videos[:1] + big, out=tmp_path / "ok", steps=1, progress=False,
            allow_mixed_sizes=True, **BASE)
    # inside one video it is always an error
    frames = list(videos[0].data)
    frames[20] = cv2.resize(frames[20], (96, 48))
    odd = ArrayVideo("odd", np.empty(len(frames), dtype=object))
    odd.data[:] = frames
    with pytest.raises(T.TrainingDataError, match="'odd' frame 20.*inside one video"):
        T.train([odd, videos[1]], out=tmp_path / "o2", steps=10, progress=False, **BASE)


def test_too_few_frames_and_bad_config(videos, tmp_path):
    short = [ArrayVideo("s", videos[0].data[:5])]
    with pytest.raises(T.TrainingDataError, match="cannot fill one batch"):
        T.train(short, out=tmp_path / "o", steps=1, progress=False, **BASE)
    with pytest.raises(ValueError, match="lr_schedule"):
        T.resolve_config(lr_schedule="linear")
    with pytest.raises(ValueError, match="unknown preset"):
        T.train(videos, out=tmp_path / "o", steps=1, progress=False,
                **dict(BASE, preset="huge"))


# ----------------------------------------------------------------------------- CLI, DDP


def test_cli_arguments(videos, tmp_path):
    root = tmp_path / "data"
    for v in videos[:2]:
        _write_folder(root, v.name, np.stack([cv2.resize(f, (128, 64)) for f in v.data]))
    p = argparse.ArgumentParser()
    T.add_train_arguments(p)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args([str(root), "--dataset", "folder", "--out", str(tmp_path / "o"),
                         "--steps", "2", "--batch-size", "4", "--streams", "2", "--workers", "0",
                         "--name", "m", "--quiet", "--checkpoint-every", "1"])
    path = T.run_from_args(args)
    assert path == tmp_path / "o" / "m.safetensors" and path.exists()
    assert AEDMAE.load(path).config.name == "tiny"
    with pytest.raises(SystemExit):
        p.parse_args([str(root), "--epochs", "1", "--steps", "2"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, out: str, result: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    final = {}

    def cb(info):
        final.update({k: v.detach().clone() for k, v in info["model"].state_dict().items()})

    T.train(make_videos(), out=out, teacher_steps=2, student_steps=1, progress=False,
            callback=cb, **dict(BASE, streams=2, batch_size=4))
    torch.save(final, f"{result}.{rank}")


def test_ddp_two_ranks_identical_weights(tmp_path):
    import torch.multiprocessing as mp

    if sys.platform == "win32":  # pragma: no cover
        pytest.skip("gloo DDP test runs on Linux/macOS")
    result = str(tmp_path / "w")
    ctx = mp.start_processes(_ddp_worker, args=(2, _free_port(), str(tmp_path / "o"), result),
                             nprocs=2, join=False, start_method="spawn")
    for _ in range(120):
        if ctx.join(timeout=1):
            break
    else:
        for p in ctx.processes:
            p.kill()
        pytest.fail("DDP run timed out")
    a = torch.load(f"{result}.0", weights_only=True)
    b = torch.load(f"{result}.1", weights_only=True)
    assert set(a) == set(b) and a
    for k in a:
        assert torch.equal(a[k], b[k]), f"ranks differ in {k}"
    saved = _weights(tmp_path / "o" / "aed_tiny.safetensors")
    assert all(torch.equal(saved[k], a[k]) for k in a)
    # the ranks saw different data: one process alone gives other weights
    assert (tmp_path / "o" / T.CHECKPOINT_NAME).exists()
