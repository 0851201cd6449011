"""AEDMAE against the independent literal reference of docs/design.md §2 (tests/reference_aed.py),
official-checkpoint loading, native checkpoints, patchify, and bad input."""

from __future__ import annotations

import pickle
import warnings

import pytest
import torch

from aedfast import AEDMAE, CheckpointError, official_frame_scores, patchify, unpatchify
from aedfast.model import encoder_grid, get_preset, random_masking

from . import reference_aed as ref


def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random weights everywhere, random BatchNorm statistics too (so folding is exercised);
    returns the module in eval mode. Works on a whole AEDMAE or on one Block."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm1.weight", "norm2.weight", "norm.weight", "bn.weight")):
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else 1
                p.copy_(torch.randn(p.shape, generator=g) / max(fan_in, 1) ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
    return model.eval()


def official_state(model: AEDMAE) -> dict[str, torch.Tensor]:
    """The model's weights as the official implementation names them (no cls head, plus
    the morphology kernels it keeps)."""
    sd = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("cls_head")}
    sd["erosion.weight"] = torch.ones(1, 1, 5, 5)
    sd["dilation.weight"] = torch.ones(1, 1, 5, 5)
    sd["erosion_3.weight"] = torch.ones(1, 1, 1, 40)
    sd["dilation_3.weight"] = torch.ones(1, 1, 1, 40)
    return sd


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def run_reference(model: AEDMAE, x: torch.Tensor, noise: torch.Tensor):
    c = model.config
    return ref.forward(
        official_state(model), x, noise, patch=c.patch_size, heads=c.num_heads,
        dec_heads=c.decoder_num_heads, depth=c.depth, dec_depth=c.decoder_depth,
        mask_ratio=c.mask_ratio,
    )


@pytest.mark.parametrize("preset,batch", [("avenue", 1), ("shanghaitech", 2), ("tiny", 3)])
def test_parity_with_literal_reference(preset, batch):
    torch.manual_seed(1)
    model = randomize(AEDMAE.from_preset(preset), seed=2)
    H, W = model.config.img_size
    x = torch.rand(batch, 9, H, W) * 2 - 1
    noise = torch.rand(batch, model.config.num_tokens)
    with torch.no_grad():
        out = model(x, noise=noise)
    teacher, student, mask = run_reference(model, x, noise)
    assert rel_err(out.teacher, teacher) <= 1e-5
    assert rel_err(out.student, student) <= 1e-5
    assert torch.equal(out.mask.double(), mask)
    # the quirks matter: outputs differ from a model without them
    assert rel_err(out.teacher, out.student) > 1e-3


def test_quirks_are_load_bearing():
    """Swap the shuffled encoder grid for spatial order and the output changes, so the
    parity test above really pins the official layout."""
    model = randomize(AEDMAE.from_preset("tiny"), seed=3)
    x = torch.rand(1, 9, 64, 128) * 2 - 1
    noise = torch.rand(1, model.config.num_tokens)
    sorted_noise = noise.clone()
    with torch.no_grad():
        a = model(x, noise=noise)
        # same kept set, but in spatial order: only the encoder grid layout differs
        keep = noise.argsort(1)[:, : a.ids_keep.shape[1]]
        sorted_noise[0, keep[0].sort().values] = torch.linspace(0, 0.1, keep.shape[1])
        b = model(x, noise=sorted_noise)
    assert torch.equal(a.mask, b.mask)
    assert rel_err(a.teacher, b.teacher) > 1e-4


def test_masking_follows_spec():
    noise = torch.tensor([[0.5, 0.1, 0.9, 0.3]])
    m = random_masking(noise, 0.5)
    assert m.ids_keep.tolist() == [[1, 3]]
    assert m.mask.tolist() == [[1, 0, 1, 0]]
    assert m.ids_restore.tolist() == [[2, 0, 3, 1]]
    assert encoder_grid((20, 40), 0.5) == (20, 20)
    with pytest.raises(ValueError, match="grid"):
        encoder_grid((5, 5), 0.5)


def test_patchify_matches_loop_and_roundtrips():
    img = torch.randn(2, 4, 16, 24)
    p = patchify(img, 8)
    assert torch.equal(p, ref.patchify_loop(img, 8))
    assert torch.equal(unpatchify(p, 8, (2, 3)), img)
    big = torch.randn(1, 4, 320, 640)
    assert torch.equal(unpatchify(patchify(big, 16), 16, (20, 40)), big)


