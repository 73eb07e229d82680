"""WavLM, the one implementation: transformers' ``WavLMModel`` read and run the fairseq way.

Two models of the suite carry a WavLM encoder, both stored with the fairseq key names of the
original WavLM code:

* the speaker verifier (:mod:`.speaker`; T-Sim and the cross-pair voice check): WavLM-large
  inside ``wavlm_large_finetune.pth`` (s3prl's copy: ``extractor_mode="layer_norm"``,
  pre-LN transformer layers, waveform normalised first);
* AudioBox-Aesthetics (``evaluation.models.audiobox_aesthetics``, the PQ metric): WavLM-base
  inside ``checkpoint.pt`` (``extractor_mode="default"``, i.e. one GroupNorm in the first conv
  block, post-LN layers, raw waveform, zero-padded windows with a padding mask).

Both run on transformers' ``WavLMModel`` (:class:`WavLM`), which Hugging Face checked against
the original checkpoints when they ported them: the gated relative position bias, its
bucketing and the weight-normed positional convolution are the parts most easily got subtly
wrong, and they come from a maintained, tested port. What we own is a key renaming
(:func:`upstream_wavlm_to_hf` / :func:`hf_wavlm_to_upstream`), which the tests check name by
name and shape by shape, and two details handled here rather than trusted to transformers:

1. the hidden states are collected with hooks as s3prl does (the input of every layer, then the
   encoder output): transformers 5 reports the *un-normalised* last layer output of a pre-LN
   encoder, where s3prl (and transformers 4) give it after the final layer norm;
2. a padding mask is brought to the frame rate with fairseq's rule (:func:`frame_padding_mask`),
   not with transformers' conv-length formula, which marks one frame fewer as real in some
   windows.

The waveform normalisation of s3prl (``F.layer_norm`` over the utterance, eps 1e-5) is done
here too: transformers leaves it to its feature extractor, with another eps.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "WavLM",
    "WavLMArch",
    "frame_padding_mask",
    "hf_wavlm_to_upstream",
    "relative_position_buckets",
    "upstream_wavlm_to_hf",
]

ExtractorMode = Literal["layer_norm", "default"]


# --------------------------------------------------------------------------------------------
# architecture


@dataclass(frozen=True)
class WavLMArch:
    """The WavLM hyper-parameters (fairseq ``WavLMConfig`` names in comments); WavLM-large as
    the speaker verifier uses it by default."""

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
    #: extractor_mode: ``layer_norm`` (a LayerNorm in every conv block, WavLM-large) or
    #: ``default`` (one GroupNorm in the first block, WavLM-base).
    extractor_mode: ExtractorMode = "layer_norm"
    #: layer_norm_first: pre-LN layers (WavLM-large) or post-LN layers (WavLM-base).
    layer_norm_first: bool = True
    #: Keep the masked-prediction embedding (``mask_emb``). It takes no part at inference, but a
    #: checkpoint that is loaded strictly (AudioBox-Aesthetics) holds it.
    mask_emb: bool = False

    def __post_init__(self) -> None:
        if self.extractor_mode not in ("layer_norm", "default"):
            raise ValueError(f"extractor_mode must be layer_norm or default, got "
                             f"{self.extractor_mode!r}")

    @property
    def n_hidden_states(self) -> int:
        """What s3prl's hooks collect: one input per layer plus the final encoder output."""
        return self.layers + 1

    @property
    def downsample(self) -> int:
        """Samples per encoder frame (product of the conv strides)."""
        return math.prod(stride for _, _, stride in self.conv)

    def hf_config(self) -> Any:
        """The equivalent ``transformers.WavLMConfig`` (no dropout, no masking, no adapter)."""
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
            feat_extract_norm="layer" if self.extractor_mode == "layer_norm" else "group",
            feat_extract_activation="gelu",
            do_stable_layer_norm=self.layer_norm_first,
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
            # transformers builds ``masked_spec_embed`` only when masking is on; masking itself
            # only ever happens in training inside WavLMModel.forward, which WavLM never calls
            mask_time_prob=0.05 if self.mask_emb else 0.0,
            mask_feature_prob=0.0,
            apply_spec_augment=self.mask_emb,
            add_adapter=False,
        )


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
#: Within ``feature_extractor.conv_layers.{i}.``: fairseq wraps each conv block in a Sequential
#: (conv, dropout, norm, GELU); its norm is a LayerNorm between two transposes in ``layer_norm``
#: mode and a bare GroupNorm (first block only) in ``default`` mode.
_CONV_RULES: dict[str, tuple[tuple[str, str], ...]] = {
    "layer_norm": (
        ("0.weight", "conv.weight"),
        ("0.bias", "conv.bias"),
        ("2.1.weight", "layer_norm.weight"),
        ("2.1.bias", "layer_norm.bias"),
    ),
    "default": (
        ("0.weight", "conv.weight"),
        ("0.bias", "conv.bias"),
        ("2.weight", "layer_norm.weight"),
        ("2.bias", "layer_norm.bias"),
    ),
}
_LAYER_RE = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_CONV_RE = re.compile(r"^feature_extractor\.conv_layers\.(\d+)\.(.+)$")
_MASK_EMB = ("mask_emb", "masked_spec_embed")


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


