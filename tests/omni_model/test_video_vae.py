"""The Wan2.2 video VAE wrapper: debug shapes and determinism, the reference-image letterbox,
the release checkpoint layout renamed onto diffusers' AutoencoderKLWan on the meta device,
loading a checkpoint, the normalisation constants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omni_core.errors import OmniError, WeightsError
from omni_model import video_vae
from omni_model.video_vae import (
    DEBUG_VAE_CONFIG,
    LATENT_MEAN,
    LATENT_STD,
    WAN22_VAE_CONFIG,
    VideoVAE,
    from_wan_vae,
    letterbox,
)


@pytest.fixture(scope="module")
def vae() -> VideoVAE:
    return VideoVAE.debug(seed=0)


def _clip(t: int = 9, hw: int = 64, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(1, 3, t, hw, hw, generator=gen) * 2 - 1


def wan_layout(dim: int = 160, dec_dim: int = 256, z: int = 48,
               dim_mult: tuple[int, ...] = (1, 2, 4, 4), num_res_blocks: int = 2,
               temporal: tuple[bool, ...] = (False, True, True)) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the release's ``WanVAE_`` (``dreamid_omni/modules/vae2_2.py``):
    ``ResidualBlock.residual`` = [RMS_norm, SiLU, CausalConv3d, RMS_norm, SiLU, Dropout,
    CausalConv3d] (+ 1x1x1 ``shortcut`` when widths differ), ``AttentionBlock`` = RMS_norm
    (image-shaped gamma), 1x1 ``to_qkv`` and ``proj``, ``Resample`` = ``resample.1`` 3x3 Conv2d
    (+ ``time_conv`` (3,1,1) for the temporal levels; 2x channels when upsampling), the
    encoder's/decoder's ``middle`` = [res, attn, res] and ``head`` = [RMS_norm, SiLU, conv];
    12 = 3 colours x 2x2 patch."""
    out: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: tuple[int, ...]) -> None:
        out[f"{name}.weight"] = (cout, cin, *k)
        out[f"{name}.bias"] = (cout,)

    def res(p: str, cin: int, cout: int) -> None:
        out[f"{p}.residual.0.gamma"] = (cin, 1, 1, 1)
        conv(f"{p}.residual.2", cin, cout, (3, 3, 3))
        out[f"{p}.residual.3.gamma"] = (cout, 1, 1, 1)
        conv(f"{p}.residual.6", cout, cout, (3, 3, 3))
        if cin != cout:
            conv(f"{p}.shortcut", cin, cout, (1, 1, 1))

    def middle(p: str, c: int) -> None:
        res(f"{p}.middle.0", c, c)
        out[f"{p}.middle.1.norm.gamma"] = (c, 1, 1)
        conv(f"{p}.middle.1.to_qkv", c, 3 * c, (1, 1))
        conv(f"{p}.middle.1.proj", c, c, (1, 1))
        res(f"{p}.middle.2", c, c)

    last = len(dim_mult) - 1
    dims = [dim * u for u in (1, *dim_mult)]
    conv("encoder.conv1", 12, dims[0], (3, 3, 3))
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        for j in range(num_res_blocks):
            res(f"encoder.downsamples.{i}.downsamples.{j}", cin if j == 0 else cout, cout)
        if i != last:
            p = f"encoder.downsamples.{i}.downsamples.{num_res_blocks}"
            conv(f"{p}.resample.1", cout, cout, (3, 3))
            if temporal[i]:
                conv(f"{p}.time_conv", cout, cout, (3, 1, 1))
    middle("encoder", dims[-1])
    out["encoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("encoder.head.2", dims[-1], 2 * z, (3, 3, 3))
    conv("conv1", 2 * z, 2 * z, (1, 1, 1))
    conv("conv2", z, z, (1, 1, 1))
    dims = [dec_dim * u for u in (dim_mult[-1], *dim_mult[::-1])]
    up_temporal = temporal[::-1]
    conv("decoder.conv1", z, dims[0], (3, 3, 3))
    middle("decoder", dims[0])
    for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:], strict=True)):
        for j in range(num_res_blocks + 1):
            res(f"decoder.upsamples.{i}.upsamples.{j}", cin if j == 0 else cout, cout)
        if i != last:
            p = f"decoder.upsamples.{i}.upsamples.{num_res_blocks + 1}"
            conv(f"{p}.resample.1", cout, cout, (3, 3))
            if up_temporal[i]:
                conv(f"{p}.time_conv", cout, 2 * cout, (3, 1, 1))
    out["decoder.head.0.gamma"] = (dims[-1], 1, 1, 1)
    conv("decoder.head.2", dims[-1], 12, (3, 3, 3))
    return out


