"""The audio latent space of DreamID-Omni: MMAudio's 16 kHz mel VAE and its BigVGAN vocoder.

Reference: https://github.com/hkchengrex/MMAudio (``mmaudio/ext/mel_converter.py``,
``mmaudio/ext/autoencoder/{vae,vae_modules,edm2_utils}.py``, ``mmaudio/ext/bigvgan/*``),
used by Ovi / DreamID-Omni through ``FeaturesUtils(mode='16k')``. This is our own
implementation of the same computation; module and parameter names follow the upstream
checkpoints so that ``ext_weights/v1-16.pth`` loads into :attr:`AudioVAE.vae` and the
``generator`` dict of ``ext_weights/best_netG.pt`` into :attr:`AudioVAE.vocoder`, both with
``strict=True``.

Pipeline (waveform -> latents -> waveform)::

    wav (B, N) @ 16 kHz, clamped to [-1, 1]
      -> log10 mel (B, 80, T)   reflect pad 384 | STFT n_fft 1024, hop 256, hann 1024,
                                center=False | |.| (+1e-9 under the root) | slaney mel 0-8 kHz
                                | log10(max(., 1e-5));  T = 1 + (N - 256) // 256
      -> (mel - DATA_MEAN_80D) / DATA_STD_80D   per mel bin
      -> Encoder1D -> 40 channels = mean | logvar; the mean is the latent (no scaling)
      -> latents (B, L, 20), channel-last, L = T // 2 (one 2x average pool): 31.25 / s
    latents -> Decoder1D -> * std + mean -> mel (B, 80, 2L) -> BigVGAN (x256) -> (B, 512 L)

1.0 s (16000 samples) gives 62 mel frames and 31 latents; DreamID-Omni's 5.04 s clip
(80640 samples) gives 315 frames and 157 latents, which decode to 157 * 512 = 80384 samples.

The VAE is an EDM2-style magnitude-preserving network: every convolution (``MPConv1D``) keeps
its raw weight in the checkpoint and uses ``normalize(w) / sqrt(fan_in)`` at inference
(upstream's ``remove_weight_norm`` does this once, in place). We compute it from the raw
weight on every call instead, so the state dict always stays in the checkpoint's layout and a
save -> load round trip is exact. The vocoder's convolutions are weight-normed
(``weight_g`` / ``weight_v``, ``w = g * v / ||v||`` over all but dim 0), likewise fused on
the fly; ``_load`` also accepts the newer ``parametrizations.weight.original0/1`` spelling.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "DATA_MEAN_80D",
    "DATA_STD_80D",
    "FMAX",
    "FMIN",
    "HOP",
    "LATENT_CHANNELS",
    "N_FFT",
    "N_MELS",
    "SAMPLES_PER_LATENT",
    "SAMPLE_RATE",
    "AudioVAE",
    "AudioVAEConfig",
    "BigVGANVocoder",
    "MMAudioVAE",
    "MelConverter",
    "kaiser_sinc_filter",
    "mel_frames",
    "num_latents",
    "slaney_mel_filterbank",
    "vocoder_state_from_checkpoint",
]

SAMPLE_RATE = 16_000
N_FFT = 1024
WIN = 1024
HOP = 256
N_MELS = 80
FMIN = 0.0
FMAX = 8_000.0
LOG_FLOOR = 1e-5  # dynamic range compression clip value
MAG_EPS = 1e-9  # added under the square root of the STFT power
LATENT_CHANNELS = 20
DOWNSAMPLE = 2  # one 2x average pool in the encoder
SAMPLES_PER_LATENT = HOP * DOWNSAMPLE  # 512
CLIP_ACT = 256.0  # activations are clamped to +-256 after every block
MP_SUM_T = 0.3  # residual mixing weight of the magnitude-preserving sum
NORM_EPS = 1e-4  # EDM2 normalize() epsilon
SNAKE_EPS = 1e-9

#: Per-mel-bin statistics of the training data (log10 mel), MMAudio ``vae.py`` ``DATA_*_80D``.
DATA_MEAN_80D = (
    -1.6058, -1.3676, -1.2520, -1.2453, -1.2078, -1.2224, -1.2419, -1.2439, -1.2922, -1.2927,
    -1.3170, -1.3543, -1.3401, -1.3836, -1.3907, -1.3912, -1.4313, -1.4152, -1.4527, -1.4728,
    -1.4568, -1.5101, -1.5051, -1.5172, -1.5623, -1.5373, -1.5746, -1.5687, -1.6032, -1.6131,
    -1.6081, -1.6331, -1.6489, -1.6489, -1.6700, -1.6738, -1.6953, -1.6969, -1.7048, -1.7280,
    -1.7361, -1.7495, -1.7658, -1.7814, -1.7889, -1.8064, -1.8221, -1.8377, -1.8417, -1.8643,
    -1.8857, -1.8929, -1.9173, -1.9379, -1.9531, -1.9673, -1.9824, -2.0042, -2.0215, -2.0436,
    -2.0766, -2.1064, -2.1418, -2.1855, -2.2319, -2.2767, -2.3161, -2.3572, -2.3954, -2.4282,
    -2.4659, -2.5072, -2.5552, -2.6074, -2.6584, -2.7107, -2.7634, -2.8266, -2.8981, -2.9673,
)
DATA_STD_80D = (
    1.0291, 1.0411, 1.0043, 0.9820, 0.9677, 0.9543, 0.9450, 0.9392, 0.9343, 0.9297,
    0.9276, 0.9263, 0.9242, 0.9254, 0.9232, 0.9281, 0.9263, 0.9315, 0.9274, 0.9247,
    0.9277, 0.9199, 0.9188, 0.9194, 0.9160, 0.9161, 0.9146, 0.9161, 0.9100, 0.9095,
    0.9145, 0.9076, 0.9066, 0.9095, 0.9032, 0.9043, 0.9038, 0.9011, 0.9019, 0.9010,
    0.8984, 0.8983, 0.8986, 0.8961, 0.8962, 0.8978, 0.8962, 0.8973, 0.8993, 0.8976,
    0.8995, 0.9016, 0.8982, 0.8972, 0.8974, 0.8949, 0.8940, 0.8947, 0.8936, 0.8939,
    0.8951, 0.8956, 0.9017, 0.9167, 0.9436, 0.9690, 1.0003, 1.0225, 1.0381, 1.0491,
    1.0545, 1.0604, 1.0761, 1.0929, 1.1089, 1.1196, 1.1176, 1.1156, 1.1117, 1.1070,
)


def mel_frames(num_samples: int) -> int:
    """Mel frames of ``num_samples`` samples: reflect pad (n_fft - hop) / 2 each side, no
    centring, so ``1 + (N + 768 - 1024) // 256``."""
    pad = (N_FFT - HOP) // 2
    return 1 + (num_samples + 2 * pad - N_FFT) // HOP


