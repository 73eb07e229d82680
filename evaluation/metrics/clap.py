"""CLAP: cosine between the LAION-CLAP embeddings of the generated audio and of its caption.

Reference: hkchengrex/av-benchmark (``extract.py``/``extract_text.py``/``evaluate.py``), which runs
``laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-base")`` with
``music_speech_audioset_epoch_15_esc_89.98.pt`` and reports the mean of per-pair cosines, not
scaled. Verse-Bench uses the fusion checkpoint ``630k-audioset-fusion-best.pt`` (HTSAT-tiny);
both are selectable (:data:`CHECKPOINTS`). The network, tokenizer and feature code are
laion_clap's own (1.1.7), built offline (``omni_core.hf_offline``); this module only supplies
the inputs, deterministically. Per clip:

1. mono, 48 kHz (the caller decodes at 48 kHz through ``omni_core.media``; another rate is
   resampled with soxr);
2. optional av-benchmark preprocessing, off by default (:class:`ClapOptions`): keep only the
   first ``max_seconds`` and subtract the mean;
3. int16 quantisation round trip (``float32_to_int16`` then ``int16_to_float32``), what
   ``get_audio_embedding_from_data`` does on numpy input. av-benchmark passes tensors with
   ``use_tensor=True``, which skips it (``int16_round_trip=False``); the difference is below
   the int16 step;
4. one 10 s window (480 000 samples): longer audio is cropped at a random offset upstream
   (``np.random.randint`` on the global generator, so scores change run to run); here the offset
   comes from ``numpy.random.RandomState(seed)``, the very draw upstream makes after
   ``np.random.seed(seed)``. Shorter audio is repeat-padded as upstream: tiled a whole number of
   times, then zero-filled to 10 s. The fusion model sees a global view of the whole clip plus
   three random 10 s chunks; its draws come from the global generator seeded with ``seed``
   (restored afterwards);
5. the text goes through RoBERTa's BPE, padded/truncated to 77 tokens, and the text branch;
6. score = cosine of the two L2-normalised 512-d embeddings (no x100).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import (
    PretrainedComponent,
    load_state_dict_strict,
    load_torch_checkpoint,
    require,
)

from ..registry import Metric, MetricSpec, Output, register
from ..texts import caption_text

__all__ = [
    "CHECKPOINTS",
    "CLIP_SAMPLES",
    "DIRECTION",
    "ROBERTA_ENTRY",
    "ROBERTA_FILES",
    "SAMPLE_RATE",
    "TEXT_TOKENS",
    "VERSION",
    "AudioEmbedding",
    "ClapFusionModel",
    "ClapModel",
    "ClapOptions",
    "ClapResult",
    "ClapWindow",
    "cosine",
    "crop_or_repeat_pad",
    "embed_audio",
    "embed_text",
    "model_class",
    "preprocess",
    "score_clap",
]

VERSION = "1"
DIRECTION = "higher"

SAMPLE_RATE = 48_000
#: laion_clap's window: 10 s at 48 kHz (``max_len=480000`` in ``get_audio_embedding_from_data``).
CLIP_SAMPLES = 480_000
#: RoBERTa context used by ``CLAP_Module.tokenizer`` (padding="max_length", truncation).
TEXT_TOKENS = 77

#: The weights entry of RoBERTa's config and tokenizer files (the weights are in the CLAP file).
ROBERTA_ENTRY = "roberta-base"
ROBERTA_FILES = ("config.json", "vocab.json", "merges.txt")
_ROBERTA_HUB_ID = "roberta-base"  # what laion_clap asks the hub for
# Buffers older transformers saved and current ones rebuild (laion_clap drops the first too).
_NON_PERSISTENT = ("text_branch.embeddings.position_ids", "text_branch.embeddings.token_type_ids")


# --------------------------------------------------------------------------------------------
# the model


class ClapModel(PretrainedComponent, nn.Module):
    """``laion_clap.CLAP_Module`` with HTSAT-base, no fusion (av-benchmark's CLAP).

    ``from_pretrained`` builds the module offline, serving ``roberta-base`` to laion_clap from
    the ``roberta-base`` weights entry (config + tokenizer; an empty weights file, since
    laion_clap 1.1.7 calls ``RobertaModel.from_pretrained`` and the CLAP checkpoint carries the
    whole text branch), then loads the CLAP state dict strictly, so no parameter stays random.
    ``debug`` builds the same classes with HTSAT-tiny and a tiny locally built RoBERTa.
    """

    weights_entry = "laion-clap-music-speech-audioset"
    weights_files = ("music_speech_audioset_epoch_15_esc_89.98.pt",)
    amodel: ClassVar[str] = "HTSAT-base"
    enable_fusion: ClassVar[bool] = False
    debug_amodel: ClassVar[str] = "HTSAT-tiny"

    def __init__(self, module: nn.Module) -> None:
        nn.Module.__init__(self)
        self.clap = module  # laion_clap.CLAP_Module
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.clap.parameters()).device

    @property
    def audio_cfg(self) -> dict[str, Any]:
        return self.clap.model_cfg["audio_cfg"]

    # ---- constructors

    @classmethod
    def from_pretrained(
        cls,
        root: str | Path | None = None,
        device: str = "cpu",
        *,
        registry: Any = None,
        **kw: Any,
    ) -> Self:
        """Load the CLAP checkpoint plus the ``roberta-base`` entry's files (both local)."""
        text_files = {rel: require(ROBERTA_ENTRY, rel, root, registry=registry)
                      for rel in ROBERTA_FILES}
        return super().from_pretrained(root, device, registry=registry, text_files=text_files,
                                       **kw)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths[cls.weights_files[0]]
        text_files: Mapping[str, Path] = kw["text_files"]
        ckpt = load_torch_checkpoint(path)
        state = ckpt.get("state_dict", ckpt)
        if not isinstance(state, Mapping) or not state:
            raise WeightsError(f"{path}: not a CLAP checkpoint (no state_dict)")
        if next(iter(state)).startswith("module"):  # saved from DistributedDataParallel
            state = {k.removeprefix("module."): v for k, v in state.items()}
        with tempfile.TemporaryDirectory(prefix="omni-clap-") as tmp:
            roberta = Path(tmp) / "roberta-base"
            roberta.mkdir()
            for rel, src in text_files.items():
                shutil.copyfile(src, roberta / rel)
            from safetensors.torch import save_file

            save_file({}, str(roberta / "model.safetensors"), metadata={"format": "pt"})
            module = _build_module(Path(tmp) / "hub", {_ROBERTA_HUB_ID: roberta},
                                   cls.amodel, cls.enable_fusion, device)
        model = module.model
        expected = model.state_dict()
        state = {k: v for k, v in state.items() if k in expected or k not in _NON_PERSISTENT}
        load_state_dict_strict(model, state, f"{path} (laion_clap {cls.amodel}, fusion="
                               f"{cls.enable_fusion})")
        return cls(module).to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"amodel": cls.amodel, "roberta": "base"}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """HTSAT-tiny + a one-layer RoBERTa (768 wide, as laion_clap requires) with a locally
        trained tokenizer; ``text_assets`` may pass prebuilt ``build_clap_text_assets`` output.

        ``amodel`` picks the audio tower and ``roberta="base"`` a full-size roberta-base text
        tower (12 layers, 50265-token embedding; the tokenizer files stay the shared local
        ones, which laion_clap requires to be the same within a process).
        """
        from omni_core.hf_offline import save_tiny_roberta, shared_clap_text_assets

        with tempfile.TemporaryDirectory(prefix="omni-clap-debug-") as tmp:
            repos = dict(kw.get("text_assets") or shared_clap_text_assets(seed))
            if kw.get("roberta", "tiny") == "base":
                base = Path(tmp) / "roberta-base"
                shutil.copytree(repos[_ROBERTA_HUB_ID], base)
                save_tiny_roberta(base, 50265, num_hidden_layers=12, intermediate_size=3072,
                                  max_position_embeddings=514, seed=seed)
                repos[_ROBERTA_HUB_ID] = base
            torch.manual_seed(seed)
            module = _build_module(Path(tmp) / "hub", repos,
                                   kw.get("amodel", cls.debug_amodel), cls.enable_fusion, device)
        return cls(module).to(device)

    # ---- embeddings (laion_clap's own code paths)

    @torch.no_grad()
    def audio_embeddings(self, features: Sequence[Mapping[str, torch.Tensor]]) -> np.ndarray:
        """(N, 512) unit rows from ``get_audio_features`` dicts (``CLAP.get_audio_embedding``)."""
        self.clap.eval()
        out = self.clap.model.get_audio_embedding([dict(f) for f in features])
        return out.float().cpu().numpy()

    @torch.no_grad()
    def text_embeddings(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 512) unit rows (``CLAP_Module.get_text_embedding``: RoBERTa, 77 tokens)."""
        return np.asarray(self.clap.get_text_embedding(list(texts)), dtype=np.float32)


class ClapFusionModel(ClapModel):
    """``630k-audioset-fusion-best.pt``: HTSAT-tiny with feature fusion (Verse-Bench's CLAP)."""

    weights_entry = "laion-clap-630k-audioset-fusion"
    weights_files = ("630k-audioset-fusion-best.pt",)
    amodel = "HTSAT-tiny"
    enable_fusion = True


#: ``ClapOptions.checkpoint`` -> model class (its weights entry and architecture).
CHECKPOINTS: dict[str, type[ClapModel]] = {
    "music_speech_audioset": ClapModel,
    "630k_audioset_fusion": ClapFusionModel,
}


def model_class(checkpoint: str) -> type[ClapModel]:
    """The wrapper class of a checkpoint name of :data:`CHECKPOINTS`."""
    try:
        return CHECKPOINTS[checkpoint]
    except KeyError:
        raise OmniError(f"unknown CLAP checkpoint {checkpoint!r}; known: "
                        f"{', '.join(CHECKPOINTS)}") from None


def _build_module(cache: Path, repos: Mapping[str, Path], amodel: str, fusion: bool,
                  device: str) -> nn.Module:
    """``CLAP_Module`` constructed with ``repos`` served as a local hub (never the network)."""
    from transformers.utils import logging as hf_logging

    from omni_core.hf_offline import has_trained_vocab, offline_laion_clap

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the empty RoBERTa weights file is meant to be empty
    try:
        # required=(): only CLAP_Module's own tokenizer matters, checked below; the import-time
        # tokenizers of laion_clap.training.data are never used here.
        with offline_laion_clap(cache, repos, required=()) as laion_clap:
            module = laion_clap.CLAP_Module(enable_fusion=fusion, device=device, amodel=amodel,
                                            tmodel="roberta")
    finally:
        hf_logging.set_verbosity(verbosity)
    if not has_trained_vocab(module.tokenize):
        raise WeightsError("laion_clap built an empty RoBERTa tokenizer: the roberta-base "
                           "vocab.json/merges.txt were not found")
    return module.eval()


# --------------------------------------------------------------------------------------------
# protocol


@dataclass(frozen=True)
class ClapOptions:
    """Protocol choices of the CLAP metric; defaults follow the reference protocol."""

    #: Checkpoint (:data:`CHECKPOINTS`): av-benchmark's ``music_speech_audioset`` (HTSAT-base)
    #: or Verse-Bench's ``630k_audioset_fusion`` (HTSAT-tiny, fusion).
    checkpoint: str = "music_speech_audioset"
    #: Seeds the crop of audio longer than 10 s (upstream draws it unseeded).
    seed: int = 0
    #: int16 quantisation round trip before the model (laion_clap's numpy path); av-benchmark
    #: feeds tensors with ``use_tensor=True`` and skips it.
    int16_round_trip: bool = True
    #: Keep only the first ``max_seconds`` of audio (av-benchmark's ``--audio_length``, 8 s by
    #: default there); ``None`` keeps everything.
    max_seconds: float | None = None
    #: Subtract the waveform mean first (av-benchmark's ``AudioDataset`` does).
    remove_dc: bool = False
    #: which part of the structured caption is the text (``evaluation.texts``; default the
    #: audio description).
    text_field: str = "audio"

    def __post_init__(self) -> None:
        model_class(self.checkpoint)
        if self.max_seconds is not None and self.max_seconds <= 0:
            raise ValueError("max_seconds must be positive")


@dataclass(frozen=True)
class ClapWindow:
    """The 10 s the non-fusion model sees, and how it was cut from the clip."""

    waveform: np.ndarray  # (CLIP_SAMPLES,) float32
    crop_start: int | None  # first sample of the crop (audio longer than 10 s), else None
    n_repeat: int  # whole copies tiled before zero-filling (1 when cropped or exact)


@dataclass(frozen=True)
class AudioEmbedding:
    embedding: np.ndarray  # (512,) unit vector
    n_samples: int  # clip length at 48 kHz after preprocessing
    crop_start_s: float | None  # where the 10 s crop starts (non-fusion, long audio)
    n_repeat: int  # repeat-padding copies (short audio)


@dataclass(frozen=True)
class ClapResult:
    score: float  # cosine, in [-1, 1]
    audio: AudioEmbedding
    text_embedding: np.ndarray  # (512,) unit vector


def preprocess(
    audio: np.ndarray, options: ClapOptions | None = None, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Mono 48 kHz float32 after the optional truncation/DC removal and the int16 round trip."""
    o = options or ClapOptions()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise ValueError(f"expected audio of shape (n,) or (n, channels), got {x.shape}")
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    if o.max_seconds is not None:
        x = x[: int(o.max_seconds * SAMPLE_RATE)]
    if x.size == 0:
        raise OmniError("CLAP: the audio is empty")
    if o.remove_dc:
        x = x - x.mean()
    if o.int16_round_trip:  # laion_clap.training.data float32_to_int16 / int16_to_float32
        q = (np.clip(x, -1.0, 1.0) * np.float32(32767.0)).astype(np.int16)
        x = (q / 32767.0).astype(np.float32)
    return np.ascontiguousarray(x, dtype=np.float32)


def crop_or_repeat_pad(x: np.ndarray, n: int = CLIP_SAMPLES, seed: int = 0) -> ClapWindow:
    """Exactly ``n`` samples: a seeded random crop of longer audio, repeat-padding of shorter.

    Crop: offset ``RandomState(seed).randint(0, len - n + 1)``, the draw upstream makes from the
    global generator. Padding (``data_filling="repeatpad"``): ``n // len`` whole copies, then
    zeros up to ``n``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.size == 0:
        raise OmniError("CLAP: the audio is empty")
    if x.size > n:
        start = int(np.random.RandomState(seed).randint(0, x.size - n + 1))
        return ClapWindow(x[start:start + n].copy(), start, 1)
    reps = n // x.size
    out = np.zeros(n, dtype=np.float32)
    out[: reps * x.size] = np.tile(x, reps)
    return ClapWindow(out, None, reps)


@contextlib.contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def embed_audio(
    audio: np.ndarray,
    model: ClapModel,
    options: ClapOptions | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> AudioEmbedding:
    """The unit audio embedding of one clip (float in [-1, 1], (n,) or (n, channels))."""
    o = options or ClapOptions()
    if model.weights_entry != model_class(o.checkpoint).weights_entry:
        raise OmniError(f"CLAP: options name the checkpoint {o.checkpoint!r} but the model is "
                        f"{type(model).__name__} ({model.weights_entry})")
    x = preprocess(audio, o, sample_rate)
    from laion_clap.training.data import get_audio_features  # imported by the model already

    if model.enable_fusion:
        # the global view + three random chunks are computed from the whole clip upstream
        crop_s, n_repeat = None, max(1, CLIP_SAMPLES // x.size)
        with _seeded_global_numpy(o.seed):
            features = get_audio_features({}, torch.from_numpy(x), CLIP_SAMPLES,
                                          data_truncating="fusion", data_filling="repeatpad",
                                          audio_cfg=model.audio_cfg)
    else:
        window = crop_or_repeat_pad(x, CLIP_SAMPLES, o.seed)
        crop_s = None if window.crop_start is None else window.crop_start / SAMPLE_RATE
        n_repeat = window.n_repeat
        features = get_audio_features({}, torch.from_numpy(window.waveform), CLIP_SAMPLES,
                                      data_truncating="rand_trunc", data_filling="repeatpad",
                                      audio_cfg=model.audio_cfg)
        features["longer"] = torch.tensor([window.crop_start is not None])  # as upstream
    embedding = model.audio_embeddings([features])[0]
    return AudioEmbedding(embedding=embedding, n_samples=int(x.size), crop_start_s=crop_s,
                          n_repeat=n_repeat)


def embed_text(text: str | Sequence[str], model: ClapModel) -> np.ndarray:
    """Unit text embedding(s): (512,) for one string, (N, 512) for a list."""
    if isinstance(text, str):
        return model.text_embeddings([text])[0]
    return model.text_embeddings(list(text))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity (the embeddings are unit vectors already; renormalised for safety)."""
    a64, b64 = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a64 @ b64 / (np.linalg.norm(a64) * np.linalg.norm(b64)))


def score_clap(
    audio: np.ndarray,
    text: str,
    model: ClapModel,
    options: ClapOptions | None = None,
    sample_rate: int = SAMPLE_RATE,
) -> ClapResult:
    """CLAP score of one clip and its caption text."""
    emb = embed_audio(audio, model, options, sample_rate)
    text_emb = embed_text(text, model)
    return ClapResult(score=cosine(emb.embedding, text_emb), audio=emb, text_embedding=text_emb)


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class CLAP(Metric):
    spec = MetricSpec(
        name="clap", version=VERSION, needs=("audio48k", "caption"),
        outputs=(Output("clap", "CLAP", DIRECTION),),
        doc="LAION-CLAP cosine between the generated audio (48 kHz, seeded 10 s crop) and the "
            "caption's audio description")
    Options = ClapOptions

    def setup(self) -> None:
        self.model = self.load(model_class(self.options.checkpoint))

    def compute(self, inp) -> dict:
        text = caption_text(inp.caption, self.options.text_field)
        res = score_clap(inp.audio(SAMPLE_RATE), text, self.model, self.options, SAMPLE_RATE)
        return {"clap": float(res.score)}
