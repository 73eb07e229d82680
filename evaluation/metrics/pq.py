"""PQ: AudioBox-Aesthetics production quality of the generated audio.

Reference protocol: ``audiobox_aesthetics.infer.AesPredictor.forward`` of
https://github.com/facebookresearch/audiobox-aesthetics (pip ``audiobox_aesthetics`` 0.0.4, source
revision 2618e9d), with its released ``checkpoint.pt``. Per audio clip:

1. mono, 16 kHz (upstream: ``torchaudio.functional.resample`` then a channel mean; here the
   caller decodes at 16 kHz through ``omni_core.media`` and :func:`score_pq` resamples with soxr
   if handed another rate);
2. 10 s windows with a 10 s hop (:func:`make_windows`); the last window is zero-padded to 10 s
   and its padding masked: the WavLM encoder ignores padded frames as attention keys and the
   per-axis mean pooling skips them;
3. the network predicts four normalised axes per window (CE content enjoyment, CU content
   usefulness, PC production complexity, PQ production quality); each is de-normalised with the
   target mean/std stored in the checkpoint (``pred * std + mean``);
4. the clip score of an axis is the mean over windows weighted by valid length / 10 s.

The paper reports PQ; all four axes are returned for debugging. Upstream runs in fp32: its
``precision`` field never enables autocast (it compares the converted ``torch.dtype`` with
strings), so neither do we.

The network (:class:`AudioboxAesthetics`) is our own code written to upstream's state-dict layout
(``wavlm_model.*``, ``layer_weights.<axis>``, ``proj_layer.<axis>.<i>.*``) so that the original
``checkpoint.pt`` (``{"state_dict": {"model.<key>": ...}, "model_cfg": {...},
"target_transform": {axis: {"mean", "std"}}}``) loads with ``strict=True``. The encoder is
WavLM-base (7-layer conv front end, 12 post-LN transformer layers with gated relative position
bias); each axis has its own softmax weights over the 13 hidden states (input + 12 layers), a
masked mean over time, L2 normalisation and an MLP head (released config: 5 linear layers with
LayerNorm + GELU between them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "AXES",
    "DEBUG_CONFIG",
    "DIRECTION",
    "RELEASED_TARGET_TRANSFORM",
    "SAMPLE_RATE",
    "VERSION",
    "AesConfig",
    "AudioboxAesthetics",
    "PQOptions",
    "PQResult",
    "Windows",
    "frame_padding_mask",
    "make_windows",
    "relative_position_buckets",
    "score_pq",
    "weighted_mean",
]

VERSION = "1"
DIRECTION = "higher"

#: Upstream's axis order (``AXES_NAME``).
AXES: tuple[str, ...] = ("CE", "CU", "PC", "PQ")
#: The rate the encoder was trained at; windows are counted in samples at this rate.
SAMPLE_RATE = 16_000

#: Target mean/std per axis of the released model, as recorded in the HF ``config.json`` of
#: facebook/audiobox-aesthetics. The real values are always read from the checkpoint; these only
#: give the debug twin realistic output ranges.
RELEASED_TARGET_TRANSFORM: dict[str, tuple[float, float]] = {
    "CE": (5.06865, 1.93029),
    "CU": (5.73633, 1.75669),
    "PC": (3.18591, 1.86637),
    "PQ": (6.57505, 1.51466),
}


# --------------------------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class AesConfig:
    """Architecture of the encoder (upstream ``DEFAULT_AUDIO_CFG``) and of the heads.

    The encoder fields are fixed upstream (WavLM-base); the head fields come from the
    checkpoint's ``model_cfg``. Only the fields that change shapes or the forward pass at
    inference are kept (dropouts, masking and layer drop are training-only).
    """

    conv_layers: tuple[tuple[int, int, int], ...] = (
        ((512, 10, 5),) + ((512, 3, 2),) * 4 + ((512, 2, 2),) * 2
    )  # (channels, kernel, stride): 320x downsampling, 20 ms frames at 16 kHz
    embed_dim: int = 768
    ffn_dim: int = 3072
    num_layers: int = 12
    num_heads: int = 12
    conv_pos: int = 128  # kernel of the convolutional position embedding
    conv_pos_groups: int = 16
    num_buckets: int = 320  # relative position buckets (bidirectional: 160 per side)
    max_distance: int = 800
    gate_dim: int = 8  # grep_linear output width (gated relative position bias)
    # heads (checkpoint model_cfg)
    proj_num_layer: int = 5
    proj_ln: bool = True
    proj_dropout: float = 0.0  # inert at inference, but a non-zero value shifts module indices
    nth_layer: int = 13  # hidden states mixed per axis: the input of layer 0 + nth_layer - 1
    normalize_embed: bool = True
    output_dim: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.nth_layer <= self.num_layers + 1:
            raise ValueError(f"nth_layer must be in 1..{self.num_layers + 1}, got {self.nth_layer}")
        if self.embed_dim % self.num_heads:
            raise ValueError("embed_dim must be a multiple of num_heads")
        if self.proj_num_layer < 1:
            raise ValueError("proj_num_layer must be >= 1")

    @property
    def downsample(self) -> int:
        """Samples per encoder frame (product of the conv strides)."""
        return math.prod(stride for _, _, stride in self.conv_layers)


#: The debug twin: the same code path, tiny widths. The conv strides (and hence the 320-sample
#: frame and the masking arithmetic) and the relative-position bucketing are kept; the conv
#: width differs from the model width so that ``post_extract_proj`` exists as upstream.
DEBUG_CONFIG = AesConfig(
    conv_layers=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
    embed_dim=32,
    ffn_dim=64,
    num_layers=2,
    num_heads=4,
    conv_pos=16,
    conv_pos_groups=4,
    proj_num_layer=2,
    nth_layer=3,
)

# model_cfg keys that upstream's AesPredictor passes to AesMultiOutput
_HEAD_KEYS = ("proj_num_layer", "proj_ln", "proj_dropout", "nth_layer", "normalize_embed",
              "output_dim")


# --------------------------------------------------------------------------------------------
# protocol: windows, masks, weights


@dataclass(frozen=True)
class Windows:
    """A clip cut into fixed-length windows (upstream ``make_inference_batch``)."""

    wavs: np.ndarray  # (n_windows, window) float32, zero-padded
    valid: np.ndarray  # (n_windows,) number of real samples in each window
    starts: np.ndarray  # (n_windows,) first sample of each window in the clip
    window: int  # window length in samples

    @property
    def weights(self) -> np.ndarray:
        """Valid length / window length: the weight of each window in the clip mean."""
        return self.valid.astype(np.float64) / self.window

    def sample_mask(self) -> np.ndarray:
        """(n_windows, window) bool, True on real samples."""
        return np.arange(self.window)[None, :] < self.valid[:, None]


def make_windows(
    audio: np.ndarray,
    sample_rate: int = SAMPLE_RATE,
    window_s: float = 10.0,
    hop_s: float = 10.0,
    pad_last: bool = True,
) -> Windows:
    """Cut ``audio`` (mono) into windows starting every ``hop_s`` seconds.

    Every start in ``range(0, len(audio), hop)`` opens a window; a window running past the end
    keeps only the real samples, zero-padded to the full length (``pad_last``, upstream's
    ``pad_zero=True``; without it the clip must be an exact number of windows long, since the
    encoder runs windows as one batch).
    """
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono audio of shape (n,), got {x.shape}")
    if x.size == 0:
        raise OmniError("PQ: the audio is empty")
    window = int(round(window_s * sample_rate))
    hop = int(round(hop_s * sample_rate))
    if window <= 0 or hop <= 0:
        raise ValueError("window_s and hop_s must be positive")
    starts = np.arange(0, x.size, hop)
    valid = np.minimum(x.size - starts, window)
    if not pad_last and (valid < window).any():
        raise OmniError(f"PQ: {x.size} samples are not whole {window}-sample windows and "
                        "pad_last is off")
    wavs = np.zeros((starts.size, window), dtype=np.float32)
    for row, (start, n) in enumerate(zip(starts, valid, strict=True)):
        wavs[row, :n] = x[start:start + n]
    return Windows(wavs=wavs, valid=valid.astype(np.int64), starts=starts.astype(np.int64),
                   window=window)


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> float:
    """sum(values * weights) / sum(weights): the clip score from its window scores."""
    v = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    return float((v * w).sum() / w.sum())


def frame_padding_mask(sample_padding: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Encoder-frame padding from sample padding (upstream ``forward_padding_mask``).

    The trailing ``n_samples % n_frames`` samples are dropped, the rest is split into
    ``n_frames`` equal runs, and a frame is padding only if its whole run is. ``(B, T)`` bool,
    True = padding -> ``(B, n_frames)``.
    """
    extra = sample_padding.size(1) % n_frames
    if extra:
        sample_padding = sample_padding[:, :-extra]
    return sample_padding.view(sample_padding.size(0), n_frames, -1).all(-1)