def num_latents(num_samples: int) -> int:
    """Latents the encoder makes from ``num_samples`` 16 kHz samples (16000 -> 31)."""
    return mel_frames(num_samples) // DOWNSAMPLE


# --------------------------------------------------------------------------------------------
# mel spectrogram


def _hz_to_mel_slaney(f: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3  # linear below 1 kHz, 3 mels per 200 Hz
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    f = np.asarray(f, dtype=np.float64)
    lin = f / f_sp
    log = min_log_mel + np.log(np.maximum(f, min_log_hz) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log, lin)


def _mel_to_hz_slaney(m: np.ndarray) -> np.ndarray:
    f_sp = 200.0 / 3
    min_log_hz = 1000.0
    min_log_mel = min_log_hz / f_sp
    logstep = math.log(6.4) / 27.0
    m = np.asarray(m, dtype=np.float64)
    lin = m * f_sp
    log = min_log_hz * np.exp(logstep * (m - min_log_mel))
    return np.where(m >= min_log_mel, log, lin)


def slaney_mel_filterbank(sr: float = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                          fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_mels, 1 + n_fft // 2) triangular filters on the Slaney mel scale with Slaney
    (constant-area) normalisation: librosa's ``filters.mel`` defaults (htk=False,
    norm='slaney'), computed in float64 and returned as float32."""
    freqs = np.linspace(0.0, sr / 2, 1 + n_fft // 2)
    edges = _mel_to_hz_slaney(
        np.linspace(_hz_to_mel_slaney(fmin), _hz_to_mel_slaney(fmax), n_mels + 2))
    width = np.diff(edges)
    dist = edges[:, None] - freqs[None, :]
    rise = -dist[:-2] / width[:-1, None]
    fall = dist[2:] / width[1:, None]
    bank = np.maximum(0.0, np.minimum(rise, fall))
    bank *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return bank.astype(np.float32)


class MelConverter(nn.Module):
    """Waveform (B, N) in [-1, 1] -> log10 mel (B, 80, T), MMAudio's 16 kHz front end.

    Its buffers are computed, not loaded, and are kept out of the state dict.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mel_basis", torch.from_numpy(slaney_mel_filterbank()),
                             persistent=False)
        self.register_buffer("window", torch.hann_window(WIN, device="cpu"), persistent=False)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        if wav.ndim != 2:
            raise ValueError(f"expected a (batch, samples) waveform, got shape {tuple(wav.shape)}")
        pad = (N_FFT - HOP) // 2
        if wav.shape[-1] <= pad:
            raise ValueError(f"need more than {pad} samples for the reflect padding, "
                             f"got {wav.shape[-1]}")
        x = wav.to(device=self.mel_basis.device, dtype=torch.float32).clamp(-1.0, 1.0)
        x = F.pad(x.unsqueeze(1), (pad, pad), mode="reflect").squeeze(1)
        spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=WIN, window=self.window,
                          center=False, normalized=False, onesided=True, return_complex=True)
        mag = torch.sqrt(spec.real.square() + spec.imag.square() + MAG_EPS)
        mel = torch.matmul(self.mel_basis, mag)
        return torch.log10(mel.clamp(min=LOG_FLOOR))


