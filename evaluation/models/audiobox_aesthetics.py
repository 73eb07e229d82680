"""The AudioBox-Aesthetics predictor (facebook/audiobox-aesthetics): WavLM-base + four heads.

Reference: ``audiobox_aesthetics.model.aes.AesMultiOutput`` of
https://github.com/facebookresearch/audiobox-aesthetics (pip ``audiobox_aesthetics`` 0.0.4,
source revision 2618e9d), with its released ``checkpoint.pt``. The PQ metric
(``evaluation.metrics.pq``) windows a clip, runs this network and weights the window scores.

The network predicts four normalised axes per window (CE content enjoyment, CU content
usefulness, PC production complexity, PQ production quality); each is de-normalised with the
target mean/std stored in the checkpoint (``pred * std + mean``). The encoder is the suite's
one WavLM (:class:`omni_core.models.wavlm.WavLM`, WavLM-base: 7-layer conv front end, 12 post-LN
transformer layers with gated relative position bias); its padding mask zeroes padded frames
and masks them as attention keys. Each axis has its own softmax weights over the 13 hidden
states (input + 12 layers), a masked mean over time, L2 normalisation and an MLP head (released
config: 5 linear layers with LayerNorm + GELU between them). Upstream runs in fp32: its
``precision`` field never enables autocast (it compares the converted ``torch.dtype`` with
strings), so neither do we.

The state dict is upstream's (``wavlm_model.*`` in fairseq names, ``layer_weights.<axis>``,
``proj_layer.<axis>.<i>.*``), so that the original ``checkpoint.pt`` (``{"state_dict":
{"model.<key>": ...}, "model_cfg": {...}, "target_transform": {axis: {"mean", "std"}}}``) loads
with ``strict=True``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError
from omni_core.models.wavlm import WavLM, WavLMArch
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "AXES",
    "DEBUG_CONFIG",
    "RELEASED_TARGET_TRANSFORM",
    "SAMPLE_RATE",
    "AesConfig",
    "AudioboxAesthetics",
    "Windows",
]

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

    def wavlm(self) -> WavLMArch:
        """The encoder as :class:`~omni_core.models.wavlm.WavLM` builds it: WavLM-base's
        GroupNorm front end, post-LN layers, no waveform normalisation (upstream's
        ``normalize: False``) and the ``mask_emb`` the checkpoint holds."""
        return WavLMArch(
            hidden=self.embed_dim, layers=self.num_layers, heads=self.num_heads,
            ffn=self.ffn_dim, conv=self.conv_layers, conv_pos=self.conv_pos,
            conv_pos_groups=self.conv_pos_groups, num_buckets=self.num_buckets,
            max_distance=self.max_distance, normalize_wav=False, extractor_mode="default",
            layer_norm_first=False, mask_emb=True)


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
# the network (state-dict layout of upstream's AesMultiOutput)


@dataclass(frozen=True)
class Windows:
    """A clip cut into fixed-length windows (upstream ``make_inference_batch``): the batch
    :meth:`AudioboxAesthetics.predict_windows` runs, made by the PQ metric's ``make_windows``."""

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
        self.wavlm_model = WavLM(config.wavlm(), upstream_names=True)
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
        states, padding = self.wavlm_model.hidden_states(wav, ~valid)
        stacked = states[: self.config.nth_layer]  # (L, B, T, C)
        keep = (~padding).unsqueeze(-1).to(stacked.dtype)  # (B, T, 1)
        preds = {}
        for axis in AXES:
            mix = torch.softmax(self.layer_weights[axis], dim=-1)
            embed = torch.einsum("lbtc,l->btc", stacked, mix)
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