def test_official_frame_scores():
    torch.manual_seed(0)
    t, s, y = torch.randn(3, 2, 5, 8).unbind(0)
    out = (s, y)
    avenue = official_frame_scores(t, out, dataset="avenue")
    expect = ((t - s) ** 2).mean(-1).mean(-1) + ((s - y) ** 2).mean(-1).mean(-1)
    torch.testing.assert_close(avenue, expect)
    sh = official_frame_scores(t, out, dataset="shanghaitech")
    torch.testing.assert_close(sh, (t - s).abs().mean((-1, -2)))


def test_noise_drawn_when_absent_and_reproducible():
    model = AEDMAE.from_preset("tiny").eval()
    x = torch.zeros(2, 9, 64, 128)
    torch.manual_seed(0)
    a = model(x)
    torch.manual_seed(0)
    b = model(x)
    assert torch.equal(a.mask, b.mask)
    assert a.mask.sum(1).tolist() == [64.0, 64.0]
    assert a.cls_logit.shape == (2,)


# ----------------------------------------------------------------------------- checkpoints


def test_from_official_loads_and_matches(tmp_path):
    src = randomize(AEDMAE.from_preset("tiny"), seed=4)
    sd = official_state(src)
    teacher_sd = {k: v for k, v in sd.items()}
    student_sd = {k: (v + 1 if "student" in k and v.is_floating_point() else v)
                  for k, v in sd.items()}
    torch.save({"model": teacher_sd, "epoch": 3}, tmp_path / "checkpoint-best.pth")
    torch.save({"model": student_sd}, tmp_path / "checkpoint-best-student.pth")
    with pytest.warns(UserWarning, match="cls_head"):
        m = AEDMAE.from_official(tmp_path / "checkpoint-best.pth",
                                 tmp_path / "checkpoint-best-student.pth", preset="tiny")
    own = m.state_dict()
    for k in sd:
        if k.startswith(("erosion", "dilation")):
            continue
        expect = student_sd[k] if "student" in k else teacher_sd[k]
        assert torch.equal(own[k], expect), k
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m2 = AEDMAE.from_official(tmp_path / "checkpoint-best.pth", preset="tiny")
    key = "decoder_student_pred.bias"
    assert torch.equal(m2.state_dict()[key], sd[key])