# --------------------------------------------------------------------------------------------
# the VAE (EDM2 magnitude-preserving 1-D convnet)


def _normalize(x: torch.Tensor, dim: int | Sequence[int] | None = None,
               eps: float = NORM_EPS) -> torch.Tensor:
    """Scale to unit RMS over ``dim`` (default: every dim but the first), EDM2's normalize."""
    if dim is None:
        dim = list(range(1, x.ndim))
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True, dtype=torch.float32)
    norm = eps + norm * math.sqrt(norm.numel() / x.numel())
    return x / norm.to(x.dtype)


def _mp_silu(x: torch.Tensor) -> torch.Tensor:
    return F.silu(x) / 0.596


def _mp_sum(a: torch.Tensor, b: torch.Tensor, t: float = MP_SUM_T) -> torch.Tensor:
    return a.lerp(b, t) / math.sqrt((1 - t) ** 2 + t**2)


class MPConv1D(nn.Module):
    """Magnitude-preserving convolution: the raw ``weight`` (out, in, k) is normalised per
    output channel to unit norm (forced weight normalisation) when used; 'same' padding."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size))
        nn.init.normal_(self.weight)  # upstream: randn

    def effective_weight(self) -> torch.Tensor:
        w = self.weight
        fan_in = w[0].numel()
        return (_normalize(w.to(torch.float32)) / math.sqrt(fan_in)).to(w.dtype)

    def forward(self, x: torch.Tensor, gain: torch.Tensor | float = 1.0) -> torch.Tensor:
        w = self.effective_weight() * gain
        return F.conv1d(x, w.to(x.dtype), padding=w.shape[-1] // 2)


class ResnetBlock1D(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.conv1 = MPConv1D(in_dim, out_dim, kernel_size)
        self.conv2 = MPConv1D(out_dim, out_dim, kernel_size)
        if in_dim != out_dim:
            self.nin_shortcut = MPConv1D(in_dim, out_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = _normalize(x, dim=1)  # pixel norm over channels
        h = self.conv2(_mp_silu(self.conv1(_mp_silu(x))))
        if self.in_dim != self.out_dim:
            x = self.nin_shortcut(x)
        return _mp_sum(x, h)


class AttnBlock1D(nn.Module):
    """Single-head self-attention over time with cosine-normalised q, k, v. The fused
    projection's output channels are interleaved as (channel, {q, k, v})."""

    def __init__(self, channels: int, num_heads: int = 1) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = MPConv1D(channels, channels * 3, 1)
        self.proj_out = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, length = x.shape
        y = self.qkv(x).reshape(b, self.num_heads, -1, 3, length)
        q, k, v = (t.transpose(-1, -2) for t in _normalize(y, dim=2).unbind(3))
        h = F.scaled_dot_product_attention(q, k, v)  # (b, heads, length, c)
        h = h.transpose(-1, -2).reshape(b, -1, length)
        return _mp_sum(x, self.proj_out(h))


