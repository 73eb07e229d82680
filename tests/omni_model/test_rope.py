"""Syn-RoPE: band layout, relative-position invariance, and the reference slots."""

from __future__ import annotations

import pytest
import torch

from omni_model.model import ModelArgs
from omni_model.rope import (
    RopeSpec,
    apply_rope,
    audio_positions,
    band_pairs,
    rotation,
    video_positions,
)

RELEASE = ModelArgs()


def test_band_split_of_the_release_head():
    assert band_pairs(128) == (22, 21, 21)
    assert sum(band_pairs(64)) == 32
    with pytest.raises(ValueError):
        band_pairs(63)


def _logits(spec: RopeSpec, q: torch.Tensor, k: torch.Tensor, pq: torch.Tensor,
            pk: torch.Tensor) -> torch.Tensor:
    rq = apply_rope(q, rotation(spec.video_angles(pq)))
    rk = apply_rope(k, rotation(spec.video_angles(pk)))
    return torch.einsum("bqhd,bkhd->bhqk", rq, rk)


def test_logit_between_a_target_token_and_an_identity_depends_only_on_the_offset():
    spec = RELEASE.rope
    g = torch.Generator().manual_seed(0)
    q = torch.randn(1, 1, 2, spec.head_dim, generator=g, dtype=torch.float64).float()
    k = torch.randn(1, 4, 2, spec.head_dim, generator=g, dtype=torch.float64).float()
    pos = video_positions(31, 2, 2, n_refs=2, slot=150.0)
    target = pos[5 * 4 + 3: 5 * 4 + 4]  # frame 5, row 1, column 1
    ident = pos[31 * 4 + 4:]  # the 4 tokens of identity 1 (time 300)
    assert torch.all(ident[:, 0] == 300.0)
    base = _logits(spec, q, k, target, ident)
    for shift in ((7.0, 0.0, 0.0), (0.0, 3.0, -2.0), (-40.0, 1.0, 5.0)):
        d = torch.tensor(shift, dtype=torch.float64)
        moved = _logits(spec, q, k, target + d, ident + d)
        assert torch.allclose(base, moved, atol=1e-4)
    # but moving only the identity changes it: position is information
    assert not torch.allclose(base, _logits(spec, q, k, target, ident + torch.tensor(
        [150.0, 0.0, 0.0], dtype=torch.float64)), atol=1e-2)


def test_image_k_and_voice_k_share_a_slot_and_identities_are_m_apart():
    a = RELEASE
    assert a.audio_ref_offset == 760  # int(150 / 0.197265625), as the release computes it
    vpos = video_positions(31, 1, 1, n_refs=3, slot=a.ref_slot)
    image_times = vpos[31:, 0]
    assert image_times.tolist() == [150.0, 300.0, 450.0]
    apos = audio_positions(157, (31, 31, 31), offset=a.audio_ref_offset)
    assert apos[:157].tolist() == list(range(157))
    voice_starts = apos[157::31] * a.audio_rope_scale  # in video frames
    for k in range(3):
        # voice k begins where image k sits, within one video latent frame
        assert abs(voice_starts[k].item() - image_times[k].item()) < 1.0
        # and lies far from every other identity's image
        for j in range(3):
            if j != k:
                assert abs(voice_starts[k].item() - image_times[j].item()) >= 149.0
    assert torch.all(image_times.diff() == a.ref_slot)
    # target audio lies on the target's time axis: latent 156 at video time ~30.8 < 31
    assert apos[156].item() * a.audio_rope_scale < 31


def test_audio_rotates_the_time_band_only_and_at_the_video_rate():
    spec = RELEASE.rope
    scale = RELEASE.audio_rope_scale
    ang = spec.audio_angles(torch.tensor([0.0, 10.0, 157.0]), scale)
    assert ang.shape == (3, 64)
    assert torch.all(ang[:, 22:] == 0) and torch.all(ang[1, :22] != 0)
    # audio latent i rotates exactly like video time i * scale in the time band
    v = spec.video_angles(torch.tensor([[10.0 * scale, 0.0, 0.0]], dtype=torch.float64))
    assert torch.allclose(ang[1, :22], v[0, :22])
    x = torch.randn(1, 3, 2, 128)
    y = apply_rope(x, rotation(ang))
    assert torch.equal(y[..., 44:], x[..., 44:])  # channels past the time band untouched
    assert torch.allclose(y.norm(dim=-1), x.norm(dim=-1), atol=1e-5)  # rotations