DEBUG_LAYOUT = {"dim": 8, "dec_dim": 8, "z": 8, "dim_mult": (1, 2, 2), "temporal": (True, True)}


# ------------------------------------------------------------------------------------------------
# debug model


def test_debug_encode_decode_shapes(vae: VideoVAE) -> None:
    assert vae.z_dim == 8 and vae.stride == (4, 8) and vae.variant == "debug"
    z = vae.encode(_clip())
    assert z.shape == (1, 8, 3, 8, 8) and z.dtype == torch.float32
    assert torch.isfinite(z).all()
    x = vae.decode(z)
    assert x.shape == (1, 3, 9, 64, 64)
    assert x.min() >= -1 and x.max() <= 1


def test_encode_rejects_bad_sizes(vae: VideoVAE) -> None:
    with pytest.raises(OmniError, match="1 \\+ 4k"):
        vae.encode(_clip(t=8))
    with pytest.raises(OmniError, match="divisible by 8"):
        vae.encode(_clip(hw=60))
    with pytest.raises(OmniError, match="decode wants"):
        vae.decode(torch.zeros(1, 4, 1, 8, 8))


def test_debug_deterministic_and_rng_untouched(vae: VideoVAE) -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    again = VideoVAE.debug(seed=0)
    assert torch.equal(torch.random.get_rng_state(), before)
    other = VideoVAE.debug(seed=1)
    sd, sd2, sd3 = vae.state_dict(), again.state_dict(), other.state_dict()
    assert all(torch.equal(sd[k], sd2[k]) for k in sd)
    assert any(not torch.equal(sd[k], sd3[k]) for k in sd)
    x = _clip(t=5, hw=32)
    assert torch.equal(vae.encode(x), again.encode(x))


def test_debug_normalisation_is_identity(vae: VideoVAE) -> None:
    assert torch.equal(vae.latent_mean, torch.zeros(1, 8, 1, 1, 1))
    assert torch.equal(vae.latent_std, torch.ones(1, 8, 1, 1, 1))


# ------------------------------------------------------------------------------------------------
# reference image


def test_letterbox_wide_image_gets_white_bars_top_and_bottom() -> None:
    img = np.zeros((20, 40, 3), np.uint8)  # aspect 2:1 into a square
    out = letterbox(img, 64, 64)
    assert out.shape == (64, 64, 3) and out.dtype == np.uint8
    assert (out[:16] == 255).all() and (out[48:] == 255).all()  # 64x32 image, 16 rows each side
    assert (out[20:44] < 10).all()  # the black content, aspect kept: full width


def test_letterbox_tall_image_odd_padding_goes_right() -> None:
    img = np.full((90, 30, 3), 7, np.uint8)  # aspect 1:3 into 48 high x 64 wide -> 16 x 48
    out = letterbox(img, 48, 64)
    assert out.shape == (48, 64, 3)
    assert (out[:, :24] == 255).all() and (out[:, 40:] == 255).all()
    assert (out[:, 24:40] == 7).all()
    odd = letterbox(np.zeros((48, 17, 3), np.uint8), 48, 64)  # 17 wide: 47 of padding
    assert (odd[:, :23] == 255).all() and (odd[:, 23:40] == 0).all()
    assert (odd[:, 40:] == 255).all()


def test_letterbox_rejects_non_uint8() -> None:
    with pytest.raises(OmniError, match="uint8"):
        letterbox(np.zeros((8, 8, 3), np.float32), 16, 16)