class Downsample1D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = MPConv1D(channels, channels, 1)
        self.conv2 = MPConv1D(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.avg_pool1d(self.conv1(x), kernel_size=2, stride=2))


class Upsample1D(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = MPConv1D(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest-exact"))


class _Level(nn.Module):
    """One resolution level: ``block`` (residual blocks), ``attn`` (empty in the 16k VAE) and
    an optional ``downsample`` / ``upsample``: the key names of the checkpoint."""

    def __init__(self, blocks: list[nn.Module]) -> None:
        super().__init__()
        self.block = nn.ModuleList(blocks)
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock1D(channels, channels)
        self.attn_1 = AttnBlock1D(channels)
        self.block_2 = ResnetBlock1D(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x))).clamp(-CLIP_ACT, CLIP_ACT)


class Encoder1D(nn.Module):
    """mel (B, 80, T) normalised -> moments (B, 2 * embed_dim, T // 2)."""

    def __init__(self, dim: int, ch_mult: Sequence[int], num_res_blocks: int, in_dim: int,
                 embed_dim: int, down_layers: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.down_layers = tuple(down_layers)
        self.conv_in = MPConv1D(in_dim, dim, 3)
        self.down = nn.ModuleList()
        ch = dim
        for level, mult in enumerate(ch_mult):
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock1D(ch, dim * mult))
                ch = dim * mult
            lvl = _Level(blocks)
            if level in self.down_layers:
                lvl.downsample = Downsample1D(ch)
            self.down.append(lvl)
        self.mid = _Mid(ch)
        self.conv_out = MPConv1D(ch, 2 * embed_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level, lvl in enumerate(self.down):
            for block in lvl.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if level in self.down_layers:
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(_mp_silu(h), gain=self.learnable_gain + 1)


class Decoder1D(nn.Module):
    """latents (B, embed_dim, L) -> normalised mel (B, out_dim, 2 L)."""

    def __init__(self, dim: int, ch_mult: Sequence[int], num_res_blocks: int, out_dim: int,
                 embed_dim: int, down_layers: Sequence[int] = (0,)) -> None:
        super().__init__()
        self.up_layers = tuple(i + 1 for i in down_layers)  # upsample one level higher
        ch = dim * ch_mult[-1]
        self.conv_in = MPConv1D(embed_dim, ch, 3)
        self.mid = _Mid(ch)
        levels: list[_Level] = []
        for level in reversed(range(len(ch_mult))):
            blocks = []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock1D(ch, dim * ch_mult[level]))
                ch = dim * ch_mult[level]
            lvl = _Level(blocks)
            if level in self.up_layers:
                lvl.upsample = Upsample1D(ch)
            levels.insert(0, lvl)  # up[0] is the finest level, as upstream
        self.up = nn.ModuleList(levels)
        self.conv_out = MPConv1D(ch, out_dim, 3)
        self.learnable_gain = nn.Parameter(torch.zeros([]))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(range(len(self.up))):
            lvl = self.up[level]
            for block in lvl.block:
                h = block(h).clamp(-CLIP_ACT, CLIP_ACT)
            if level in self.up_layers:
                h = lvl.upsample(h)
        return self.conv_out(_mp_silu(h), gain=self.learnable_gain + 1)