def relative_position_buckets(
    q_len: int, k_len: int, num_buckets: int, max_distance: int
) -> torch.Tensor:
    """(q_len, k_len) bucket ids of key - query offsets, T5/WavLM bidirectional bucketing.

    Half of the buckets per direction; the first half of those are exact offsets, the rest
    grow logarithmically up to ``max_distance`` and saturate.
    """
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    half = num_buckets // 2
    buckets = (rel > 0).long() * half
    rel = rel.abs()
    max_exact = half // 2
    log_ratio = torch.log(rel.clamp(min=1).float() / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + log_ratio * (half - max_exact)).long().clamp(max=half - 1)
    return buckets + torch.where(rel < max_exact, rel, large)


# --------------------------------------------------------------------------------------------
# the network (state-dict layout of upstream's AesMultiOutput / WavLM)


class _GroupNormFp32(nn.GroupNorm):
    """GroupNorm computed in float32 whatever the input dtype (upstream ``Fp32GroupNorm``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                           self.eps)
        return out.type_as(x)


class _FeatureExtractor(nn.Module):
    """Strided conv front end; the first block has a per-channel GroupNorm ("default" mode).

    Each block is ``Sequential(conv, <dropout slot>, [norm,] GELU)`` so the conv weights sit at
    ``conv_layers.<i>.0.weight`` and the norm at ``conv_layers.0.2.*`` as upstream.
    """

    def __init__(self, layers: Sequence[tuple[int, int, int]]) -> None:
        super().__init__()
        blocks = []
        in_ch = 1
        for i, (ch, kernel, stride) in enumerate(layers):
            conv = nn.Conv1d(in_ch, ch, kernel, stride=stride, bias=False)
            nn.init.kaiming_normal_(conv.weight)
            parts: list[nn.Module] = [conv, nn.Identity()]
            if i == 0:
                parts.append(_GroupNormFp32(ch, ch, affine=True))
            parts.append(nn.GELU())
            blocks.append(nn.Sequential(*parts))
            in_ch = ch
        self.conv_layers = nn.ModuleList(blocks)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = wav.unsqueeze(1)  # (B, 1, T)
        for block in self.conv_layers:
            x = block(x)
        return x  # (B, C, frames)


class _WeightNormConv1d(nn.Module):
    """Grouped conv whose weight is ``g * v / ||v||`` with the norm over all dims but the
    kernel axis (``torch.nn.utils.weight_norm(conv, dim=2)``: keys ``weight_g``/``weight_v``)."""

    def __init__(self, channels: int, kernel: int, groups: int) -> None:
        super().__init__()
        v = torch.empty(channels, channels // groups, kernel)
        nn.init.normal_(v, mean=0.0, std=math.sqrt(4.0 / (kernel * channels)))
        self.weight_v = nn.Parameter(v)
        self.weight_g = nn.Parameter(v.norm(dim=(0, 1), keepdim=True).clone())
        self.bias = nn.Parameter(torch.zeros(channels))
        self.padding = kernel // 2
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        v = self.weight_v
        weight = v * (self.weight_g / v.norm(dim=(0, 1), keepdim=True))
        return F.conv1d(x, weight, self.bias, padding=self.padding, groups=self.groups)


class _TrimLast(nn.Module):
    """Drop the extra frame an even-kernel 'same' conv produces (upstream ``SamePad``)."""

    def __init__(self, kernel: int) -> None:
        super().__init__()
        self.remove = 1 if kernel % 2 == 0 else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, : -self.remove] if self.remove else x


class _SelfAttention(nn.Module):
    """Multi-head self-attention with WavLM's gated relative position bias.

    Layer 0 owns the bucket embedding and computes the (heads, T, T) bias once; every layer
    scales that shared bias per query by a gate computed from its own input
    (``grep_linear``/``grep_a``) before adding it to the attention logits.
    """

    def __init__(self, cfg: AesConfig, has_relative_bias: bool) -> None:
        super().__init__()
        dim, heads = cfg.embed_dim, cfg.num_heads
        self.num_heads = heads
        self.head_dim = dim // heads
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.q_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        if cfg.gate_dim % 2:
            raise ValueError("gate_dim must be even")
        self.grep_linear = nn.Linear(self.head_dim, cfg.gate_dim)
        self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        if has_relative_bias:
            self.relative_attention_bias = nn.Embedding(cfg.num_buckets, heads)
        for proj in (self.k_proj, self.v_proj, self.q_proj):
            nn.init.xavier_uniform_(proj.weight, gain=1 / math.sqrt(2))
        nn.init.xavier_uniform_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def position_bias(self, length: int) -> torch.Tensor:
        buckets = relative_position_buckets(length, length, self.num_buckets, self.max_distance)
        table = self.relative_attention_bias.weight
        return F.embedding(buckets.to(table.device), table).permute(2, 0, 1)  # (H, T, T)

    def forward(
        self, x: torch.Tensor, key_padding: torch.Tensor | None, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, t, c = x.shape
        h, d = self.num_heads, self.head_dim
        if bias is None:
            bias = self.position_bias(t)
        heads_in = x.view(b, t, h, d).transpose(1, 2)  # (B, H, T, d)
        half = self.grep_linear.out_features // 2
        gates = torch.sigmoid(self.grep_linear(heads_in).view(b, h, t, 2, half).sum(-1))
        gate_a, gate_b = gates[..., :1], gates[..., 1:]
        gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0  # (B, H, T, 1)
        logits_bias = gate * bias.unsqueeze(0)  # (B, H, T, T)
        if key_padding is not None:
            logits_bias = logits_bias.masked_fill(key_padding[:, None, None, :], float("-inf"))
        q = self.q_proj(x).view(b, t, h, d).transpose(1, 2)
        k = self.k_proj(x).view(b, t, h, d).transpose(1, 2)
        v = self.v_proj(x).view(b, t, h, d).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=logits_bias.to(q.dtype))
        return self.out_proj(out.transpose(1, 2).reshape(b, t, c)), bias


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x.float()).type_as(x)


class _EncoderLayer(nn.Module):
    """Post-LN transformer layer (``layer_norm_first=False``)."""

    def __init__(self, cfg: AesConfig, has_relative_bias: bool) -> None:
        super().__init__()
        self.self_attn = _SelfAttention(cfg, has_relative_bias)
        self.self_attn_layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.fc1 = nn.Linear(cfg.embed_dim, cfg.ffn_dim)
        self.fc2 = nn.Linear(cfg.ffn_dim, cfg.embed_dim)
        self.final_layer_norm = nn.LayerNorm(cfg.embed_dim)

    def forward(
        self, x: torch.Tensor, key_padding: torch.Tensor | None, bias: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        attn, bias = self.self_attn(x, key_padding, bias)
        x = self.self_attn_layer_norm(x + attn)
        x = self.final_layer_norm(x + self.fc2(_gelu(self.fc1(x))))
        return x, bias


class _Encoder(nn.Module):
    def __init__(self, cfg: AesConfig) -> None:
        super().__init__()
        self.pos_conv = nn.Sequential(
            _WeightNormConv1d(cfg.embed_dim, cfg.conv_pos, cfg.conv_pos_groups),
            _TrimLast(cfg.conv_pos),
            nn.GELU(),
        )
        self.layers = nn.ModuleList(
            [_EncoderLayer(cfg, has_relative_bias=i == 0) for i in range(cfg.num_layers)]
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)

    def forward(
        self, x: torch.Tensor, padding: torch.Tensor | None, n_states: int
    ) -> list[torch.Tensor]:
        """The first ``n_states`` hidden states: the normalised input of layer 0, then the
        outputs of layers 0, 1, ... (each ``(B, T, C)``)."""
        if padding is not None:
            x = x.masked_fill(padding.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.layer_norm(x)
        states = [x]
        bias = None
        for layer in self.layers[: n_states - 1]:
            x, bias = layer(x, padding, bias)
            states.append(x)
        return states


class _WavLM(nn.Module):
    def __init__(self, cfg: AesConfig) -> None:
        super().__init__()
        feat_dim = cfg.conv_layers[-1][0]
        self.feature_extractor = _FeatureExtractor(cfg.conv_layers)
        self.layer_norm = nn.LayerNorm(feat_dim)
        self.post_extract_proj = (
            nn.Linear(feat_dim, cfg.embed_dim) if feat_dim != cfg.embed_dim else None
        )
        # Masked-prediction embedding of pre-training: unused at inference, kept for the keys.
        self.mask_emb = nn.Parameter(torch.empty(cfg.embed_dim).uniform_())
        self.encoder = _Encoder(cfg)

    def forward(
        self, wav: torch.Tensor, sample_padding: torch.Tensor, n_states: int
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        feats = self.layer_norm(self.feature_extractor(wav).transpose(1, 2))
        padding = frame_padding_mask(sample_padding, feats.size(1))
        if self.post_extract_proj is not None:
            feats = self.post_extract_proj(feats)
        return self.encoder(feats, padding, n_states), padding


def _head(cfg: AesConfig) -> nn.Sequential:
    """Upstream ``create_mlp_block``: (Linear, [LayerNorm], GELU, [Dropout]) x (n-1), Linear."""
    parts: list[nn.Module] = []
    for _ in range(cfg.proj_num_layer - 1):
        parts.append(nn.Linear(cfg.embed_dim, cfg.embed_dim))
        if cfg.proj_ln:
            parts.append(nn.LayerNorm(cfg.embed_dim))
        parts.append(nn.GELU())
        if cfg.proj_dropout:
            parts.append(nn.Dropout(cfg.proj_dropout))
    parts.append(nn.Linear(cfg.embed_dim, cfg.output_dim))
    return nn.Sequential(*parts)


class AudioboxAesthetics(PretrainedComponent, nn.Module):
    """The Audiobox-Aesthetics predictor: WavLM-base encoder + four per-axis heads.

    ``from_pretrained`` reads the original ``checkpoint.pt`` (weights_only), builds the heads
    from its ``model_cfg`` and loads the state dict strictly; ``debug`` builds
    :data:`DEBUG_CONFIG` with seeded random weights and the released target transform.
    """

    weights_entry = "audiobox-aesthetics"
    weights_files = ("checkpoint.pt",)

    def __init__(
        self, config: AesConfig, target_transform: Mapping[str, tuple[float, float]]
    ) -> None:
        nn.Module.__init__(self)
        missing = [a for a in AXES if a not in target_transform]
        if missing:
            raise ValueError(f"target_transform lacks the axes {missing}")
        self.config = config
        self.target_transform = {
            a: (float(target_transform[a][0]), float(target_transform[a][1])) for a in AXES
        }
        self.wavlm_model = _WavLM(config)
        n = config.nth_layer
        self.layer_weights = nn.ParameterDict(
            {a: nn.Parameter(torch.ones(n) / n) for a in AXES}
        )
        self.proj_layer = nn.ModuleDict({a: _head(config) for a in AXES})
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.layer_weights[AXES[0]].device

    # ---- constructors

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths["checkpoint.pt"]
        ckpt = load_torch_checkpoint(path)
        for key in ("state_dict", "model_cfg", "target_transform"):
            if not isinstance(ckpt.get(key), Mapping):
                raise WeightsError(f"{path}: not an audiobox-aesthetics checkpoint (expected the "
                                   f"keys state_dict, model_cfg, target_transform; got "
                                   f"{sorted(ckpt)})")
        model_cfg = ckpt["model_cfg"]
        if not model_cfg.get("use_weighted_layer_sum", True):
            raise WeightsError(f"{path}: use_weighted_layer_sum=False is not supported")
        if model_cfg.get("proj_act_fn", "gelu") != "gelu":
            raise WeightsError(f"{path}: proj_act_fn {model_cfg['proj_act_fn']!r} is not gelu")
        try:
            config = AesConfig(**{k: model_cfg[k] for k in _HEAD_KEYS if k in model_cfg})
            transform = {a: (ckpt["target_transform"][a]["mean"],
                             ckpt["target_transform"][a]["std"]) for a in AXES}
        except (KeyError, TypeError, ValueError) as exc:
            raise WeightsError(f"{path}: unreadable model_cfg/target_transform: {exc}") from exc
        # upstream strips the Lightning wrapper's "model." prefix
        state = {k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()}
        obj = cls(config, transform)
        load_state_dict_strict(obj, state, f"{path} (AesMultiOutput)")
        return obj.to(device).eval()

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": AesConfig()}  # WavLM-base encoder, released heads

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        config = kw.get("config", DEBUG_CONFIG)
        obj = cls(config, kw.get("target_transform", RELEASED_TARGET_TRANSFORM))
        with torch.no_grad():  # upstream initialises these uniformly; break the symmetry
            for param in obj.layer_weights.values():
                param.normal_(0.0, 0.5)
        return obj.to(device).eval()

    # ---- forward

    def forward(self, wav: torch.Tensor, valid: torch.Tensor) -> dict[str, torch.Tensor]:
        """Normalised predictions ``{axis: (B,)}`` for windows ``wav`` (B, T) whose real
        samples are ``valid`` (B, T) bool (upstream ``AesMultiOutput.forward``)."""
        n = self.config.nth_layer
        states, padding = self.wavlm_model(wav, ~valid, n)
        stacked = torch.stack(states, dim=-1)  # (B, T, C, L)
        keep = (~padding).unsqueeze(-1).to(stacked.dtype)  # (B, T, 1)
        preds = {}
        for axis in AXES:
            mix = torch.softmax(self.layer_weights[axis], dim=-1)
            embed = torch.einsum("btcl,l->btc", stacked, mix)
            embed = (embed * keep).sum(dim=1) / keep.sum(dim=1).clamp(min=1)
            if self.config.normalize_embed:
                embed = F.normalize(embed, dim=-1)
            preds[axis] = self.proj_layer[axis](embed).squeeze(-1)
        return preds

    def denormalize(self, axis: str, values: np.ndarray) -> np.ndarray:
        """``pred * std + mean`` of ``axis`` (upstream ``Normalize.inverse``)."""
        mean, std = self.target_transform[axis]
        return values * std + mean

    @torch.no_grad()
    def predict_windows(self, windows: Windows, batch_size: int = 8) -> dict[str, np.ndarray]:
        """De-normalised scores ``{axis: (n_windows,)}`` of every window."""
        mask = windows.sample_mask()
        out: dict[str, list[np.ndarray]] = {a: [] for a in AXES}
        for lo in range(0, len(windows.wavs), max(1, batch_size)):
            wav = torch.from_numpy(windows.wavs[lo:lo + batch_size]).to(self.device)
            valid = torch.from_numpy(mask[lo:lo + batch_size]).to(self.device)
            preds = self(wav, valid)
            for axis in AXES:
                out[axis].append(preds[axis].double().cpu().numpy())
        return {a: self.denormalize(a, np.concatenate(v)) for a, v in out.items()}



# --------------------------------------------------------------------------------------------
# scoring


@dataclass(frozen=True)
class PQOptions:
    """Protocol choices of the PQ metric; defaults are upstream's ``AesPredictor``."""

    #: Axis reported as the metric value (the paper's "PQ"); all four are always computed.
    axis: str = "PQ"
    #: Window length in seconds (upstream ``window_size=10``).
    window_s: float = 10.0
    #: Distance between window starts in seconds (upstream ``hop_size=10``: no overlap).
    hop_s: float = 10.0
    #: Zero-pad and mask the last, shorter window (upstream ``pad_zero=True``).
    pad_last: bool = True
    #: Windows per forward pass; changes speed and memory, not the numbers (up to float
    #: rounding): every window is padded to the same length and masked on its own.
    batch_size: int = 8

    def __post_init__(self) -> None:
        if self.axis not in AXES:
            raise ValueError(f"axis must be one of {AXES}, got {self.axis!r}")