def test_encode_image_shape_and_equivalence(vae: VideoVAE) -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (30, 50, 3), dtype=np.uint8)
    z = vae.encode_image(img, 32, 64)
    assert z.shape == (8, 1, 4, 8)
    boxed = torch.from_numpy(letterbox(img, 32, 64)).float() / 127.5 - 1
    ref = vae.encode(boxed.permute(2, 0, 1)[None, :, None])[0]
    torch.testing.assert_close(z, ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------------------------------------
# release checkpoint layout


def _meta_state(layout: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    return {k: torch.empty(s, device="meta") for k, s in layout.items()}


def test_key_adapter_real_size_on_meta() -> None:
    from diffusers import AutoencoderKLWan

    with torch.device("meta"):
        ours = AutoencoderKLWan(**WAN22_VAE_CONFIG)
    own = ours.state_dict()
    layout = wan_layout()
    assert len(layout) == len(own) == 196
    mapped = from_wan_vae(_meta_state(layout))
    missing, extra = set(own) - set(mapped), set(mapped) - set(own)
    assert not missing and not extra, (sorted(missing)[:4], sorted(extra)[:4])
    bad = [k for k in own if tuple(own[k].shape) != tuple(mapped[k].shape)]
    assert not bad, bad[:4]
    ours.load_state_dict(mapped, strict=True, assign=True)
    wrapped = VideoVAE(ours)
    assert wrapped.z_dim == 48 and wrapped.stride == (4, 16)
    assert sum(v.numel() for v in own.values()) == 704_688_668


@pytest.mark.parametrize("bad", ["model.encoder.conv1.weight", "encoder.middle.3.gamma",
                                 "decoder.upsamples.0.upsamples.0.residual.1.gamma",
                                 "encoder.downsamples.0.downsamples.2.resample.0.weight"])
def test_key_adapter_rejects_unknown_key(bad: str) -> None:
    sd = _meta_state(wan_layout(**DEBUG_LAYOUT))
    sd[bad] = torch.empty(1, device="meta")
    with pytest.raises(OmniError, match="unexpected key"):
        from_wan_vae(sd)


def test_load_reads_a_release_layout_checkpoint(tmp_path, monkeypatch, vae: VideoVAE) -> None:
    """``_load`` on a debug-size checkpoint in the release layout (the real config patched to
    the debug one): every tensor lands where the adapter says."""
    gen = torch.Generator().manual_seed(5)
    sd = {k: torch.randn(s, generator=gen) for k, s in wan_layout(**DEBUG_LAYOUT).items()}
    path = tmp_path / "Wan2.2_VAE.pth"
    torch.save(sd, path)
    monkeypatch.setattr(video_vae, "WAN22_VAE_CONFIG", DEBUG_VAE_CONFIG)
    loaded = VideoVAE._load({"Wan2.2_VAE.pth": path}, "cpu")
    own = loaded.vae.state_dict()
    mapped = from_wan_vae(sd)
    assert set(own) == set(mapped) == set(vae.vae.state_dict())
    assert all(torch.equal(own[k], mapped[k]) for k in own)
    assert loaded.latent_mean.device.type == "cpu"


def test_from_pretrained_missing_file_is_one_clear_error(tmp_path) -> None:
    with pytest.raises(WeightsError, match="Wan2.2_VAE.pth"):
        VideoVAE.from_pretrained(root=tmp_path)


# ------------------------------------------------------------------------------------------------
# normalisation


def test_normalisation_constants() -> None:
    assert len(LATENT_MEAN) == len(LATENT_STD) == 48
    assert LATENT_MEAN[0] == -0.2289 and LATENT_STD[0] == 0.4765
    assert LATENT_MEAN[19] == 0.5109 and LATENT_STD[39] == 1.6887
    assert LATENT_MEAN[-1] == -0.0667 and LATENT_STD[-1] == 0.7744
    assert min(LATENT_STD) > 0
    assert WAN22_VAE_CONFIG["latents_mean"] == list(LATENT_MEAN)
    assert WAN22_VAE_CONFIG["latents_std"] == list(LATENT_STD)


def test_normalisation_applied_round_trip(vae: VideoVAE) -> None:
    """``encode`` divides by std after subtracting the mean and ``decode`` undoes it: with a
    non-trivial mean/std the decoded clip of ``encode(x)`` is unchanged."""
    x = _clip(t=1, hw=32)
    plain_z, plain_x = vae.encode(x), vae.decode(vae.encode(x))
    gen = torch.Generator().manual_seed(9)
    mean, std = torch.randn(1, 8, 1, 1, 1, generator=gen), torch.rand(1, 8, 1, 1, 1) + 0.5
    scaled = VideoVAE(vae.vae)
    scaled.latent_mean, scaled.latent_std = mean, std
    z = scaled.encode(x)
    torch.testing.assert_close(z, (plain_z - mean) / std, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(scaled.decode(z), plain_x, atol=1e-5, rtol=1e-5)
