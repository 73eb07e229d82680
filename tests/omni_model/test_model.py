"""The dual-stream model: shapes, symmetric conditioning, the release's checkpoint layout on
the meta device, loading a checkpoint, FLOPs against torch's counter."""

from __future__ import annotations

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from omni_core.errors import OmniError
from omni_model.adapter import from_release, load_release, to_release
from omni_model.flavors import (
    FLAVORS,
    build_model,
    forward_flops,
    get_flavor,
    param_count,
    train_flops_per_token,
)
from omni_model.model import ModelArgs, assemble

DEBUG = get_flavor("debug")
VL = DEBUG.geometry.voice_latents


def _inputs(args: ModelArgs, batch: int = 2, n_refs: int = 1, seed: int = 0):
    g = DEBUG.geometry
    gen = torch.Generator().manual_seed(seed)
    f, (h, w) = g.latent_frames, g.latent_size
    target_v = torch.randn(batch, args.video_channels, f, h, w, generator=gen)
    refs_v = torch.randn(batch, args.video_channels, n_refs, h, w, generator=gen)
    target_a = torch.randn(batch, g.audio_latents, args.audio_channels, generator=gen)
    refs_a = torch.randn(batch, n_refs * g.voice_latents, args.audio_channels, generator=gen)
    text = torch.randn(batch, args.text_len, args.text_dim, generator=gen)
    return target_v, refs_v, target_a, refs_a, text


def _trained_like(seed: int = 0):
    """The debug model with every parameter random (a zero head would hide differences)."""
    model = build_model(DEBUG.args, seed=seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(7)))
    return model.eval()


def test_forward_shapes_and_velocity_for_every_position():
    model = _trained_like()
    a = model.args
    tv, rv, ta, ra, text = _inputs(a, n_refs=2)
    v_in = assemble(tv, rv, time_dim=2)
    a_in = assemble(ta, ra, time_dim=1)
    out_v, out_a = model(v_in, a_in, torch.tensor([999.0, 10.0]), text, text,
                         n_image_refs=2, voice_lengths=(VL, VL))
    assert out_v.shape == v_in.shape and out_a.shape == a_in.shape
    assert torch.isfinite(out_v).all() and torch.isfinite(out_a).all()
    # a fresh model's zero head predicts zero velocity (the training-from-scratch init)
    fresh = build_model(a)
    zv, za = fresh(v_in, a_in, torch.tensor([5.0, 5.0]), text, text, n_image_refs=2,
                   voice_lengths=(VL, VL))
    assert torch.all(zv == 0) and torch.all(za == 0)
    with pytest.raises(ValueError, match="not divisible by patch"):
        model(v_in[..., :-1], a_in, torch.tensor([1.0, 1.0]), text, text, n_image_refs=2,
              voice_lengths=(VL, VL))


def test_without_structural_inputs_the_model_is_exactly_the_r2av_model():
    model = _trained_like()
    tv, rv, ta, ra, text = _inputs(model.args)
    t = torch.tensor([500.0, 500.0])
    kw = {"n_image_refs": 1, "voice_lengths": (VL,)}
    r2av = model(torch.cat([tv, rv], 2), torch.cat([ta, ra], 1), t, text, text, **kw)
    none = model(assemble(tv, rv, None, time_dim=2), assemble(ta, ra, None, time_dim=1), t,
                 text, text, **kw)
    zeros = model(assemble(tv, rv, torch.zeros_like(tv), time_dim=2),
                  assemble(ta, ra, torch.zeros_like(ta), time_dim=1), t, text, text, **kw)
    for x, y, z in zip(r2av, none, zeros, strict=True):
        assert torch.equal(x, y) and torch.equal(x, z)
    # a source video is added onto the target frames only: the reference frame is untouched
    src = torch.randn_like(tv)
    x = assemble(tv, rv, src, time_dim=2)
    assert torch.equal(x[:, :, :-1], tv + src) and torch.equal(x[:, :, -1:], rv)
    edited = model(x, assemble(ta, ra, time_dim=1), t, text, text, **kw)
    assert not torch.allclose(edited[0], r2av[0])
    # a driving audio likewise, on the audio target only
    dri = torch.randn_like(ta)
    y = assemble(ta, ra, dri, time_dim=1)
    assert torch.equal(y[:, :-VL], ta + dri) and torch.equal(y[:, -VL:], ra)


