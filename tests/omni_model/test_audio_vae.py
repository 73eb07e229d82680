"""MMAudio 16 kHz audio VAE + BigVGAN vocoder: latent rate, checkpoint layout, mel front end."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from omni_core.errors import WeightsError
from omni_core.weights import Registry, load_registry
from omni_model.audio_vae import (
    DATA_MEAN_80D,
    DATA_STD_80D,
    AudioVAE,
    AudioVAEConfig,
    kaiser_sinc_filter,
    mel_frames,
    num_latents,
    slaney_mel_filterbank,
)

SR = 16_000


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """The debug vocoder runs hundreds of tiny ops; on a busy 2-core box intra-op threads make
    each one wait for a descheduled worker (seconds instead of ~0.1 s). One thread is fast."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model() -> AudioVAE:
    return AudioVAE.debug(seed=0)


def _wav(n: int, batch: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    tone = 0.3 * torch.sin(2 * math.pi * 440.0 * t)
    return (tone + 0.05 * torch.randn(batch, n, generator=g)).float()


# --------------------------------------------------------------------------------------------
# shapes and rate


def test_constants(model):
    assert model.sample_rate == 16_000
    assert model.latent_channels == 20
    assert model.samples_per_latent == 512
    assert len(DATA_MEAN_80D) == len(DATA_STD_80D) == 80
    assert model.vae.data_mean.shape == (1, 80, 1)


@pytest.mark.parametrize(("samples", "frames", "latents"),
                         [(16_000, 62, 31), (80_640, 315, 157), (80_384, 314, 157)])
def test_latent_rate(model, samples, frames, latents):
    assert mel_frames(samples) == frames
    assert num_latents(samples) == latents == AudioVAE.num_latents(samples)
    wav = _wav(samples, batch=2)
    mel = model.wav_to_mel(wav)
    assert mel.shape == (2, 80, frames)
    z = model.encode(wav)
    assert z.shape == (2, latents, 20) and z.dtype == torch.float32
    assert torch.isfinite(z).all()


def test_decode_and_to_wave(model):
    z = model.encode(_wav(80_640))
    assert z.shape == (1, 157, 20)
    mel = model.decode(z)
    assert mel.shape == (1, 80, 314)
    wav = model.to_wave(z)
    assert wav.shape == (1, 157 * 512) == (1, 80_384)
    assert torch.isfinite(wav).all() and wav.abs().max() <= 1.0
    assert wav.std() > 0


def test_bad_shapes(model):
    with pytest.raises(ValueError):
        model.encode(torch.zeros(16_000))
    with pytest.raises(ValueError):
        model.decode(torch.zeros(1, 20, 31))  # channel-first is refused


def test_batch_items_are_independent(model):
    wav = _wav(16_000, batch=3, seed=4)
    both = model.encode(wav)
    one = model.encode(wav[1:2])
    torch.testing.assert_close(both[1:2], one, atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# debug flavor


def test_debug_is_seeded_and_fast():
    t0 = time.perf_counter()
    a = AudioVAE.debug(seed=3)
    assert time.perf_counter() - t0 < 2.0
    b = AudioVAE.for_weights("debug", seed=3)
    c = AudioVAE.debug(seed=4)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    wav = _wav(16_000)
    torch.testing.assert_close(a.encode(wav), b.encode(wav), rtol=0, atol=0)
    assert a.is_debug and a.variant == "debug" and "not meaningful" in a.describe()


# --------------------------------------------------------------------------------------------
# the upstream checkpoint layout (real size, on the meta device)

# Written out from MMAudio's VAE_16k (data_dim 80, embed_dim 20, hidden 384, ch_mult (1, 2, 4),
# 2 res blocks per level, +1 in the decoder, attention only in the middle blocks, one
# down/upsample) and BigVGAN v1 (bigvgan_vocoder.yml: 1536 channels, rates 4 4 2 2 2 2,
# AMPBlock1 kernels 3 7 11, snakebeta) with torch weight_norm's weight_g / weight_v keys.
VAE_KEYS = 57
VAE_NUMEL = 171_657_378
VAE_SHAPES = {
    "data_mean": (1, 80, 1),
    "data_std": (1, 80, 1),
    "encoder.conv_in.weight": (384, 80, 3),
    "encoder.down.0.block.0.conv1.weight": (384, 384, 3),
    "encoder.down.0.downsample.conv1.weight": (384, 384, 1),
    "encoder.down.0.downsample.conv2.weight": (384, 384, 1),
    "encoder.down.1.block.0.nin_shortcut.weight": (768, 384, 1),
    "encoder.down.2.block.1.conv2.weight": (1536, 1536, 3),
    "encoder.mid.attn_1.qkv.weight": (4608, 1536, 1),
    "encoder.mid.attn_1.proj_out.weight": (1536, 1536, 1),
    "encoder.conv_out.weight": (40, 1536, 3),
    "encoder.learnable_gain": (),
    "decoder.conv_in.weight": (1536, 20, 3),
    "decoder.mid.block_2.conv1.weight": (1536, 1536, 3),
    "decoder.up.2.block.2.conv2.weight": (1536, 1536, 3),
    "decoder.up.1.block.0.nin_shortcut.weight": (768, 1536, 1),
    "decoder.up.1.upsample.conv.weight": (768, 768, 3),
    "decoder.up.0.block.0.nin_shortcut.weight": (384, 768, 1),
    "decoder.conv_out.weight": (80, 384, 3),
    "decoder.learnable_gain": (),
}
VOC_KEYS = 784  # conv_pre 3 + ups 6 x 3 + resblocks 18 x (6 convs x 3 + 6 activations x 4)
#                 + activation_post 4 + conv_post 3
VOC_NUMEL = 112_233_866
VOC_SHAPES = {
    "conv_pre.weight_g": (1536, 1, 1),
    "conv_pre.weight_v": (1536, 80, 7),
    "conv_pre.bias": (1536,),
    "ups.0.0.weight_g": (1536, 1, 1),
    "ups.0.0.weight_v": (1536, 768, 8),
    "ups.5.0.weight_v": (48, 24, 4),
    "resblocks.0.convs1.0.weight_v": (768, 768, 3),
    "resblocks.2.convs1.1.weight_v": (768, 768, 11),
    "resblocks.17.convs2.2.weight_v": (24, 24, 11),
    "resblocks.0.activations.5.act.alpha": (768,),
    "resblocks.0.activations.5.act.beta": (768,),
    "resblocks.0.activations.0.upsample.filter": (1, 1, 12),
    "resblocks.0.activations.0.downsample.lowpass.filter": (1, 1, 12),
    "activation_post.act.beta": (24,),
    "activation_post.upsample.filter": (1, 1, 12),
    "conv_post.weight_v": (1, 24, 7),
    "conv_post.bias": (1,),
}


@pytest.fixture(scope="module")
def meta_model() -> AudioVAE:
    with torch.device("meta"):
        return AudioVAE(AudioVAEConfig())


def test_real_size_vae_layout(meta_model):
    sd = meta_model.vae.state_dict()
    assert len(sd) == VAE_KEYS
    assert sum(v.numel() for v in sd.values()) == VAE_NUMEL
    for key, shape in VAE_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(".attn." in k and k.startswith(("encoder.down", "decoder.up")) for k in sd)
    assert not any(k.startswith("decoder.up.0.upsample") for k in sd)
    # the mel front end is computed, never stored
    assert not any(k.startswith("mel.") for k in meta_model.state_dict())


def test_real_size_vocoder_layout(meta_model):
    sd = meta_model.vocoder.state_dict()
    assert len(sd) == VOC_KEYS
    assert sum(v.numel() for v in sd.values()) == VOC_NUMEL
    for key, shape in VOC_SHAPES.items():
        assert tuple(sd[key].shape) == shape, key
    assert not any(k.endswith(".weight") for k in sd)  # only weight-norm g / v


def test_layout_fits_the_registered_file_sizes():
    """fp32 tensors + a little zip/pickle overhead: the sizes in the manifest agree."""
    entry = load_registry().get(AudioVAE.weights_entry)
    for path, numel in (("ext_weights/v1-16.pth", VAE_NUMEL),
                        ("ext_weights/best_netG.pt", VOC_NUMEL)):
        size = entry.file(path).size
        assert size is not None
        assert 0 < size - 4 * numel < 1_000_000, path


def test_random_flavor_uses_the_real_size():
    assert AudioVAE._real_size()["config"] == AudioVAEConfig()


# --------------------------------------------------------------------------------------------
# save -> load through the upstream file layout


def _registry() -> Registry:
    files = [{"path": p, "url": f"https://example.invalid/{p}", "sha256": None, "size": None}
             for p in AudioVAE.weights_files]
    return Registry.from_data({"version": 1, "entries": [{
        "name": AudioVAE.weights_entry, "description": "test", "homepage": "https://x.invalid",
        "license": "MIT", "used_by": [], "gated": False, "files": files}]})


def _save_upstream_layout(model: AudioVAE, root, parametrized: bool = False) -> None:
    folder = root / AudioVAE.weights_entry / "ext_weights"
    folder.mkdir(parents=True)
    torch.save(model.vae.state_dict(), folder / "v1-16.pth")
    gen = model.vocoder.state_dict()
    if parametrized:  # torch.nn.utils.parametrizations.weight_norm spelling
        gen = {k.replace(".weight_g", ".parametrizations.weight.original0")
                .replace(".weight_v", ".parametrizations.weight.original1"): v
               for k, v in gen.items()}
    torch.save({"generator": gen, "steps": 1}, folder / "best_netG.pt")


@pytest.mark.parametrize("parametrized", [False, True])
def test_save_load_roundtrip(model, tmp_path, parametrized):
    _save_upstream_layout(model, tmp_path, parametrized)
    loaded = AudioVAE.from_pretrained(tmp_path, registry=_registry(),
                                      config=AudioVAEConfig.tiny())
    assert loaded.variant == "pretrained" and not loaded.is_debug
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not any(t.is_meta for t in list(loaded.parameters()) + list(loaded.buffers()))
    wav = _wav(16_000)
    torch.testing.assert_close(loaded.encode(wav), model.encode(wav), rtol=0, atol=0)
    z = model.encode(wav)
    torch.testing.assert_close(loaded.to_wave(z), model.to_wave(z), rtol=0, atol=0)


def test_load_refuses_a_wrong_layout(model, tmp_path):
    _save_upstream_layout(model, tmp_path)
    with pytest.raises(WeightsError, match="does not fit"):  # tiny files, real-size config
        AudioVAE.from_pretrained(tmp_path, registry=_registry(), config=AudioVAEConfig())
    sd = model.vae.state_dict()
    sd.pop("encoder.learnable_gain")
    torch.save(sd, tmp_path / AudioVAE.weights_entry / "ext_weights" / "v1-16.pth")
    with pytest.raises(WeightsError, match="missing"):
        AudioVAE.from_pretrained(tmp_path, registry=_registry(), config=AudioVAEConfig.tiny())


def test_missing_files_name_the_entry(tmp_path):
    with pytest.raises(WeightsError, match="mmaudio-16k-vae"):
        AudioVAE.from_pretrained(tmp_path)


# --------------------------------------------------------------------------------------------
# the mel front end against librosa


def test_mel_filterbank_matches_librosa():
    librosa = pytest.importorskip("librosa")
    ref = librosa.filters.mel(sr=16_000, n_fft=1024, n_mels=80, fmin=0, fmax=8_000)
    ours = slaney_mel_filterbank()
    assert ours.shape == ref.shape == (80, 513)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-8)


def test_log_mel_matches_librosa(model):
    librosa = pytest.importorskip("librosa")
    wav = _wav(16_000, batch=2, seed=7)
    wav[1] *= 4.0  # clipped to [-1, 1] first
    ours = model.wav_to_mel(wav).numpy()
    for b in range(2):
        y = np.clip(wav[b].numpy().astype(np.float64), -1.0, 1.0)
        y = np.pad(y, (384, 384), mode="reflect")
        spec = librosa.stft(y, n_fft=1024, hop_length=256, win_length=1024, window="hann",
                            center=False)
        mag = np.sqrt(np.abs(spec) ** 2 + 1e-9)
        fb = librosa.filters.mel(sr=16_000, n_fft=1024, n_mels=80, fmin=0, fmax=8_000)
        ref = np.log10(np.maximum(fb @ mag, 1e-5))
        assert ref.shape == ours[b].shape == (80, 62)
        np.testing.assert_allclose(ours[b], ref, atol=2e-4)


def test_mel_of_silence_is_the_log_floor(model):
    # |STFT| = sqrt(1e-9) per bin; through the slaney filters (row sums ~ 1/15.6 Hz) that is
    # below the 1e-5 clip, so every bin is log10(1e-5)
    mel = model.wav_to_mel(torch.zeros(1, 4_000))
    assert mel.shape == (1, 80, 15)
    torch.testing.assert_close(mel, torch.full_like(mel, -5.0))


def test_antialias_filter():
    f = kaiser_sinc_filter(0.25, 0.3, 12)
    assert f.shape == (1, 1, 12)
    torch.testing.assert_close(f.sum(), torch.tensor(1.0))
    torch.testing.assert_close(f.flip(-1), f)  # symmetric (linear phase)
    # a half-band low-pass: DC passes, Nyquist is strongly attenuated
    w = f.flatten().double()
    nyq = sum(((-1) ** i) * float(w[i]) for i in range(12))
    assert abs(nyq) < 0.05