def test_untrained_cls_head_leaves_the_default_d_out(tmp_path, caplog):
    """Official weights have no trained cls head: `cls_head_trained` is False after
    from_official and after loading an `aedfast convert` file, True for trained/native models;
    the default scoring then drops its term d (logged), an explicit d is kept with a warning."""
    from aedfast.scoring import Smoothing, resolve_smoothing

    src = AEDMAE.from_preset("tiny")
    torch.save({"model": official_state(src)}, tmp_path / "checkpoint-best.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        off = AEDMAE.from_official(tmp_path / "checkpoint-best.pth", preset="tiny")
    assert src.cls_head_trained and not off.cls_head_trained
    off.save(tmp_path / "conv.safetensors", extra={"converted_from": ["checkpoint-best.pth"]})
    src.save(tmp_path / "own.safetensors", extra={"train": {}})
    assert not AEDMAE.load(tmp_path / "conv.safetensors").cls_head_trained
    assert AEDMAE.load(tmp_path / "own.safetensors").cls_head_trained
    assert Smoothing().d > 0  # the default uses the head
    with caplog.at_level("INFO", logger="aedfast.scoring"):
        sm = resolve_smoothing("default", "paper", "avenue", cls_head_trained=False)
    assert sm.d == 0.0 and "untrained" in caplog.text
    assert resolve_smoothing({"a": 2.0}, "paper", "avenue", False).d == 0.0
    with pytest.warns(UserWarning, match="not trained"):
        assert resolve_smoothing({"d": 1.0}, "paper", "avenue", False).d == 1.0
    assert resolve_smoothing("default", "paper", "avenue", True).d == Smoothing().d


def test_from_official_errors(tmp_path):
    src = AEDMAE.from_preset("tiny")
    sd = official_state(src)
    missing = dict(sd)
    del missing["blocks.0.attn.proj_q.weight"]
    torch.save({"model": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing keys: blocks.0.attn.proj_q.weight"):
        AEDMAE.from_official(tmp_path / "missing.pth", preset="tiny")
    extra = dict(sd, **{"blocks.9.foo": torch.zeros(1)})
    torch.save({"model": extra}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="unexpected keys: blocks.9.foo"):
        AEDMAE.from_official(tmp_path / "extra.pth", preset="tiny")
    # an avenue checkpoint loaded as shanghaitech: the shapes are named
    torch.save({"model": official_state(AEDMAE.from_preset("avenue"))}, tmp_path / "av.pth")
    expect = r"patch_embed.proj.weight: expected \(256, 9, 8, 8\)"
    with pytest.raises(CheckpointError, match=expect):
        AEDMAE.from_official(tmp_path / "av.pth", preset="shanghaitech")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        AEDMAE.from_official(tmp_path / "junk.pth", preset="tiny")
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="expected a dict"):
        AEDMAE.from_official(tmp_path / "list.pth", preset="tiny")
    with pytest.raises(CheckpointError, match="not found"):
        AEDMAE.from_official(tmp_path / "nope.pth", preset="tiny")


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_refuses_arbitrary_pickles(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as f:
        torch.save({"model": {}, "x": Evil()}, f, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        AEDMAE.from_official(tmp_path / "evil.pth", preset="tiny")


def test_native_checkpoint_roundtrip(tmp_path):
    m = randomize(AEDMAE.from_preset("tiny", mask_ratio=0.75), seed=5)
    path = m.save(tmp_path / "sub" / "model.safetensors")
    assert not list(path.parent.glob("*.tmp"))
    m2 = AEDMAE.load(path)
    assert m2.config == m.config
    a, b = m.state_dict(), m2.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError):
        AEDMAE.load(tmp_path / "bad.safetensors")


def test_native_checkpoint_rejects_misshaped(tmp_path):
    from safetensors.torch import load_file, save_file

    m = AEDMAE.from_preset("tiny")
    path = m.save(tmp_path / "m.safetensors")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    state = load_file(path)
    state["norm.weight"] = torch.zeros(3)
    save_file(state, tmp_path / "m2.safetensors", metadata=meta)
    with pytest.raises(CheckpointError, match=r"norm.weight: expected \(96,\), got \(3,\)"):
        AEDMAE.load(tmp_path / "m2.safetensors")


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    m = AEDMAE.from_preset("tiny").eval()
    with pytest.raises(ValueError, match="9 input channels"):
        m(torch.zeros(1, 3, 64, 128))
    with pytest.raises(ValueError, match="not divisible by the patch"):
        m(torch.zeros(1, 9, 60, 128))
    with pytest.raises(ValueError, match="noise must have shape"):
        m(torch.zeros(2, 9, 64, 128), noise=torch.rand(2, 10))
    with pytest.raises(ValueError, match="unknown preset"):
        AEDMAE.from_preset("nope")
    with pytest.raises(ValueError, match="unknown preset fields"):
        get_preset("tiny", depthh=3)
    with pytest.raises(ValueError, match="unknown backend"):
        m.set_backend("cuda")


@pytest.mark.parametrize("preset", ["tiny", "shanghaitech"])
def test_embed_kept_equals_gathered_full_embedding(preset):
    """The fast backends embed only the kept patches; same values as embed-all-then-gather."""
    m = randomize(AEDMAE.from_preset(preset), seed=6)
    H, W = m.config.img_size
    x = torch.rand(2, 9, H, W) * 2 - 1
    ids_keep = random_masking(torch.rand(2, m.config.num_tokens), 0.5).ids_keep
    with torch.no_grad():
        full = m.patch_embed(x)
        expect = torch.gather(full, 1, ids_keep[..., None].expand(-1, -1, full.shape[-1]))
        got = m.patch_embed.embed_kept(x, ids_keep)
    assert rel_err(got, expect) <= 1e-5


def test_parameter_counts_match_the_readme():
    """The README's preset table: official counts less 130 morphology weights, plus the
    257-parameter cls head."""
    from aedfast.model import count_parameters

    presets = ("avenue", "shanghaitech", "tiny")
    counts = {p: count_parameters(AEDMAE.from_preset(p)) for p in presets}
    assert counts == {"avenue": 3_042_690 - 130 + 257, "shanghaitech": 2_402_178 - 130 + 257,
                      "tiny": 358_433}