@dataclass(frozen=True)
class PQResult:
    """The clip score and how it was reached."""

    score: float  # options.axis of the clip
    axes: dict[str, float]  # every axis of the clip (CE, CU, PC, PQ)
    window_starts_s: list[float] = field(default_factory=list)
    window_weights: list[float] = field(default_factory=list)  # valid length / window length
    window_scores: dict[str, list[float]] = field(default_factory=dict)  # de-normalised


def score_pq(
    audio: np.ndarray,
    model: AudioboxAesthetics,
    options: PQOptions | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> PQResult:
    """PQ (and CE/CU/PC) of one clip: ``audio`` is float in [-1, 1], (n,) or (n, channels).

    Channels are averaged; audio at another rate is resampled to 16 kHz (soxr), so decode at
    16 kHz to avoid a second resampling.
    """
    o = options or PQOptions()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    windows = make_windows(x, SAMPLE_RATE, o.window_s, o.hop_s, o.pad_last)
    per_window = model.predict_windows(windows, o.batch_size)
    weights = windows.weights
    axes = {a: weighted_mean(per_window[a], weights) for a in AXES}
    return PQResult(
        score=axes[o.axis],
        axes=axes,
        window_starts_s=[float(s) / SAMPLE_RATE for s in windows.starts],
        window_weights=[float(w) for w in weights],
        window_scores={a: [float(v) for v in per_window[a]] for a in AXES},
    )


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class PQ(Metric):
    spec = MetricSpec(
        name="pq", version=VERSION, needs=("audio16k",),
        outputs=(Output("pq", "PQ", DIRECTION),),
        doc="AudioBox-Aesthetics production quality, 10 s windows weighted by valid length")
    Options = PQOptions

    def setup(self) -> None:
        self.model = self.load(AudioboxAesthetics)

    def compute(self, inp) -> dict:
        return {"pq": float(score_pq(inp.audio(SAMPLE_RATE), self.model, self.options).score)}
