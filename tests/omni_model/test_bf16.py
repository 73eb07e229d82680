"""The dual-stream model in bfloat16: sampling with bf16 parameters (``omni generate --set
dtype=bfloat16``) and training under CPU autocast with float32 parameters, each against the
same model in float32."""

from __future__ import annotations

import copy

import torch

from omni_model.flavors import build_model, get_flavor
from omni_model.model import LayerNorm, RMSNorm

DEBUG = get_flavor("debug")
VL = DEBUG.geometry.voice_latents
KW = {"n_image_refs": 1, "voice_lengths": (VL,)}


def _trained_like() -> torch.nn.Module:
    """The debug model (float32) with every parameter random: a fresh model's zero head would
    predict 0 in any precision."""
    model = build_model(DEBUG.args, seed=0)
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=gen))
    return model.eval()


def _batch(model):
    """Assembled inputs of a batch of 2 with one identity, timesteps and text embeddings."""
    a, g = model.args, DEBUG.geometry
    gen = torch.Generator().manual_seed(0)
    f, (h, w) = g.latent_frames, g.latent_size
    video = torch.randn(2, a.video_channels, f + 1, h, w, generator=gen)
    audio = torch.randn(2, g.audio_latents + VL, a.audio_channels, generator=gen)
    text = torch.randn(2, a.text_len, a.text_dim, generator=gen)
    return video, audio, torch.tensor([400.0, 9.0]), text, text


def _rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    """Relative L2 error of ``x`` against ``ref`` (in float32)."""
    return ((x.float() - ref.float()).norm() / ref.float().norm()).item()


def test_norms_take_bf16_inputs_with_bf16_affine_weights():
    x = torch.randn(2, 5, 16)
    for norm in (LayerNorm(16, 1e-6, elementwise_affine=True), RMSNorm(16)):
        with torch.no_grad():
            norm.weight.uniform_(0.5, 1.5)
        ref = norm(x)
        low = copy.deepcopy(norm).to(torch.bfloat16)
        out = low(x.to(torch.bfloat16))
        assert out.dtype == torch.bfloat16
        # inputs and weights rounded to bf16 (8 mantissa bits), the result rounded once more
        assert _rel(out, ref) < 1e-2


def test_bf16_parameters_predict_what_float32_predicts():
    """Measured (debug flavor, 2 blocks per stream, dim 64, three weight draws): relative L2
    error 0.007 for video, 0.009 for audio -- a few bf16 roundings (2^-9 relative each) per
    layer. Bound 3e-2: over 3x margin, while a wrong cast or a dropped path is an O(1) error."""
    model = _trained_like()
    args = _batch(model)
    with torch.no_grad():
        ref_v, ref_a = model(*args, **KW)
        low = copy.deepcopy(model).to(torch.bfloat16)
        assert all(p.dtype == torch.bfloat16 for p in low.parameters())
        out_v, out_a = low(*args, **KW)
    assert out_v.dtype == torch.bfloat16 and out_a.dtype == torch.bfloat16
    assert out_v.shape == ref_v.shape and out_a.shape == ref_a.shape
    assert _rel(out_v, ref_v) < 3e-2, _rel(out_v, ref_v)
    assert _rel(out_a, ref_a) < 3e-2, _rel(out_a, ref_a)


def test_autocast_training_matches_float32_training():
    """Forward and backward under ``torch.autocast("cpu", bfloat16)`` with float32 parameters
    (the trainer's mixed precision). Measured over three weight draws: loss relative
    difference <= 2e-4, cosine similarity of all gradients together >= 0.99999 and of each
    parameter's >= 0.999. Bounds 5e-3, 0.999 and 0.99 leave >= 10x margin on the distances
    while a dropped or wrongly cast path falls far outside them."""
    model = _trained_like().train()
    args = _batch(model)
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        targets = [torch.randn(o.shape, generator=gen) for o in model(*args, **KW)]

    def step(autocast: bool) -> tuple[float, dict[str, torch.Tensor]]:
        model.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            v, a = model(*args, **KW)
        if autocast:
            assert v.dtype == torch.bfloat16  # autocast did run the matmuls in bf16
        loss = sum(((o.float() - t) ** 2).mean() for o, t in zip((v, a), targets, strict=True))
        loss.backward()
        return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.grad is not None}

    loss32, g32 = step(False)
    loss16, g16 = step(True)
    assert set(g16) == set(g32) and len(g32) == len(list(model.parameters()))
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in g16.values())
    assert abs(loss16 - loss32) / loss32 < 5e-3, (loss16, loss32)
    flat32 = torch.cat([g.flatten() for g in g32.values()])
    flat16 = torch.cat([g16[n].flatten() for n in g32])
    assert torch.cosine_similarity(flat16, flat32, dim=0) > 0.999
    worst = min(torch.cosine_similarity(g16[n].flatten(), g.flatten(), dim=0).item()
                for n, g in g32.items() if g.norm() > 0)
    assert worst > 0.99, worst