def test_streams_are_coupled_both_ways():
    model = _trained_like()
    tv, rv, ta, ra, text = _inputs(model.args)
    t = torch.tensor([300.0, 300.0])
    kw = {"n_image_refs": 1, "voice_lengths": (VL,)}
    v0, a0 = model(torch.cat([tv, rv], 2), torch.cat([ta, ra], 1), t, text, text, **kw)
    v1, a1 = model(torch.cat([tv, rv], 2), torch.cat([ta + 1.0, ra], 1), t, text, text, **kw)
    assert not torch.allclose(v0, v1)  # audio reaches video through fusion
    v2, a2 = model(torch.cat([tv + 1.0, rv], 2), torch.cat([ta, ra], 1), t, text, text, **kw)
    assert not torch.allclose(a0, a2)  # and video reaches audio


def test_gradient_checkpointing_gives_the_same_gradients():
    model = _trained_like().train()
    tv, rv, ta, ra, text = _inputs(model.args)
    args = (torch.cat([tv, rv], 2), torch.cat([ta, ra], 1), torch.tensor([400.0, 9.0]), text,
            text)

    def grads() -> list[torch.Tensor]:
        model.zero_grad()
        v, a = model(*args, n_image_refs=1, voice_lengths=(VL,))
        (v.square().mean() + a.square().mean()).backward()
        return [p.grad.clone() for p in model.parameters()]

    plain = grads()
    model.gradient_checkpointing = True
    ckpt = grads()
    assert all(torch.allclose(x, y, atol=1e-6) for x, y in zip(plain, ckpt, strict=True))


# --------------------------------------------------------------------------------------------
# the released checkpoint layout


