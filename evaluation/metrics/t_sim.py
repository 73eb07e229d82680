"""T-Sim (timbre similarity): seed-tts-eval's SIM, WavLM-large + ECAPA-TDNN speaker embeddings.

Reference: ``BytedanceSpeech/seed-tts-eval`` ``cal_sim.sh`` ->
``thirdparty/UniSpeech/downstreams/speaker_verification/verification.py`` with
``--model_name wavlm_large --checkpoint wavlm_large_finetune.pth``, i.e.
``ECAPA_TDNN_SMALL(feat_dim=1024, feat_type='wavlm_large', config_path=None)`` from
``models/ecapa_tdnn.py``, whose upstream is s3prl's ``wavlm_large`` (``UpstreamExpert`` in
``s3prl/upstream/wavlm/expert.py``), and ``torch.load(ckpt)['model']`` loaded on top with
``strict=False``.

Protocol (the defaults of :class:`TSimOptions`):

1. Both waveforms at 16 kHz mono, whole utterance, no VAD, no trimming.
2. Embedding (:meth:`SpeakerVerifier.forward`), one utterance at a time (batch 1, as upstream):
   a. the waveform is normalised to zero mean / unit variance over the whole utterance
      (``F.layer_norm(wav, wav.shape)``, eps 1e-5: s3prl does this because WavLM-large's
      ``cfg.normalize`` is true);
   b. WavLM-large; the ``hidden_states`` are what s3prl's hooks collect: the input of each of
      the 24 transformer layers (the first one is the CNN features after the projection and
      the convolutional position embedding) plus the encoder output after its final layer
      norm -> 25 tensors;
   c. softmax(``feature_weight``)-weighted sum of the 25, transposed to (B, C, T), ``+ 1e-6``,
      ``InstanceNorm1d(1024)`` (no affine, instance statistics);
   d. ECAPA-TDNN "small" (512 channels, three SE-Res2 blocks with dilation 2/3/4, 1536-channel
      aggregation, attentive statistics pooling, BatchNorm, Linear -> 256-d).
3. Score = ``F.cosine_similarity`` of the generated-speech and reference-timbre embeddings, in
   [-1, 1] (not clipped, not x100).

Multi-person instances (:func:`t_sim_multi`): each speaker's part of the generated audio is cut
with the caption's per-speaker timestamps and compared with that speaker's reference wav; the
instance score is the mean over speakers. See :class:`TSimOptions` for the choices
(``segment_mode``, ``missing_timestamps``) and the documented fallback.

Implementation choice, WavLM: we run transformers' ``WavLMModel`` (in the environment, and
checked upstream-equivalent by Hugging Face when they ported the original checkpoints) with our
own state-dict converter from the fairseq/s3prl key names used inside
``wavlm_large_finetune.pth`` (``feature_extract.model.*``). This is more reliable than a
hand-written WavLM: the gated relative position bias, bucketing and weight-normed positional
convolution are the parts most easily got subtly wrong, and they come from a maintained,
tested port; what we own is a key renaming that tests check name by name and shape by shape.
Two transformers details are handled here rather than trusted: (i) transformers 5 reports as
the last of its ``hidden_states`` the *un-normalised* output of the last layer, while s3prl (and
transformers 4) give the encoder output after the final layer norm, so we collect the hidden
states with hooks exactly as s3prl does; (ii) the waveform normalisation (2a) is done by s3prl,
not by the model, so we do it ourselves with s3prl's eps (transformers' feature extractor uses
a different eps).

Loading follows upstream's ``strict=False`` faithfully but loudly: the fine-tuned checkpoint
must provide every ECAPA weight and ``feature_weight``; WavLM weights it lacks are taken from the
plain WavLM-large checkpoint (weights entry ``wavlm-large``), which is what upstream's s3prl
initialisation would leave in place; upstream keys we do not use (the AAM-softmax
``loss_calculator.*``, WavLM's ``mask_emb``) are dropped; any other unknown key is reported in
:attr:`SpeakerVerifier.load_report`.

Not reproduced bit for bit: upstream reads files with librosa and resamples with torchaudio's
sinc ``Resample``; we take audio as :mod:`omni_core.media` decodes it (soxr, channel mean).
Upstream keeps only the first channel of a stereo file; we average the channels as the
protocol says (16 kHz mono).
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import (
    PretrainedComponent,
    Registry,
    load_state_dict_strict,
    load_torch_checkpoint,
    require,
)

from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "SAMPLE_RATE",
    "VERSION",
    "EcapaArch",
    "MultiTSimResult",
    "SpeakerTSim",
    "SpeakerVerifier",
    "SpeakerVerifierArch",
    "TSimOptions",
    "TSimResult",
    "WavLMArch",
    "WavLMHiddenStates",
    "cosine",
    "hf_wavlm_to_upstream",
    "speaker_audio",
    "t_sim",
    "t_sim_multi",
    "upstream_to_model_state_dict",
    "upstream_wavlm_to_hf",
]

VERSION = "1"
DIRECTION = "higher"
SAMPLE_RATE = 16000

log = logging.getLogger(__name__)

FINETUNE_FILE = "wavlm_large_finetune.pth"
WAVLM_ENTRY = "wavlm-large"
WAVLM_FILE = "WavLM-Large.pt"
#: Prefix of the WavLM weights inside the fine-tuned checkpoint (ECAPA_TDNN.feature_extract =
#: s3prl UpstreamExpert, whose ``.model`` is the fairseq-style WavLM).
UPSTREAM_WAVLM_PREFIX = "feature_extract.model."
#: Upstream keys that exist in the checkpoints but take no part in computing an embedding.
UNUSED_UPSTREAM_PREFIXES = ("loss_calculator.", "feature_extract.model.mask_emb")

#: WavLM's smallest input: the CNN's receptive field (one 20 ms frame needs 400 samples).
MIN_SAMPLES = 400


# --------------------------------------------------------------------------------------------
# architecture


@dataclass(frozen=True)
class WavLMArch:
    """The WavLM hyper-parameters (fairseq ``WavLMConfig`` names in comments)."""

    hidden: int = 1024  # encoder_embed_dim
    layers: int = 24  # encoder_layers
    heads: int = 16  # encoder_attention_heads
    ffn: int = 4096  # encoder_ffn_embed_dim
    #: conv_feature_layers: (dim, kernel, stride) per CNN block (50 frames per second at 16 kHz).
    conv: tuple[tuple[int, int, int], ...] = ((512, 10, 5),) + ((512, 3, 2),) * 4 + (
        (512, 2, 2),
    ) * 2
    conv_pos: int = 128  # conv_pos (kernel of the convolutional position embedding)
    conv_pos_groups: int = 16  # conv_pos_groups
    num_buckets: int = 320  # relative position buckets
    max_distance: int = 800  # relative position max distance
    #: cfg.normalize: s3prl normalises each waveform before the model (true for WavLM-large).
    normalize_wav: bool = True

    @property
    def n_hidden_states(self) -> int:
        """What s3prl's hooks collect: one input per layer plus the final encoder output."""
        return self.layers + 1

    def hf_config(self) -> Any:
        """The equivalent ``transformers.WavLMConfig`` (extractor_mode layer_norm, pre-LN)."""
        from transformers import WavLMConfig

        return WavLMConfig(
            hidden_size=self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
            intermediate_size=self.ffn,
            hidden_act="gelu",
            conv_dim=tuple(c[0] for c in self.conv),
            conv_kernel=tuple(c[1] for c in self.conv),
            conv_stride=tuple(c[2] for c in self.conv),
            conv_bias=False,
            feat_extract_norm="layer",
            feat_extract_activation="gelu",
            do_stable_layer_norm=True,
            num_conv_pos_embeddings=self.conv_pos,
            num_conv_pos_embedding_groups=self.conv_pos_groups,
            num_buckets=self.num_buckets,
            max_bucket_distance=self.max_distance,
            layer_norm_eps=1e-5,
            hidden_dropout=0.0,
            attention_dropout=0.0,
            activation_dropout=0.0,
            feat_proj_dropout=0.0,
            layerdrop=0.0,
            mask_time_prob=0.0,
            mask_feature_prob=0.0,
            apply_spec_augment=False,
            add_adapter=False,
        )


