"""The video VAE: Wan2.2's high-compression causal 3D VAE (48 latent channels, stride 4 in time
and 16 in space), the video latent space of the release.

A clip of ``1 + 4k`` frames becomes ``1 + k`` latent frames (121 -> 31): the first frame is
encoded alone, then every group of four. Spatially the input is first folded 2x2 into 12
channels ("patchify"), then downsampled three times, so ``H x W`` becomes ``H/16 x W/16``.

We run the network as diffusers' ``AutoencoderKLWan`` in its Wan2.2 configuration
(:data:`WAN22_VAE_CONFIG`); :func:`from_wan_vae` renames the release checkpoint
``Wan2.2_VAE.pth`` (Wan's own module layout: ``encoder.downsamples.i.downsamples.j.residual.k``,
``middle.0/1/2``, ``head.0/2``, top-level ``conv1``/``conv2``) onto it.

Normalisation is the release's: ``encode`` returns ``(mu - LATENT_MEAN) / LATENT_STD`` of the
posterior mean (no sampling); ``decode`` undoes it and clamps the video to ``[-1, 1]``.
:meth:`VideoVAE.encode_image` is the release's identity-reference preprocessing: letterbox into
the video size with white bars (aspect kept, LANCZOS), then encode as a one-frame video.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError
from omni_core.weights import PretrainedComponent, safe_torch_load

__all__ = ["LATENT_MEAN", "LATENT_STD", "WAN22_VAE_CONFIG", "VideoVAE", "from_wan_vae",
           "letterbox"]

#: per-channel mean of the Wan2.2 VAE's posterior mean (release ``Wan2_2_VAE.__init__``)
LATENT_MEAN: tuple[float, ...] = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
#: per-channel standard deviation (the release stores ``1 / std`` as its scale)
LATENT_STD: tuple[float, ...] = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

#: ``AutoencoderKLWan`` arguments of the released Wan2.2 VAE (diffusers' conversion script)
WAN22_VAE_CONFIG: dict[str, Any] = {
    "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "dim_mult": [1, 2, 4, 4],
    "num_res_blocks": 2, "attn_scales": [], "temperal_downsample": [False, True, True],
    "dropout": 0.0, "is_residual": True, "in_channels": 12, "out_channels": 12,
    "patch_size": 2, "scale_factor_temporal": 4, "scale_factor_spatial": 16,
    "latents_mean": list(LATENT_MEAN), "latents_std": list(LATENT_STD),
}

#: a tiny twin for tests: z 8, spatial stride 2 * 2**2 = 8, temporal stride 4
DEBUG_VAE_CONFIG: dict[str, Any] = {
    **WAN22_VAE_CONFIG, "base_dim": 8, "decoder_base_dim": 8, "z_dim": 8,
    "dim_mult": [1, 2, 2], "temperal_downsample": [True, True], "scale_factor_spatial": 8,
    "latents_mean": [0.0] * 8, "latents_std": [1.0] * 8,
}

# ResidualBlock internals: Wan's nn.Sequential indices -> diffusers' named layers
_RESIDUAL = {"residual.0.gamma": "norm1.gamma", "residual.2.weight": "conv1.weight",
             "residual.2.bias": "conv1.bias", "residual.3.gamma": "norm2.gamma",
             "residual.6.weight": "conv2.weight", "residual.6.bias": "conv2.bias",
             "shortcut.weight": "conv_shortcut.weight", "shortcut.bias": "conv_shortcut.bias"}
_ATTENTION = ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias")
_RESAMPLE = ("resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias")
_PARAM = r"(weight|bias)"


def _rename(key: str) -> str | None:
    """The diffusers name of one Wan2.2 VAE key, or ``None`` if the key is unknown."""
    m = re.fullmatch(r"conv([12])\." + _PARAM, key)
    if m:
        return f"{'quant_conv' if m[1] == '1' else 'post_quant_conv'}.{m[2]}"
    m = re.fullmatch(r"(encoder|decoder)\.(.+)", key)
    if not m:
        return None
    side, rest = m[1], m[2]
    m = re.fullmatch(r"conv1\." + _PARAM, rest)
    if m:
        return f"{side}.conv_in.{m[1]}"
    m = re.fullmatch(r"head\.0\.gamma", rest)
    if m:
        return f"{side}.norm_out.gamma"
    m = re.fullmatch(r"head\.2\." + _PARAM, rest)
    if m:
        return f"{side}.conv_out.{m[1]}"
    m = re.fullmatch(r"middle\.([02])\.(.+)", rest)
    if m and m[2] in _RESIDUAL:
        return f"{side}.mid_block.resnets.{int(m[1]) // 2}.{_RESIDUAL[m[2]]}"
    m = re.fullmatch(r"middle\.1\.(.+)", rest)
    if m and m[1] in _ATTENTION:
        return f"{side}.mid_block.attentions.0.{m[1]}"
    wan, ours, sampler = (("downsamples", "down_blocks", "downsampler") if side == "encoder"
                          else ("upsamples", "up_blocks", "upsampler"))
    m = re.fullmatch(rf"{wan}\.(\d+)\.{wan}\.(\d+)\.(.+)", rest)
    if m:
        level, j, tail = m[1], m[2], m[3]
        if tail in _RESIDUAL:
            return f"{side}.{ours}.{level}.resnets.{j}.{_RESIDUAL[tail]}"
        if tail in _RESAMPLE:  # the level's last entry is its Resample; diffusers drops the index
            return f"{side}.{ours}.{level}.{sampler}.{tail}"
    return None


def from_wan_vae(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan2.2 VAE state dict (``Wan2.2_VAE.pth``, release ``WanVAE_``) -> ``AutoencoderKLWan``'s.
    Unknown keys are an error; values are passed through untouched."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        name = _rename(key)
        if name is None:
            raise OmniError(f"Wan2.2 VAE checkpoint: unexpected key {key!r}")
        if name in out:
            raise OmniError(f"Wan2.2 VAE checkpoint: two keys map to {name!r} ({key!r})")
        out[name] = value
    return out


def letterbox(img: np.ndarray, height: int, width: int) -> np.ndarray:
    """The release's reference-image fit: resize with LANCZOS so the image fits ``(height,
    width)`` with its aspect kept (the long side fills, the other is ``int``-truncated), then
    pad with white, centred (the odd pixel going right/bottom). ``uint8 (h, w, 3)`` in and
    out."""
    from PIL import Image, ImageOps

    arr = np.asarray(img)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise OmniError(f"letterbox wants a uint8 (h, w, 3) image, got {arr.dtype} "
                        f"{tuple(arr.shape)}")
    pil = Image.fromarray(arr, "RGB")
    ratio = pil.width / pil.height
    if ratio > width / height:
        new_w, new_h = width, int(width / ratio)
    else:
        new_w, new_h = int(height * ratio), height
    pil = pil.resize((new_w, new_h), Image.Resampling.LANCZOS)
    dw, dh = width - new_w, height - new_h
    pil = ImageOps.expand(pil, (dw // 2, dh // 2, dw - dw // 2, dh - dh // 2),
                          fill=(255, 255, 255))
    return np.array(pil)


class VideoVAE(PretrainedComponent, nn.Module):
    """``encode(video (B, 3, T, H, W) in [-1, 1]) -> (B, z, F, H/s, W/s)`` normalised latents,
    ``decode`` back; ``T = 1 + 4k`` frames give ``F = 1 + k``."""

    weights_entry: ClassVar[str | None] = "wan2.2-vae"
    weights_files: ClassVar[tuple[str, ...]] = ("Wan2.2_VAE.pth",)

    def __init__(self, vae: nn.Module) -> None:
        nn.Module.__init__(self)
        self.vae = vae.eval().requires_grad_(False)
        cfg = vae.config
        z = int(cfg.z_dim)
        self.register_buffer("latent_mean", torch.tensor(cfg.latents_mean).view(1, z, 1, 1, 1),
                             persistent=False)
        self.register_buffer("latent_std", torch.tensor(cfg.latents_std).view(1, z, 1, 1, 1),
                             persistent=False)
        self._stride = (int(cfg.scale_factor_temporal),
                        int(cfg.patch_size or 1) * 2 ** (len(cfg.dim_mult) - 1))

    @property
    def z_dim(self) -> int:
        return int(self.vae.config.z_dim)

    @property
    def stride(self) -> tuple[int, int]:
        """``(temporal, spatial)`` compression: ``(4, 16)`` for the released VAE."""
        return self._stride

    def _param(self) -> torch.Tensor:
        return next(self.vae.parameters())

    @torch.no_grad()
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``(B, 3, T, H, W)`` in ``[-1, 1]`` -> ``(B, z, 1 + (T-1)/st, H/ss, W/ss)`` float32
        normalised posterior means."""
        st, ss = self.stride
        if video.dim() != 5 or video.shape[1] != 3:
            raise OmniError(f"encode wants (B, 3, T, H, W), got {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if (t - 1) % st or h % ss or w % ss:
            raise OmniError(f"encode wants 1 + {st}k frames and sides divisible by {ss}, got "
                            f"T={t}, H={h}, W={w}")
        p = self._param()
        mu = self.vae.encode(video.to(p.device, p.dtype)).latent_dist.mode()
        mean, std = self.latent_mean.to(mu.device), self.latent_std.to(mu.device)
        return ((mu.float() - mean) / std).float()

    @torch.no_grad()
    def encode_image(self, img: np.ndarray, height: int, width: int) -> torch.Tensor:
        """The release's identity reference: :func:`letterbox` into ``(height, width)``, scale
        to ``[-1, 1]``, encode as a one-frame video -> ``(z, 1, height/ss, width/ss)``."""
        boxed = letterbox(img, height, width)
        x = torch.from_numpy(boxed).float().div(255.0).mul(2.0).sub(1.0)
        return self.encode(x.permute(2, 0, 1)[None, :, None])[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``(B, z, F, h, w)`` normalised latents -> ``(B, 3, 1 + st(F-1), h*ss, w*ss)`` float32
        video clamped to ``[-1, 1]``."""
        if latents.dim() != 5 or latents.shape[1] != self.z_dim:
            raise OmniError(f"decode wants (B, {self.z_dim}, F, h, w), got "
                            f"{tuple(latents.shape)}")
        p = self._param()
        z = latents.to(p.device, torch.float32)
        z = z * self.latent_std.to(z.device) + self.latent_mean.to(z.device)
        out = self.vae.decode(z.to(p.dtype)).sample
        return out.float().clamp(-1.0, 1.0)

    # constructors ----------------------------------------------------------------------------
    @staticmethod
    def _autoencoder(config: Mapping[str, Any]) -> nn.Module:
        from diffusers import AutoencoderKLWan

        return AutoencoderKLWan(**config)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> VideoVAE:
        with torch.device("meta"):
            vae = cls._autoencoder(WAN22_VAE_CONFIG)
        sd = safe_torch_load(paths["Wan2.2_VAE.pth"], mmap=True)
        vae.load_state_dict(from_wan_vae(sd), strict=True, assign=True)
        return cls(vae).to(device)

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> VideoVAE:
        config = {**DEBUG_VAE_CONFIG, **kw.pop("config", {})}
        if kw:
            raise OmniError(f"VideoVAE.debug: unknown arguments {sorted(kw)}")
        return cls(cls._autoencoder(config)).to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": dict(WAN22_VAE_CONFIG)}