def release_layout(a: ModelArgs) -> dict[str, tuple[int, ...]]:
    """The keys and shapes of the DreamID-Omni / Ovi fusion checkpoint, written out from the
    release's documented module tree (not from our model)."""
    d, f = a.dim, a.ffn_dim
    hidden = 256 * -(-int(2 * (4 * d) / 3) // 256)
    out: dict[str, tuple[int, ...]] = {}
    for stream in ("video_model", "audio_model"):
        p = f"{stream}."
        if stream == "video_model":
            out[p + "patch_embedding.weight"] = (d, a.video_channels, *a.patch)
            out[p + "patch_embedding.bias"] = (d,)
            out[p + "head.head.weight"] = (a.video_channels * 4, d)
            out[p + "head.head.bias"] = (a.video_channels * 4,)
        else:
            out[p + "patch_embedding.0.weight"] = (d, a.audio_channels, 7)
            out[p + "patch_embedding.0.bias"] = (d,)
            out[p + "patch_embedding.2.w1.weight"] = (hidden, d, 7)
            out[p + "patch_embedding.2.w2.weight"] = (d, hidden, 7)
            out[p + "patch_embedding.2.w3.weight"] = (hidden, d, 7)
            out[p + "head.head.weight"] = (a.audio_channels, d)
            out[p + "head.head.bias"] = (a.audio_channels,)
        out[p + "head.modulation"] = (1, 2, d)
        for name, shape in (("text_embedding.0", (d, a.text_dim)), ("text_embedding.2", (d, d)),
                            ("time_embedding.0", (d, a.freq_dim)), ("time_embedding.2", (d, d)),
                            ("time_projection.1", (6 * d, d))):
            out[p + name + ".weight"] = shape
            out[p + name + ".bias"] = (shape[0],)
        for i in range(a.layers):
            b = f"{p}blocks.{i}."
            for attn in ("self_attn", "cross_attn"):
                for proj in ("q", "k", "v", "o"):
                    out[f"{b}{attn}.{proj}.weight"] = (d, d)
                    out[f"{b}{attn}.{proj}.bias"] = (d,)
                out[f"{b}{attn}.norm_q.weight"] = (d,)
                out[f"{b}{attn}.norm_k.weight"] = (d,)
            for proj in ("k_fusion", "v_fusion"):
                out[f"{b}cross_attn.{proj}.weight"] = (d, d)
                out[f"{b}cross_attn.{proj}.bias"] = (d,)
            out[f"{b}cross_attn.pre_attn_norm_fusion.weight"] = (d,)
            out[f"{b}cross_attn.pre_attn_norm_fusion.bias"] = (d,)
            out[f"{b}cross_attn.norm_k_fusion.weight"] = (d,)
            out[f"{b}norm3.weight"] = (d,)
            out[f"{b}norm3.bias"] = (d,)
            out[f"{b}ffn.0.weight"] = (f, d)
            out[f"{b}ffn.0.bias"] = (f,)
            out[f"{b}ffn.2.weight"] = (d, f)
            out[f"{b}ffn.2.bias"] = (d,)
            out[f"{b}modulation.modulation"] = (1, 6, d)
    return out


def test_release_layout_maps_onto_the_model_and_back_on_the_meta_device():
    flavor = get_flavor("dreamid-omni")
    layout = release_layout(flavor.args)
    model = build_model(flavor.args, "meta")
    ours = model.state_dict()
    assert all(t.device.type == "meta" for t in ours.values())
    fake = {k: torch.empty(s, device="meta") for k, s in layout.items()}
    mapped = from_release(fake, ours)  # raises on any missing, extra or misshapen key
    assert set(mapped) == set(ours)
    assert {k: tuple(v.shape) for k, v in to_release(ours).items()} == layout
    assert sum(torch.Size(s).numel() for s in layout.values()) == 11_660_753_108
    assert param_count(flavor.args) == {"video": 5_566_479_552, "audio": 6_094_273_556,
                                        "fusion": 1_133_383_680, "total": 11_660_753_108}
    # nothing is silently dropped or invented
    with pytest.raises(OmniError, match="1 missing"):
        from_release({k: v for k, v in fake.items()
                      if k != "video_model.blocks.3.ffn.0.bias"}, ours)
    with pytest.raises(OmniError, match="1 unexpected"):
        from_release({**fake, "video_model.img_emb.proj.0.weight": fake[
            "video_model.head.modulation"]}, ours)
    bad = dict(fake)
    bad["audio_model.head.head.weight"] = torch.empty(48, 3072, device="meta")
    with pytest.raises(OmniError, match="of another shape"):
        from_release(bad, ours)


def test_a_checkpoint_in_the_release_layout_loads_and_predicts_the_same(tmp_path):
    from safetensors.torch import save_file

    model = _trained_like(seed=3)
    path = tmp_path / "dreamid_omni.safetensors"
    save_file({k: v.contiguous() for k, v in to_release(model.state_dict()).items()}, str(path))
    loaded = load_release(path, DEBUG.args).eval()
    assert all(p.device.type == "cpu" for p in loaded.parameters())
    tv, rv, ta, ra, text = _inputs(DEBUG.args)
    args = (torch.cat([tv, rv], 2), torch.cat([ta, ra], 1), torch.tensor([700.0, 3.0]), text,
            text)
    with torch.no_grad():
        for x, y in zip(model(*args, n_image_refs=1, voice_lengths=(VL,)),
                        loaded(*args, n_image_refs=1, voice_lengths=(VL,)), strict=True):
            assert torch.equal(x, y)
    # the .pt forms the release also accepts
    torch.save({"module": to_release(model.state_dict())}, tmp_path / "a.pt")
    torch.save({"app": {"model": to_release(model.state_dict())}}, tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        other = load_release(tmp_path / name, DEBUG.args)
        assert torch.equal(other.video_model.blocks[1].modulation,
                           model.video_model.blocks[1].modulation)
    with pytest.raises(OmniError, match="checkpoint not found"):
        load_release(tmp_path / "missing.safetensors", DEBUG.args)


def test_a_release_file_holding_python_objects_is_refused_in_our_words(tmp_path):
    """A ``.pt`` that pickles more than tensors is refused with one line naming the object
    and saying to convert the file, never torch's advice to load it with weights_only=False
    (which would run arbitrary pickled code)."""
    import argparse

    model = _trained_like(seed=3)
    torch.save({"module": to_release(model.state_dict()), "args": argparse.Namespace(lr=1)},
               tmp_path / "c.pt")
    with pytest.raises(OmniError) as err:
        load_release(tmp_path / "c.pt", DEBUG.args)
    msg = str(err.value)
    assert "argparse.Namespace" in msg and "safetensors" in msg and "\n" not in msg
    assert "weights_only=False" not in msg and "will likely succeed" not in msg


def test_a_checkpoint_can_be_named_by_its_weights_entry(tmp_path):
    """``dreamid-omni`` (or ``ENTRY:FILE``) finds the release file in the weights folder; a
    missing file is one error naming the fetch command; nothing is downloaded."""
    from safetensors.torch import save_file

    from omni_core.weights import entry_dir
    from omni_model.adapter import checkpoint_state, resolve_checkpoint

    with pytest.raises(OmniError, match="omni weights fetch dreamid-omni"):
        resolve_checkpoint("dreamid-omni", tmp_path)
    with pytest.raises(OmniError, match="not a weights entry"):
        resolve_checkpoint("no-such-model", tmp_path)
    model = _trained_like(seed=4)
    folder = entry_dir("dreamid-omni", tmp_path)
    folder.mkdir(parents=True)
    path = folder / "dreamid_omni.safetensors"
    save_file({k: v.contiguous() for k, v in to_release(model.state_dict()).items()}, str(path))
    assert resolve_checkpoint("dreamid-omni", tmp_path) == path
    assert resolve_checkpoint("dreamid-omni:dreamid_omni.safetensors", tmp_path) == path
    sd, what = checkpoint_state("dreamid-omni", model.state_dict(), weights_root=tmp_path)
    assert what == f"release checkpoint {path}"
    assert all(torch.equal(sd[k], v) for k, v in model.state_dict().items())


# --------------------------------------------------------------------------------------------
# counting


def test_forward_flops_match_torchs_counter():
    model = _trained_like()
    a = model.args
    tv, rv, ta, ra, text = _inputs(a, batch=1)
    v_in, a_in = torch.cat([tv, rv], 2), torch.cat([ta, ra], 1)
    counter = FlopCounterMode(display=False)
    # the math backend spells attention out as matmuls, which the counter sees on a CPU
    with counter, torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        model(v_in, a_in, torch.tensor([10.0]), text, text, n_image_refs=1, voice_lengths=(VL,))
    measured = counter.get_total_flops()
    lv = v_in.shape[2] * (v_in.shape[3] // 2) * (v_in.shape[4] // 2)
    ours = forward_flops(a, lv, a_in.shape[1])
    # ours leaves out only the per-sample timestep MLPs
    tmlp = 2 * 2 * (a.freq_dim * a.dim + a.dim * a.dim + a.dim * 6 * a.dim)
    assert ours + tmlp == pytest.approx(measured, rel=0.01)


def test_every_flavor_reports_its_size_and_flops_per_token():
    for name, f in FLAVORS.items():
        pc = param_count(f.args)
        fpt = train_flops_per_token(f.args, f.geometry, n_refs=1)
        assert pc["total"] > 0 and fpt > 6 * 0.5 * pc["total"] / 2, name
    assert 0.8e9 < param_count(get_flavor("small").args)["total"] < 1.3e9
    g = get_flavor("dreamid-omni").geometry
    assert (g.latent_frames, g.tokens_per_frame, g.audio_latents) == (31, 880, 157)
    assert g.tokens(2) == (33 * 880, 157 + 62)
    assert g.audio_rope_scale == pytest.approx(31 / 157)
    with pytest.raises(KeyError, match="unknown flavor"):
        get_flavor("huge")