class MMAudioVAE(nn.Module):
    """The mel VAE; its state dict is exactly ``ext_weights/v1-16.pth`` (``data_mean`` and
    ``data_std`` are (1, 80, 1) buffers there)."""

    def __init__(self, hidden_dim: int = 384, embed_dim: int = LATENT_CHANNELS,
                 ch_mult: Sequence[int] = (1, 2, 4), num_res_blocks: int = 2) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.register_buffer("data_mean", torch.tensor(DATA_MEAN_80D).view(1, -1, 1))
        self.register_buffer("data_std", torch.tensor(DATA_STD_80D).view(1, -1, 1))
        self.encoder = Encoder1D(hidden_dim, ch_mult, num_res_blocks, N_MELS, embed_dim)
        self.decoder = Decoder1D(hidden_dim, ch_mult, num_res_blocks, N_MELS, embed_dim)

    def encode_moments(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log10 mel (B, 80, T) -> posterior mean and log-variance, each (B, embed_dim, T//2).
        The log-variance is clamped to [-30, 20] as upstream's DiagonalGaussianDistribution."""
        x = (mel.to(self.data_mean.dtype) - self.data_mean) / self.data_std
        moments = self.encoder(x)
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Latents (B, embed_dim, L) -> log10 mel (B, 80, 2 L)."""
        return self.decoder(z) * self.data_std + self.data_mean


# --------------------------------------------------------------------------------------------
# the vocoder (BigVGAN v1, 16 kHz, 80 mels, x256)


def kaiser_sinc_filter(cutoff: float, half_width: float, kernel_size: int) -> torch.Tensor:
    """(1, 1, kernel_size) Kaiser-windowed sinc low-pass filter, normalised to unit sum
    (BigVGAN's alias-free resampling filter; the Kaiser beta follows the usual attenuation
    design formula)."""
    even = kernel_size % 2 == 0
    half = kernel_size // 2
    atten = 2.285 * (half - 1) * math.pi * (4 * half_width) + 7.95
    if atten > 50.0:
        beta = 0.1102 * (atten - 8.7)
    elif atten >= 21.0:
        beta = 0.5842 * (atten - 21) ** 0.4 + 0.07886 * (atten - 21.0)
    else:
        beta = 0.0
    cpu = torch.device("cpu")  # a constant: never built on the meta device
    window = torch.kaiser_window(kernel_size, periodic=False, beta=beta, device=cpu)
    t = (torch.arange(-half, half, device=cpu) + 0.5 if even
         else torch.arange(kernel_size, device=cpu) - half)
    if cutoff == 0:
        return torch.zeros(1, 1, kernel_size, device=cpu)
    filt = 2 * cutoff * window * torch.sinc(2 * cutoff * t)
    return (filt / filt.sum()).view(1, 1, kernel_size)


class _UpSample2x(nn.Module):
    """x2 upsampling: replicate pad, zero-stuffing transposed conv with the low-pass ``filter``
    (kernel 12, cutoff 1/4), gain 2, crop."""

    ratio = 2
    kernel = 12

    def __init__(self) -> None:
        super().__init__()
        self.pad = self.kernel // self.ratio - 1
        self.crop_left = self.pad * self.ratio + (self.kernel - self.ratio) // 2
        self.crop_right = self.pad * self.ratio + (self.kernel - self.ratio + 1) // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / self.ratio, 0.6 / self.ratio,
                                                          self.kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad, self.pad), mode="replicate")
        x = self.ratio * F.conv_transpose1d(x, self.filter.expand(c, -1, -1), stride=self.ratio,
                                            groups=c)
        return x[..., self.crop_left:-self.crop_right]


class _LowPass(nn.Module):
    def __init__(self, stride: int = 2, kernel: int = 12) -> None:
        super().__init__()
        self.stride = stride
        self.pad_left = kernel // 2 - int(kernel % 2 == 0)
        self.pad_right = kernel // 2
        self.register_buffer("filter", kaiser_sinc_filter(0.5 / stride, 0.6 / stride, kernel))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        x = F.pad(x, (self.pad_left, self.pad_right), mode="replicate")
        return F.conv1d(x, self.filter.expand(c, -1, -1), stride=self.stride, groups=c)


class _DownSample2x(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lowpass = _LowPass(2, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lowpass(x)


class SnakeBeta(nn.Module):
    """``x + sin(x exp(alpha))^2 / (exp(beta) + 1e-9)`` per channel (log-scale parameters)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha.exp()[None, :, None]
        beta = self.beta.exp()[None, :, None]
        return x + (1.0 / (beta + SNAKE_EPS)) * torch.sin(x * alpha).pow(2)


class _AntiAliasedSnake(nn.Module):
    """Upsample x2 -> SnakeBeta -> low-pass and decimate x2 (``act``, ``upsample``,
    ``downsample.lowpass``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.act = SnakeBeta(channels)
        self.upsample = _UpSample2x()
        self.downsample = _DownSample2x()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(self.act(self.upsample(x)))


def _wn_init_gain(v: torch.Tensor) -> torch.Tensor:
    """weight_norm's initial ``g = ||v||`` (so the fused weight starts equal to ``v``); shape
    only on the meta device, where a norm would load torch's slow Python reference ops."""
    if v.is_meta:
        return v.new_empty(v.shape[0], 1, 1)
    return torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True)


class _WeightNorm:
    """``weight`` replaced by ``weight_g * weight_v / ||weight_v||`` (norm over dims 1, 2), the
    layout of ``torch.nn.utils.weight_norm`` (for a transposed conv that is dim 0, the input
    channels)."""

    weight_g: nn.Parameter
    weight_v: nn.Parameter

    def _split_weight(self) -> None:
        v = self.weight.detach()  # type: ignore[attr-defined]
        del self.weight  # type: ignore[attr-defined]
        self.weight_g = nn.Parameter(_wn_init_gain(v))
        self.weight_v = nn.Parameter(v.clone())

    def fused_weight(self) -> torch.Tensor:
        v = self.weight_v
        return v * (self.weight_g / torch.linalg.vector_norm(v, dim=(1, 2), keepdim=True))


class _WNConv1d(_WeightNorm, nn.Conv1d):
    """Conv1d with weight norm (:class:`_WeightNorm`)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.fused_weight(), self.bias)


class _WNConvTranspose1d(_WeightNorm, nn.ConvTranspose1d):
    """ConvTranspose1d with weight norm (:class:`_WeightNorm`)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._split_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return F.conv_transpose1d(x, self.fused_weight(), self.bias, self.stride, self.padding,
                                  self.output_padding, self.groups, self.dilation)


class AMPBlock1(nn.Module):
    """Three (snake, dilated conv, snake, conv) residual units; activations alternate
    between the dilated (even index) and the plain (odd index) convolution."""

    def __init__(self, channels: int, kernel_size: int, dilations: Sequence[int]) -> None:
        super().__init__()
        self.convs1 = nn.ModuleList(
            _WNConv1d(channels, channels, kernel_size, 1, dilation=d,
                      padding=(kernel_size * d - d) // 2) for d in dilations)
        self.convs2 = nn.ModuleList(
            _WNConv1d(channels, channels, kernel_size, 1, dilation=1,
                      padding=(kernel_size - 1) // 2) for _ in dilations)
        self.activations = nn.ModuleList(
            _AntiAliasedSnake(channels) for _ in range(2 * len(dilations)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, (c1, c2) in enumerate(zip(self.convs1, self.convs2, strict=True)):
            x = x + c2(self.activations[2 * i + 1](c1(self.activations[2 * i](x))))
        return x


class BigVGANVocoder(nn.Module):
    """log10 mel (B, 80, T) -> waveform (B, 1, T * prod(upsample_rates)) in [-1, 1].

    State dict = the ``generator`` dict of ``best_netG.pt`` (weight-norm ``weight_g`` /
    ``weight_v`` layout, anti-aliasing ``filter`` buffers included)."""

    def __init__(self, num_mels: int = N_MELS, initial_channel: int = 1536,
                 upsample_rates: Sequence[int] = (4, 4, 2, 2, 2, 2),
                 upsample_kernel_sizes: Sequence[int] = (8, 8, 4, 4, 4, 4),
                 resblock_kernel_sizes: Sequence[int] = (3, 7, 11),
                 resblock_dilations: Sequence[Sequence[int]] = ((1, 3, 5),) * 3) -> None:
        super().__init__()
        self.num_kernels = len(resblock_kernel_sizes)
        self.hop = math.prod(upsample_rates)
        self.conv_pre = _WNConv1d(num_mels, initial_channel, 7, 1, padding=3)
        self.ups = nn.ModuleList()
        self.resblocks = nn.ModuleList()
        ch = initial_channel
        for i, (u, k) in enumerate(zip(upsample_rates, upsample_kernel_sizes, strict=True)):
            ch = initial_channel // 2 ** (i + 1)
            self.ups.append(nn.ModuleList(
                [_WNConvTranspose1d(initial_channel // 2**i, ch, k, u, padding=(k - u) // 2)]))
            for k_res, dil in zip(resblock_kernel_sizes, resblock_dilations, strict=True):
                self.resblocks.append(AMPBlock1(ch, k_res, dil))
        self.activation_post = _AntiAliasedSnake(ch)
        self.conv_post = _WNConv1d(ch, 1, 7, 1, padding=3)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = self.conv_pre(mel)
        for i, up in enumerate(self.ups):
            for layer in up:
                x = layer(x)
            blocks = self.resblocks[i * self.num_kernels:(i + 1) * self.num_kernels]
            x = sum((b(x) for b in blocks), torch.zeros_like(x)) / self.num_kernels
        x = self.conv_post(self.activation_post(x))
        return torch.tanh(x)


def vocoder_state_from_checkpoint(ckpt: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The generator state dict of a BigVGAN training checkpoint in our key layout: takes the
    ``generator`` sub-dict when present and renames torch's parametrized weight-norm keys
    (``<m>.parametrizations.weight.original0/1``) to ``<m>.weight_g`` / ``<m>.weight_v``."""
    state = ckpt.get("generator", ckpt)
    if not isinstance(state, Mapping):
        raise WeightsError("vocoder checkpoint has no 'generator' state dict")
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        key = key.replace(".parametrizations.weight.original0", ".weight_g")
        key = key.replace(".parametrizations.weight.original1", ".weight_v")
        out[key] = value
    return out


# --------------------------------------------------------------------------------------------
# the component


@dataclass(frozen=True)
class AudioVAEConfig:
    """Widths of the VAE and the vocoder; the defaults are the released 16 kHz models.
    Mel front end (80 bins), latent width (20) and the hop (256 x 2) are fixed."""

    hidden_dim: int = 384
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    embed_dim: int = LATENT_CHANNELS
    vocoder_channels: int = 1536
    upsample_rates: tuple[int, ...] = (4, 4, 2, 2, 2, 2)
    upsample_kernel_sizes: tuple[int, ...] = (8, 8, 4, 4, 4, 4)
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))

    def __post_init__(self) -> None:
        if math.prod(self.upsample_rates) != HOP:
            raise ValueError(f"vocoder upsampling must total the mel hop {HOP}, "
                             f"got {self.upsample_rates}")
        if self.vocoder_channels % 2 ** len(self.upsample_rates):
            raise ValueError("vocoder_channels must stay an integer after halving at every "
                             f"upsampling stage, got {self.vocoder_channels}")

    @classmethod
    def tiny(cls) -> AudioVAEConfig:
        """Debug widths: same layers, 8-wide VAE, 64-wide vocoder."""
        return replace(cls(), hidden_dim=8, vocoder_channels=64)


class AudioVAE(PretrainedComponent, nn.Module):
    """MMAudio's 16 kHz audio VAE + BigVGAN vocoder, as DreamID-Omni uses them.

    ``encode`` gives the posterior mean, channel-last (B, L, 20), which is what the DiT sees;
    ``decode`` gives the log10 mel and ``to_wave`` the 16 kHz waveform. Public methods run
    without autograd; use :attr:`vae` / :attr:`vocoder` directly for gradients.
    """

    weights_entry = "mmaudio-16k-vae"
    weights_files = ("ext_weights/v1-16.pth", "ext_weights/best_netG.pt")

    def __init__(self, config: AudioVAEConfig | None = None) -> None:
        nn.Module.__init__(self)
        cfg = config or AudioVAEConfig()
        self.config = cfg
        self.mel = MelConverter()
        self.vae = MMAudioVAE(cfg.hidden_dim, cfg.embed_dim, cfg.ch_mult, cfg.num_res_blocks)
        self.vocoder = BigVGANVocoder(N_MELS, cfg.vocoder_channels, cfg.upsample_rates,
                                      cfg.upsample_kernel_sizes, cfg.resblock_kernel_sizes,
                                      cfg.resblock_dilations)
        self.eval()

    # -- facts -------------------------------------------------------------------------------

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

    @property
    def latent_channels(self) -> int:
        return self.config.embed_dim

    @property
    def samples_per_latent(self) -> int:
        return SAMPLES_PER_LATENT

    @staticmethod
    def num_latents(num_samples: int) -> int:
        return num_latents(num_samples)

    # -- the pipeline -----------------------------------------------------------------------

    @torch.no_grad()
    def wav_to_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) 16 kHz waveform -> (B, 80, T) log10 mel."""
        return self.mel(wav)

    @torch.no_grad()
    def encode_moments(self, wav: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, N) waveform -> posterior (mean, logvar), each (B, L, 20) channel-last."""
        mel = self.mel(wav)
        dtype = self.vae.data_mean.dtype
        mean, logvar = self.vae.encode_moments(mel.to(dtype))
        return mean.transpose(1, 2), logvar.transpose(1, 2)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, N) float waveform at 16 kHz -> latents (B, L, 20), the posterior mean,
        L = ((N - 256) // 256 + 1) // 2 (16000 -> 31)."""
        return self.encode_moments(wav)[0]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, L, 20) -> log10 mel (B, 80, 2 L)."""
        if latents.ndim != 3 or latents.shape[-1] != self.latent_channels:
            raise ValueError(f"expected latents (batch, length, {self.latent_channels}), "
                             f"got shape {tuple(latents.shape)}")
        z = latents.transpose(1, 2).to(self.vae.data_mean.dtype)
        return self.vae.decode(z)

    @torch.no_grad()
    def vocode(self, mel: torch.Tensor) -> torch.Tensor:
        """log10 mel (B, 80, T) -> waveform (B, 256 T)."""
        return self.vocoder(mel.to(self.vocoder.conv_pre.weight_v.dtype)).squeeze(1)

    def to_wave(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (B, L, 20) -> 16 kHz waveform (B, 512 L) in [-1, 1]."""
        return self.vocode(self.decode(latents))

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def from_state_dicts(cls, vae_state: Mapping[str, Any], vocoder_state: Mapping[str, Any],
                         config: AudioVAEConfig | None = None, *, source: str = "<memory>",
                         device: str = "cpu") -> Self:
        """Build on the meta device and take the tensors of the two upstream state dicts
        (``v1-16.pth`` as is; ``best_netG.pt`` through :func:`vocoder_state_from_checkpoint`);
        any missing, extra or mis-shaped key is one :class:`WeightsError`."""
        with torch.device("meta"):
            model = cls(config)
        model.mel = MelConverter()  # computed buffers: build them for real
        load_state_dict_strict(model.vae, vae_state, f"{source} (VAE)", assign=True)
        voc = vocoder_state_from_checkpoint(vocoder_state)
        load_state_dict_strict(model.vocoder, voc, f"{source} (vocoder)", assign=True)
        return model.to(device).eval()

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        vae_path = paths["ext_weights/v1-16.pth"]
        voc_path = paths["ext_weights/best_netG.pt"]
        return cls.from_state_dicts(load_torch_checkpoint(vae_path),
                                    load_torch_checkpoint(voc_path), kw.get("config"),
                                    source=f"{vae_path} / {voc_path}", device=device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": AudioVAEConfig()}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        model = cls(kw.get("config") or AudioVAEConfig.tiny())
        with torch.no_grad():  # non-trivial values where upstream initialises constants
            for name, p in model.named_parameters():
                if name.endswith("learnable_gain"):
                    p.normal_(0.0, 0.1)
                elif name.endswith((".alpha", ".beta")):
                    p.normal_(0.0, 0.1)
        return model.eval().to(device)
