"""Speaker embeddings: WavLM-large + ECAPA-TDNN speaker verification (seed-tts-eval's SIM
model, ``wavlm_large_finetune.pth``), shared by the evaluator's T-Sim and the cross-pair
curation's check that a cloned voice is still its speaker.

The embedding protocol is described in :mod:`evaluation.metrics.t_sim`.

WavLM is the suite's one WavLM (:mod:`.wavlm`: transformers' ``WavLMModel`` with our
state-dict converter from the fairseq/s3prl key names used inside ``wavlm_large_finetune.pth``,
``feature_extract.model.*``, and s3prl's hidden states and waveform normalisation).

Loading follows upstream's ``strict=False`` faithfully but loudly: the fine-tuned checkpoint
must provide every ECAPA weight and ``feature_weight``; WavLM weights it lacks are taken from the
plain WavLM-large checkpoint (weights entry ``wavlm-large``), which is what upstream's s3prl
initialisation would leave in place; upstream keys we do not use (the AAM-softmax
``loss_calculator.*``, WavLM's ``mask_emb``) are dropped; any other unknown key is reported in
:attr:`SpeakerVerifier.load_report`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

from .wavlm import WavLM, WavLMArch, upstream_wavlm_to_hf

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
# checkpoint conversion: the whole ECAPA_TDNN state dict


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
    transformers' WavLM (see :func:`~.wavlm.upstream_wavlm_to_hf` for the renaming).
    """

    weights_entry = "wavlm-large-sv-ecapa"
    weights_files = (FINETUNE_FILE,)
    #: cosine at or above which two embeddings count as one speaker: the cross-pair clone
    #: check's default (``check.min_similarity: null``). A choice, not measured here (no
    #: checkpoint on these machines); the lite encoder's is measured (:mod:`.ge2e`)
    same_speaker_threshold: ClassVar[float] = 0.5
    #: ``wavlm-large`` only fills WavLM weights the fine-tuned file lacks (upstream's
    #: strict=False): read only then. ``arch=`` (a keyword of ``from_pretrained``) overrides the
    #: architecture; tests load tiny upstream-format files with it.
    extra_weights = {WAVLM_ENTRY: (WAVLM_FILE,)}
    optional_weights = frozenset({WAVLM_ENTRY})

    def __init__(self, arch: SpeakerVerifierArch | None = None):
        nn.Module.__init__(self)
        self.arch = arch or SpeakerVerifierArch.large()
        feat_dim = self.arch.wavlm.hidden
        self.feature_extract = WavLM(self.arch.wavlm)
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
        device = self.feature_weight.device  # below: a copy (the input may be read-only)
        wav = torch.from_numpy(np.array(a, dtype=np.float32)).to(device)[None]
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
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        arch = kw.pop("arch", None) or SpeakerVerifierArch.large()
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
            wavlm_ckpt = load_torch_checkpoint(paths[f"{WAVLM_ENTRY}/{WAVLM_FILE}"])
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