@dataclass(frozen=True)
class EcapaArch:
    """``ECAPA_TDNN_SMALL`` hyper-parameters (upstream hard-codes the 1536 and the 128s)."""

    channels: int = 512
    out_channels: int = 1536  # ``self.channels[-1]`` upstream (aggregation conv output)
    emb_dim: int = 256
    scale: int = 8  # Res2 scale
    se_bottleneck: int = 128
    attention_channels: int = 128


@dataclass(frozen=True)
class SpeakerVerifierArch:
    """WavLM upstream + ECAPA head; ``large()`` is seed-tts-eval's model, ``debug()`` the twin."""

    wavlm: WavLMArch = field(default_factory=WavLMArch)
    ecapa: EcapaArch = field(default_factory=EcapaArch)

    @classmethod
    def large(cls) -> SpeakerVerifierArch:
        return cls()

    @classmethod
    def debug(cls) -> SpeakerVerifierArch:
        """Tiny: same CNN strides (50 Hz frames), 2 layers of width 32, ECAPA of width 16.

        The CNN width (16) differs from the transformer width (32) as in the real model (512 vs
        1024): fairseq's WavLM only has ``post_extract_proj`` when the two differ.
        """
        return cls(
            wavlm=WavLMArch(
                hidden=32, layers=2, heads=4, ffn=64,
                conv=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
                conv_pos=16, conv_pos_groups=4, num_buckets=32, max_distance=64,
            ),
            ecapa=EcapaArch(
                channels=16, out_channels=48, emb_dim=16, scale=8, se_bottleneck=8,
                attention_channels=8,
            ),
        )