def _map_key(key: str, reverse: bool, parametrized: bool,
             extractor_mode: ExtractorMode = "layer_norm") -> str | None:
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
        rest = _rename(m.group(2), _CONV_RULES[extractor_mode], reverse)
        return None if rest is None else f"feature_extractor.conv_layers.{m.group(1)}.{rest}"
    return _rename(key, _TOP_RULES, reverse)


def upstream_wavlm_to_hf(
    state: Mapping[str, torch.Tensor], *, parametrized: bool = True,
    extractor_mode: ExtractorMode = "layer_norm",
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """fairseq/s3prl WavLM keys (no prefix) -> transformers ``WavLMModel`` keys.

    Returns ``(converted, unknown)``: keys with no rule (e.g. ``mask_emb``, which the speaker
    verifier does not keep) are listed, not silently dropped. Works on meta tensors (names and
    shapes only).
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        new = _map_key(key, reverse=False, parametrized=parametrized,
                       extractor_mode=extractor_mode)
        if new is None:
            unknown.append(key)
        else:
            out[new] = value
    return out, unknown


def hf_wavlm_to_upstream(
    state: Mapping[str, torch.Tensor], *, parametrized: bool = True,
    extractor_mode: ExtractorMode = "layer_norm",
) -> dict[str, torch.Tensor]:
    """The inverse of :func:`upstream_wavlm_to_hf` (tests build upstream-format files with it)."""
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key == _MASK_EMB[1]:
            out[_MASK_EMB[0]] = value
            continue
        new = _map_key(key, reverse=True, parametrized=parametrized,
                       extractor_mode=extractor_mode)
        if new is None:
            raise KeyError(f"no upstream name for transformers key {key!r}")
        out[new] = value
    return out


# --------------------------------------------------------------------------------------------
# padding and position buckets


def frame_padding_mask(sample_padding: torch.Tensor, n_frames: int) -> torch.Tensor:
    """Encoder-frame padding from sample padding (fairseq's ``forward_padding_mask``).

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
    """(q_len, k_len) bucket ids of key - query offsets, as :class:`WavLM`'s attention computes
    them (T5/WavLM bidirectional bucketing, by transformers' own code).

    Half of the buckets per direction; the first half of those are exact offsets, the rest
    grow logarithmically up to ``max_distance`` and saturate.
    """
    from transformers.models.wavlm.modeling_wavlm import WavLMAttention

    with torch.device("meta"):  # only the bucketing is used: no weights needed
        attention = WavLMAttention(embed_dim=1, num_heads=1, num_buckets=num_buckets,
                                   max_distance=max_distance, has_relative_position_bias=False)
    rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
    return attention._relative_positions_bucket(rel)


# --------------------------------------------------------------------------------------------
# the module


class WavLM(nn.Module):
    """transformers' ``WavLMModel`` (``self.model``) returning s3prl's hidden states.

    ``upstream_names=True`` makes ``state_dict()`` and ``load_state_dict()`` speak the fairseq
    key names (``feature_extractor.conv_layers.0.0.weight``, ``encoder.pos_conv.0.weight_g``,
    ``mask_emb`` ...), so that a model holding this module reads an upstream checkpoint
    strictly without renaming it first; otherwise the keys are transformers' (``model.*``).
    """

    def __init__(self, arch: WavLMArch, *, upstream_names: bool = False) -> None:
        super().__init__()
        from transformers import WavLMModel

        self.arch = arch
        self.model = WavLMModel(arch.hf_config())
        if upstream_names:
            self.register_state_dict_post_hook(_state_dict_to_upstream)
            self.register_load_state_dict_pre_hook(_state_dict_from_upstream)

    @property
    def parametrized(self) -> bool:
        """Whether the positional conv uses torch's parametrized weight norm (key names)."""
        return hasattr(self.model.encoder.pos_conv_embed.conv, "parametrizations")

    def forward(self, wav: torch.Tensor,
                sample_padding: torch.Tensor | None = None) -> torch.Tensor:
        """(B, samples) waveforms -> hidden states (layers + 1, B, frames, hidden)."""
        return self.hidden_states(wav, sample_padding)[0]

    def hidden_states(
        self, wav: torch.Tensor, sample_padding: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The hidden states s3prl's hooks collect (the input of each layer, then the encoder
        output: ``(layers + 1, B, frames, hidden)``) and the frame padding.

        ``sample_padding`` ((B, samples) bool, True on padding): padded frames are zeroed
        before the positional convolution and masked as attention keys, as in fairseq's WavLM;
        the frame padding returned is :func:`frame_padding_mask` of it (``None`` without it).
        """
        if self.arch.normalize_wav:
            wav = F.layer_norm(wav, wav.shape[-1:])  # s3prl: F.layer_norm(wav, wav.shape)
        m = self.model
        feats = m.feature_extractor(wav).transpose(1, 2)
        padding = (None if sample_padding is None
                   else frame_padding_mask(sample_padding, feats.shape[1]))
        x, _ = m.feature_projection(feats)
        inputs: list[torch.Tensor] = []

        def grab(_module: nn.Module, args: tuple, kwargs: dict) -> None:
            inputs.append(args[0] if args else kwargs["hidden_states"])

        handles = [layer.register_forward_pre_hook(grab, with_kwargs=True)
                   for layer in m.encoder.layers]
        try:
            with warnings.catch_warnings():
                # transformers hands torch a bool key padding mask next to the float position
                # bias; torch merges them correctly but warns that it may stop doing so
                warnings.filterwarnings("ignore", message="Support for mismatched key_padding")
                last = m.encoder(x, attention_mask=None if padding is None else ~padding
                                 ).last_hidden_state
        finally:
            for h in handles:
                h.remove()
        if len(inputs) != self.arch.layers:
            raise RuntimeError(f"collected {len(inputs)} layer inputs, expected {self.arch.layers}")
        return torch.stack([*inputs, last], dim=0), padding


def _state_dict_to_upstream(module: WavLM, state_dict: dict[str, Any], prefix: str,
                            _metadata: Any) -> None:
    """``state_dict`` post-hook: this module's keys under their fairseq names, in place."""
    inner = prefix + "model."
    items = list(state_dict.items())
    state_dict.clear()
    for key, value in items:
        if key.startswith(inner):
            rest = key[len(inner):]
            up = (_MASK_EMB[0] if rest == _MASK_EMB[1] else
                  _map_key(rest, True, module.parametrized, module.arch.extractor_mode))
            if up is None:
                raise KeyError(f"no upstream name for transformers key {rest!r}")
            key = prefix + up
        state_dict[key] = value


def _state_dict_from_upstream(module: WavLM, state_dict: dict[str, Any], prefix: str,
                              *_: Any) -> None:
    """``load_state_dict`` pre-hook: fairseq names under this module -> transformers names.
    Keys without a rule stay as they are, so that a strict load reports them."""
    for key in [k for k in state_dict if k.startswith(prefix)]:
        rest = key[len(prefix):]
        if rest.startswith("model."):
            continue
        hf = (_MASK_EMB[1] if rest == _MASK_EMB[0] else
              _map_key(rest, False, module.parametrized, module.arch.extractor_mode))
        if hf is not None:
            state_dict[prefix + "model." + hf] = state_dict.pop(key)
