"""Rotary position embeddings and Syn-RoPE, the signal-level identity binding.

A head of dimension ``d`` has ``d/2`` rotary pairs. Video splits them into three bands --
time, height, width -- as Wan does (``d = 128``: 22 / 21 / 21 pairs; the height and width
bands get ``d // 6`` pairs each, time the rest); each band has its own frequency ladder
``theta^(-2j / band_dim)``. Audio uses one band spanning the same pairs as the video's time
band (the other pairs are not rotated), at angles scaled by ``F / A`` (``F`` video latent
frames, ``A`` audio latents per clip; 31/157 for 5 s): audio latent ``i`` rotates as video
time ``i * F / A``, so a word and the frame showing it rotate alike in the fusion attention
between the streams.

Syn-RoPE places the clip's target at times ``0 .. L-1`` and reference ``k`` (0-based) in a
reserved slot starting at ``M (k + 1)`` (``M`` = 150 by default, far beyond any clip), in both
streams: identity image ``k`` is one latent frame at video time ``M (k + 1)``; voice ``k``'s
latents start at audio latent ``int(M / scale) (k + 1)``, the same video time up to the
rounding the release makes. The same person is at the same place in both modalities;
different people are ``M`` apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def band_pairs(head_dim: int) -> tuple[int, int, int]:
    """Rotary pairs of the (time, height, width) bands of a head of ``head_dim``."""
    if head_dim % 2:
        raise ValueError(f"head dim must be even, got {head_dim}")
    hw = head_dim // 6
    return head_dim // 2 - 2 * hw, hw, hw


def band_frequencies(pairs: int, theta: float = 10000.0) -> torch.Tensor:
    """Angular frequencies of one band of ``pairs`` rotary pairs (float64)."""
    dim = 2 * pairs
    return theta ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)


@dataclass(frozen=True)
class RopeSpec:
    """The rotary layout of one model: head dim and theta. :meth:`video_angles` and
    :meth:`audio_angles` map float positions to per-pair angles ``(L, head_dim // 2)``."""

    head_dim: int
    theta: float = 10000.0

    @property
    def bands(self) -> tuple[int, int, int]:
        return band_pairs(self.head_dim)

    def video_angles(self, pos: torch.Tensor) -> torch.Tensor:
        """``pos``: ``(L, 3)`` (time, height, width) -> angles ``(L, head_dim // 2)``."""
        parts = [pos[:, i:i + 1].double() * band_frequencies(n, self.theta).to(pos.device)
                 for i, n in enumerate(self.bands)]
        return torch.cat(parts, dim=1)

    def audio_angles(self, pos: torch.Tensor, scale: float) -> torch.Tensor:
        """``pos``: ``(L,)`` audio-latent indices -> angles ``(L, head_dim // 2)``: the pairs of
        the video's time band rotate at ``pos * scale`` video frames, the pairs of the height
        and width bands stay still."""
        t, h, w = self.bands
        ang = (pos[:, None].double() * scale) * band_frequencies(t, self.theta).to(pos.device)
        return torch.cat([ang, ang.new_zeros(len(pos), h + w)], dim=1)


def rotation(angles: torch.Tensor) -> torch.Tensor:
    """Complex unit rotations ``exp(i angle)`` (complex64) for :func:`apply_rope`."""
    return torch.polar(torch.ones_like(angles), angles).to(torch.complex64)


def apply_rope(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` ``(B, L, heads, head_dim)`` by ``rot`` ``(L, head_dim // 2)`` (or
    ``(B, L, head_dim // 2)``): adjacent channels ``(2j, 2j+1)`` form pair ``j``. Computed
    in float32 and returned in ``x``'s dtype."""
    b, n, h, d = x.shape
    xc = torch.view_as_complex(x.float().reshape(b, n, h, d // 2, 2))
    r = rot[:, None, :] if rot.dim() == 2 else rot[:, :, None, :]
    return torch.view_as_real(xc * r).reshape(b, n, h, d).to(x.dtype)


# --------------------------------------------------------------------------------------------
# Syn-RoPE positions


def video_positions(frames: int, height: int, width: int, n_refs: int = 0,
                    slot: float = 150.0) -> torch.Tensor:
    """Positions ``(L, 3)`` of a video token sequence: ``frames`` target latent frames of
    ``height x width`` patches at times ``0 .. frames-1``, then ``n_refs`` reference frames of
    the same grid, reference ``k`` at time ``slot * (k + 1)``."""
    times = torch.cat([torch.arange(frames, dtype=torch.float64),
                       slot * torch.arange(1, n_refs + 1, dtype=torch.float64)])
    t, y, x = torch.meshgrid(times, torch.arange(height, dtype=torch.float64),
                             torch.arange(width, dtype=torch.float64), indexing="ij")
    return torch.stack([t.reshape(-1), y.reshape(-1), x.reshape(-1)], dim=1)


def audio_positions(length: int, ref_lengths: tuple[int, ...] = (), *,
                    offset: int) -> torch.Tensor:
    """Positions ``(L,)`` in audio latents of an audio sequence: ``length`` target latents at
    ``0 .. length-1``, then voice reference ``k`` of ``ref_lengths[k]`` latents at
    ``offset * (k + 1) + 0, 1, ...``. With ``offset = int(M / scale)`` (760 for M = 150 and the
    release's scale) voice ``k`` starts at video time ~``M (k + 1)``, the slot of image ``k``."""
    parts = [torch.arange(length, dtype=torch.float64)]
    for k, n in enumerate(ref_lengths):
        parts.append(offset * (k + 1) + torch.arange(n, dtype=torch.float64))
    return torch.cat(parts)