# --------------------------------------------------------------------------------------------
# ECAPA-TDNN (module names = upstream's, so the checkpoint keys load unchanged)


class _Conv1dReluBn(nn.Module):
    """Conv1d -> ReLU -> BatchNorm1d (upstream's order)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, 1, padding, dilation, bias=True)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(F.relu(self.conv(x)))


class _Res2Conv1dReluBn(nn.Module):
    """Res2Net split: ``scale - 1`` chained conv branches, the last split passed through."""

    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by Res2 scale {scale}")
        self.width = channels // scale
        self.nums = scale if scale == 1 else scale - 1
        self.passthrough = scale != 1
        self.convs = nn.ModuleList(
            nn.Conv1d(self.width, self.width, kernel, 1, padding, dilation, bias=True)
            for _ in range(self.nums)
        )
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(self.nums))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        splits = torch.split(x, self.width, dim=1)
        out = []
        sp = splits[0]
        for i in range(self.nums):
            sp = splits[i] if i == 0 else sp + splits[i]
            sp = self.bns[i](F.relu(self.convs[i](sp)))
            out.append(sp)
        if self.passthrough:
            out.append(splits[self.nums])
        return torch.cat(out, dim=1)


class _SEConnect(nn.Module):
    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class _SERes2Block(nn.Module):
    def __init__(self, channels: int, dilation: int, scale: int, se_bottleneck: int):
        super().__init__()
        # upstream attribute names (CamelCase) are the checkpoint's key names
        self.Conv1dReluBn1 = _Conv1dReluBn(channels, channels)
        self.Res2Conv1dReluBn = _Res2Conv1dReluBn(channels, 3, dilation, dilation, scale)
        self.Conv1dReluBn2 = _Conv1dReluBn(channels, channels)
        self.SE_Connect = _SEConnect(channels, se_bottleneck)
        # in == out channels in ECAPA_TDNN_SMALL, so upstream's optional shortcut conv is absent

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x)))
        return self.SE_Connect(y) + x


class _AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time (no global context)."""

    def __init__(self, dim: int, attention_channels: int):
        super().__init__()
        self.linear1 = nn.Conv1d(dim, attention_channels, kernel_size=1)
        self.linear2 = nn.Conv1d(attention_channels, dim, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = torch.sum(alpha * x, dim=2)
        var = torch.sum(alpha * x**2, dim=2) - mean**2
        return torch.cat([mean, torch.sqrt(var.clamp(min=1e-9))], dim=1)


def _build_ecapa(module: nn.Module, feat_dim: int, arch: EcapaArch) -> None:
    """Attach the ECAPA layers of ``ECAPA_TDNN_SMALL`` to ``module`` under upstream's names."""
    c, s, se = arch.channels, arch.scale, arch.se_bottleneck
    module.layer1 = _Conv1dReluBn(feat_dim, c, kernel=5, padding=2)
    module.layer2 = _SERes2Block(c, dilation=2, scale=s, se_bottleneck=se)
    module.layer3 = _SERes2Block(c, dilation=3, scale=s, se_bottleneck=se)
    module.layer4 = _SERes2Block(c, dilation=4, scale=s, se_bottleneck=se)
    module.conv = nn.Conv1d(3 * c, arch.out_channels, kernel_size=1)
    module.pooling = _AttentiveStatsPool(arch.out_channels, arch.attention_channels)
    module.bn = nn.BatchNorm1d(2 * arch.out_channels)
    module.linear = nn.Linear(2 * arch.out_channels, arch.emb_dim)


# --------------------------------------------------------------------------------------------
# WavLM through transformers, hidden states collected as s3prl does


class WavLMHiddenStates(nn.Module):
    """transformers' ``WavLMModel`` returning s3prl's ``hidden_states`` (layers + 1 tensors)."""

    def __init__(self, arch: WavLMArch):
        super().__init__()
        from transformers import WavLMModel

        self.arch = arch
        self.model = WavLMModel(arch.hf_config())

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) unpadded waveforms -> (layers + 1, B, frames, hidden)."""
        if self.arch.normalize_wav:
            wav = F.layer_norm(wav, wav.shape[-1:])  # s3prl: F.layer_norm(wav, wav.shape)
        inputs: list[torch.Tensor] = []

        def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs.append(args[0] if args else kwargs["hidden_states"])

        handles = [
            layer.register_forward_pre_hook(grab, with_kwargs=True)
            for layer in self.model.encoder.layers
        ]
        try:
            last = self.model(wav).last_hidden_state  # after the encoder's final layer norm
        finally:
            for h in handles:
                h.remove()
        if len(inputs) != self.arch.layers:
            raise RuntimeError(f"collected {len(inputs)} layer inputs, expected {self.arch.layers}")
        return torch.stack([*inputs, last], dim=0)


# --------------------------------------------------------------------------------------------
# checkpoint conversion: fairseq/s3prl WavLM names <-> transformers WavLMModel names

_LAYER_RULES = (  # within encoder.layers.{i}.
    ("self_attn.k_proj.", "attention.k_proj."),
    ("self_attn.q_proj.", "attention.q_proj."),
    ("self_attn.v_proj.", "attention.v_proj."),
    ("self_attn.out_proj.", "attention.out_proj."),
    ("self_attn.grep_linear.", "attention.gru_rel_pos_linear."),
    ("self_attn.grep_a", "attention.gru_rel_pos_const"),
    ("self_attn.relative_attention_bias.", "attention.rel_attn_embed."),
    ("self_attn_layer_norm.", "layer_norm."),
    ("fc1.", "feed_forward.intermediate_dense."),
    ("fc2.", "feed_forward.output_dense."),
    ("final_layer_norm.", "final_layer_norm."),
)
_TOP_RULES = (
    ("layer_norm.", "feature_projection.layer_norm."),
    ("post_extract_proj.", "feature_projection.projection."),
    ("encoder.layer_norm.", "encoder.layer_norm."),
    ("encoder.pos_conv.0.bias", "encoder.pos_conv_embed.conv.bias"),
)
_CONV_RULES = (  # within feature_extractor.conv_layers.{i}.  (extractor_mode layer_norm)
    ("0.weight", "conv.weight"),
    ("0.bias", "conv.bias"),
    ("2.1.weight", "layer_norm.weight"),
    ("2.1.bias", "layer_norm.bias"),
)
_LAYER_RE = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_CONV_RE = re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.(.+)$")


def _weight_norm_names(parametrized: bool) -> tuple[str, str]:
    if parametrized:  # torch.nn.utils.parametrizations.weight_norm (what transformers uses now)
        return ("encoder.pos_conv_embed.conv.parametrizations.weight.original0",
                "encoder.pos_conv_embed.conv.parametrizations.weight.original1")
    return ("encoder.pos_conv_embed.conv.weight_g", "encoder.pos_conv_embed.conv.weight_v")


def _rename(key: str, rules: Sequence[tuple[str, str]], reverse: bool) -> str | None:
    for up, hf in rules:
        src, dst = (hf, up) if reverse else (up, hf)
        if key.startswith(src) if src.endswith(".") else key == src:
            return dst + key[len(src):]
    return None


def _map_key(key: str, reverse: bool, parametrized: bool) -> str | None:
    g, v = _weight_norm_names(parametrized)
    wn = {"encoder.pos_conv.0.weight_g": g, "encoder.pos_conv.0.weight_v": v}
    if reverse:
        wn = {b: a for a, b in wn.items()}
    if key in wn:
        return wn[key]
    m = _LAYER_RE.match(key)
    if m:
        rest = _rename(m.group(2), _LAYER_RULES, reverse)
        return None if rest is None else f"encoder.layers.{m.group(1)}.{rest}"
    m = _CONV_RE.match(key)
    if m:
        rest = _rename(m.group(2), _CONV_RULES, reverse)
        return None if rest is None else f"feature_extractor.conv_layers.{m.group(1)}.{rest}"
    return _rename(key, _TOP_RULES, reverse)


def upstream_wavlm_to_hf(
    state: Mapping[str, torch.Tensor], *, parametrized: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """fairseq/s3prl WavLM keys (no prefix) -> transformers ``WavLMModel`` keys.

    Returns ``(converted, unknown)``: keys with no rule (e.g. ``mask_emb``) are listed, not
    silently dropped. Works on meta tensors (names and shapes only).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        new = _map_key(key, reverse=False, parametrized=parametrized)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def hf_wavlm_to_upstream(
    state: Mapping[str, torch.Tensor], *, parametrized: bool = True
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`upstream_wavlm_to_hf` (tests build upstream-format files with it)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == "masked_spec_embed":
            out["mask_emb"] = value
            continue
        new = _map_key(key, reverse=True, parametrized=parametrized)
        if new is None:
            raise KeyError(f"no upstream name for transformers key {key!r}")
        out[new] = value
    return out


def upstream_to_model_state_dict(
    state: Mapping[str, torch.Tensor], *, parametrized: bool = True
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A whole ``ECAPA_TDNN`` state dict (``torch.load(ckpt)['model']``) -> our key names.

    ``feature_extract.model.*`` (fairseq WavLM) becomes ``feature_extract.model.<transformers
    name>``; ``feature_weight`` and the ECAPA layers keep their upstream names; the upstream-only
    keys in :data:`UNUSED_UPSTREAM_PREFIXES` are dropped. Returns ``(converted, unknown_keys)``.
    """
    wavlm: dict[str, torch.Tensor] = {}
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key.startswith(UNUSED_UPSTREAM_PREFIXES):
            continue
        if key.startswith(UPSTREAM_WAVLM_PREFIX):
            wavlm[key[len(UPSTREAM_WAVLM_PREFIX):]] = value
        elif key == "feature_weight" or key.startswith(_ECAPA_PREFIXES):
            out[key] = value
        else:
            unknown.append(key)
    hf, unknown_wavlm = upstream_wavlm_to_hf(wavlm, parametrized=parametrized)
    unknown += [UPSTREAM_WAVLM_PREFIX + k for k in unknown_wavlm]
    out.update({UPSTREAM_WAVLM_PREFIX + k: v for k, v in hf.items()})
    return out, unknown


_ECAPA_PREFIXES = tuple(
    m + "." for m in ("layer1", "layer2", "layer3", "layer4", "conv", "pooling", "bn", "linear")
)


# --------------------------------------------------------------------------------------------
# the model wrapper


class SpeakerVerifier(PretrainedComponent, nn.Module):
    """seed-tts-eval's SIM model: WavLM-large hidden states -> ECAPA-TDNN -> 256-d embedding.

    State-dict keys: ``feature_weight`` (25 layer weights) and the ECAPA layers (``layer1`` ...
    ``linear``) carry upstream's names and shapes unchanged; ``feature_extract.model.*`` is
    transformers' WavLM (see :func:`upstream_wavlm_to_hf` for the renaming).
    """

    weights_entry = "wavlm-large-sv-ecapa"
    weights_files = (FINETUNE_FILE,)

    def __init__(self, arch: SpeakerVerifierArch | None = None):
        nn.Module.__init__(self)
        self.arch = arch or SpeakerVerifierArch.large()
        feat_dim = self.arch.wavlm.hidden
        self.feature_extract = WavLMHiddenStates(self.arch.wavlm)
        self.feature_weight = nn.Parameter(torch.zeros(self.arch.wavlm.n_hidden_states))
        self.instance_norm = nn.InstanceNorm1d(feat_dim)  # affine=False: no weights
        _build_ecapa(self, feat_dim, self.arch.ecapa)
        #: what loading did: unknown upstream keys, WavLM keys filled from ``wavlm-large``
        self.load_report: dict[str, list[str]] = {"unknown": [], "from_wavlm_large": []}
        self.eval()

    # -- forward ------------------------------------------------------------------------------

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) -> instance-normalised weighted layer sum (B, hidden, frames)."""
        hidden = self.feature_extract(wav)  # (L, B, T, C)
        w = F.softmax(self.feature_weight, dim=-1).view(-1, 1, 1, 1)
        x = (w * hidden).sum(dim=0).transpose(1, 2) + 1e-6
        return self.instance_norm(x)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """The ECAPA-TDNN head: (B, hidden, frames) normalised features -> (B, emb_dim)."""
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(out)))

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(B, samples) 16 kHz waveforms of equal length (upstream uses B = 1) -> (B, emb)."""
        return self.head(self.features(wav))

    @torch.inference_mode()
    def embed(self, audio: np.ndarray) -> np.ndarray:
        """One whole 16 kHz mono utterance -> its speaker embedding (float32, ``emb_dim``)."""
        a = np.asarray(audio, dtype=np.float32)
        if a.ndim != 1:
            raise OmniError(f"T-Sim expects a mono waveform, got shape {a.shape}")
        if a.shape[0] < MIN_SAMPLES:
            raise OmniError(
                f"T-Sim needs at least {MIN_SAMPLES} samples ({MIN_SAMPLES / SAMPLE_RATE:.3f} s) "
                f"of 16 kHz audio, got {a.shape[0]}"
            )
        if not np.isfinite(a).all():
            raise OmniError("T-Sim input audio contains NaN or infinite samples")
        device = self.feature_weight.device
        wav = torch.from_numpy(np.ascontiguousarray(a)).to(device)[None]
        return self(wav)[0].float().cpu().numpy()

    # -- construction -------------------------------------------------------------------------

    @classmethod
    def build(cls, arch: SpeakerVerifierArch, device: str = "cpu") -> SpeakerVerifier:
        """Randomly initialised (seed the global RNG first for reproducible weights)."""
        return cls(arch).to(device).eval()

    def load_upstream_state_dict(
        self,
        state: Mapping[str, torch.Tensor],
        wavlm_fallback: Mapping[str, torch.Tensor] | None = None,
        *,
        assign: bool = False,
    ) -> None:
        """Load ``torch.load(wavlm_large_finetune.pth)['model']`` (upstream key names).

        ``wavlm_fallback``: a plain WavLM state dict (``WavLM-Large.pt``'s ``model``, no prefix)
        supplying WavLM weights the fine-tuned file lacks (upstream's strict=False semantics).
        Every ECAPA weight and ``feature_weight`` must be in ``state``. ``assign``: adopt the
        given tensors (for a model built on the meta device) instead of copying into it.
        """
        parametrized = hasattr(
            self.feature_extract.model.encoder.pos_conv_embed.conv, "parametrizations"
        )
        converted, unknown = upstream_to_model_state_dict(state, parametrized=parametrized)
        expected = self.state_dict()
        missing = [k for k in expected if k not in converted]
        filled: list[str] = []
        if missing and wavlm_fallback is not None:
            extra, _ = upstream_wavlm_to_hf(wavlm_fallback, parametrized=parametrized)
            for k in missing:
                inner = k.removeprefix("feature_extract.model.")
                if k.startswith("feature_extract.model.") and inner in extra:
                    converted[k] = extra[inner]
                    filled.append(k)
            missing = [k for k in missing if k not in converted]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise WeightsError(
                f"T-Sim checkpoint lacks {len(missing)} weights the model needs ({shown}); "
                f"is it {FINETUNE_FILE} (ECAPA_TDNN_SMALL on wavlm_large)?"
            )
        unknown += [k for k in converted if k not in expected]
        for k in unknown:
            converted.pop(k, None)
        load_state_dict_strict(self, converted, "T-Sim checkpoint", assign=assign)
        if assign:
            unset = [n for n, t in [*self.named_parameters(), *self.named_buffers()] if t.is_meta]
            if unset:
                raise WeightsError(f"T-Sim: weights still unset after loading: {unset[:5]}")
        if unknown:
            log.warning("T-Sim: ignored %d unknown checkpoint keys: %s", len(unknown), unknown[:5])
        self.load_report = {"unknown": sorted(unknown), "from_wavlm_large": sorted(filled)}
        self.eval()

    @classmethod
    def from_pretrained(
        cls,
        root: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        *,
        registry: Registry | None = None,
        **kw: Any,
    ) -> Self:
        """Load ``wavlm_large_finetune.pth`` (and ``wavlm-large`` only if it lacks WavLM weights).

        ``arch=`` overrides the architecture (tests load tiny upstream-format files with it).
        """
        # the second entry must resolve against the same manifest as the first
        return super().from_pretrained(root, device, registry=registry, _registry=registry, **kw)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        arch = kw.pop("arch", None) or SpeakerVerifierArch.large()
        registry = kw.pop("_registry", None)
        if kw:
            raise TypeError(f"unexpected arguments: {sorted(kw)}")
        ckpt = load_torch_checkpoint(paths[FINETUNE_FILE])
        state = ckpt.get("model", ckpt)
        if not isinstance(state, Mapping):
            raise WeightsError(f"{paths[FINETUNE_FILE]}: 'model' is not a state dict")
        with torch.device("meta"):  # no 300M-parameter random init just to overwrite it
            model = cls(arch)
        fallback = None
        if _missing_wavlm(state, model):
            root = paths[FINETUNE_FILE].parent.parent  # <root>/<entry>/<file>
            wavlm_path = require(WAVLM_ENTRY, WAVLM_FILE, root, registry=registry)
            wavlm_ckpt = load_torch_checkpoint(wavlm_path)
            fallback = wavlm_ckpt.get("model", wavlm_ckpt)
        model.load_upstream_state_dict(state, fallback, assign=True)
        return model.to(device).eval()

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"arch": SpeakerVerifierArch.large()}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        arch = kw.pop("arch", None) or SpeakerVerifierArch.debug()
        if kw:
            raise TypeError(f"unexpected arguments: {sorted(kw)}")
        model = cls.build(arch, device)
        with torch.no_grad():  # non-uniform layer weights so the weighted sum is exercised
            model.feature_weight.normal_(0.0, 1.0)
        return model


def _missing_wavlm(state: Mapping[str, torch.Tensor], model: SpeakerVerifier) -> bool:
    """True when the fine-tuned state lacks some WavLM weight the model needs."""
    converted, _ = upstream_to_model_state_dict(
        {k: v for k, v in state.items() if k.startswith(UPSTREAM_WAVLM_PREFIX)},
        parametrized=hasattr(
            model.feature_extract.model.encoder.pos_conv_embed.conv, "parametrizations"
        ),
    )
    return any(
        k.startswith("feature_extract.model.") and k not in converted for k in model.state_dict()
    )


# --------------------------------------------------------------------------------------------
# protocol


@dataclass(frozen=True)
class TSimOptions:
    """Every T-Sim choice; defaults = seed-tts-eval's SIM as the paper uses it.

    Attributes:
        sample_rate: the model's rate. Inputs at another rate are resampled with
            :func:`omni_core.media.audio.resample` (upstream: torchaudio's sinc Resample).
        checkpoint: the weights entry the scores come from (recorded with the results;
            ``wavlm-large-sv-ecapa`` = ``wavlm_large_finetune.pth``).
        segment_mode: multi-person only. ``"concat"``: a speaker's turns (caption timestamps)
            are concatenated into one utterance and embedded once, the closest thing to
            upstream's one-utterance-per-speaker protocol; ``"per_turn"``: each turn is
            embedded alone and the speaker's score is the mean of the per-turn cosines.
        missing_timestamps: multi-person only, when the caption gives no timestamps for a
            speaker. ``"whole_audio"``: compare the whole generated track with that speaker's
            reference (the result is flagged ``fallback="whole_audio"``; it mixes the other
            speakers' voices in, so it understates separation); ``"skip"``: the speaker gets no
            score (reason recorded) and the instance is scored on the others, or not at all.
        min_segment_s: multi-person only: segments (after clipping to the audio) shorter than
            this are dropped; a speaker with no segment left is scored as in
            ``missing_timestamps``. The floor is WavLM's receptive field (400 samples).
    """

    sample_rate: int = SAMPLE_RATE
    checkpoint: str = "wavlm-large-sv-ecapa"
    segment_mode: str = "concat"
    missing_timestamps: str = "whole_audio"
    min_segment_s: float = 0.0

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"T-Sim's model runs at {SAMPLE_RATE} Hz, got {self.sample_rate}")
        if self.segment_mode not in ("concat", "per_turn"):
            raise ValueError(f"segment_mode must be concat or per_turn, got {self.segment_mode!r}")
        if self.missing_timestamps not in ("whole_audio", "skip"):
            raise ValueError(
                f"missing_timestamps must be whole_audio or skip, got {self.missing_timestamps!r}"
            )
        if self.min_segment_s < 0:
            raise ValueError("min_segment_s must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TSimResult:
    """One generated utterance against one reference."""

    score: float  # cosine in [-1, 1]
    generated_s: float  # seconds of generated audio embedded
    reference_s: float


@dataclass(frozen=True)
class SpeakerTSim:
    """One speaker of a multi-person instance."""

    speaker: str
    score: float | None  # None: not computed (see ``reason``)
    n_segments: int  # turns used (0 when the whole track was used or nothing was scored)
    speech_s: float  # seconds of generated audio embedded for this speaker
    fallback: str | None = None  # "whole_audio" when no usable timestamps
    reason: str | None = None
    turn_scores: tuple[float, ...] = ()  # per-turn cosines (segment_mode "per_turn")


@dataclass(frozen=True)
class MultiTSimResult:
    """A multi-person instance: per-speaker scores and their mean."""

    score: float | None  # mean over speakers with a score; None if none has one
    speakers: tuple[SpeakerTSim, ...]

    @property
    def used_fallback(self) -> bool:
        return any(s.fallback for s in self.speakers)


def cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """``torch.nn.functional.cosine_similarity`` of two embeddings (upstream's score)."""
    ta = torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(1, -1)
    tb = torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(1, -1)
    if ta.shape != tb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    return float(F.cosine_similarity(ta, tb)[0])


def _at_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:  # (n, channels), as omni_core.media returns with mono=False
        a = a.mean(axis=1, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        a = resample(a, sample_rate, SAMPLE_RATE)
    return a


def t_sim(
    generated: np.ndarray,
    reference: np.ndarray,
    model: SpeakerVerifier,
    options: TSimOptions | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> TSimResult:
    """Cosine between the speaker embeddings of a generated utterance and a reference wav.

    Both are whole utterances (decoded, any rate given by ``sample_rate``; mono or (n, ch)).
    """
    gen = _at_16k(generated, sample_rate)
    ref = _at_16k(reference, sample_rate)
    score = cosine(model.embed(gen), model.embed(ref))
    return TSimResult(score, gen.shape[0] / SAMPLE_RATE, ref.shape[0] / SAMPLE_RATE)


Segments = Mapping[str, Sequence[tuple[float, float]] | None]


def speaker_audio(
    audio: np.ndarray, segments: Sequence[tuple[float, float]], min_segment_s: float = 0.0
) -> list[np.ndarray]:
    """The 16 kHz pieces of ``audio`` inside ``segments`` ((start_s, end_s), clipped, sorted).

    Sample ``i`` belongs to ``[start, end)`` when ``round(start * 16000) <= i <
    round(end * 16000)``; pieces under ``max(min_segment_s, 400 samples)`` are dropped.
    """
    n = audio.shape[0]
    floor = max(MIN_SAMPLES, int(round(min_segment_s * SAMPLE_RATE)))
    pieces = []
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"segment ({start}, {end}) is not finite")
        a = min(max(int(round(start * SAMPLE_RATE)), 0), n)
        b = min(max(int(round(end * SAMPLE_RATE)), 0), n)
        if b - a >= floor:
            pieces.append(audio[a:b])
    return pieces


def t_sim_multi(
    generated: np.ndarray,
    segments: Segments | None,
    references: Mapping[str, np.ndarray],
    model: SpeakerVerifier,
    options: TSimOptions | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> MultiTSimResult:
    """Per-speaker T-Sim of a multi-person instance, and the mean over speakers.

    Args:
        generated: the whole generated track (decoded; rate ``sample_rate``).
        segments: speaker -> the (start_s, end_s) turns the caption assigns to that speaker in
            the generated audio; ``None`` (no timestamps at all) or a missing/empty entry uses
            ``options.missing_timestamps``.
        references: speaker -> that speaker's reference timbre wav (same rate).
    """
    opts = options or TSimOptions()
    gen = _at_16k(generated, sample_rate)
    segs = segments or {}
    whole: np.ndarray | None = None
    results = []
    for speaker in references:
        ref_emb = model.embed(_at_16k(references[speaker], sample_rate))
        turns = segs.get(speaker) or ()
        pieces = speaker_audio(gen, turns, opts.min_segment_s) if turns else []
        if not pieces:
            why = "no timestamps" if not turns else "no segment long enough"
            if opts.missing_timestamps == "skip":
                results.append(SpeakerTSim(speaker, None, 0, 0.0, reason=why))
                continue
            if whole is None:
                whole = model.embed(gen)
            results.append(SpeakerTSim(
                speaker, cosine(whole, ref_emb), 0, gen.shape[0] / SAMPLE_RATE,
                fallback="whole_audio", reason=why,
            ))
            continue
        speech_s = sum(p.shape[0] for p in pieces) / SAMPLE_RATE
        if opts.segment_mode == "concat":
            score = cosine(model.embed(np.concatenate(pieces)), ref_emb)
            results.append(SpeakerTSim(speaker, score, len(pieces), speech_s))
        else:
            per = tuple(cosine(model.embed(p), ref_emb) for p in pieces)
            results.append(SpeakerTSim(
                speaker, float(np.mean(per)), len(pieces), speech_s, turn_scores=per
            ))
    scored = [s.score for s in results if s.score is not None]
    return MultiTSimResult(float(np.mean(scored)) if scored else None, tuple(results))


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class TSim(Metric):
    spec = MetricSpec(
        name="t_sim", version=VERSION, needs=("audio16k", "ref_audios", "caption"),
        outputs=(Output("t_sim", "T-Sim", DIRECTION, split=True),),
        doc="WavLM-large + ECAPA speaker-embedding cosine between generated speech and each "
            "timbre reference; multi-person: per speaker via the caption's timestamps")
    Options = TSimOptions

    def setup(self) -> None:
        self.model = self.load(SpeakerVerifier)

    def compute(self, inp) -> dict:
        audio = inp.audio(SAMPLE_RATE)
        refs = inp.reference_audio(SAMPLE_RATE)
        if not refs:
            return {"t_sim_reason": "the instance has no timbre reference"}
        if len(refs) == 1:
            return {"t_sim": t_sim(audio, refs[0], self.model, self.options).score}
        subjects = [f"<sub{k}>" for k in range(1, len(refs) + 1)]
        stamps = inp.caption.speaker_timestamps
        segments = {s: stamps[s] for s in subjects if s in stamps} or None
        res = t_sim_multi(audio, segments, dict(zip(subjects, refs, strict=True)), self.model,
                          self.options)
        if res.score is None:
            return {"t_sim_reason": "; ".join(s.reason for s in res.speakers if s.reason)
                    or "no speaker could be scored"}
        return {"t_sim": float(res.score)}
