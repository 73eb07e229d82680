"""CLAP: cosine between the LAION-CLAP embeddings of the generated audio and of its caption.

Reference: hkchengrex/av-benchmark (``extract.py``/``extract_text.py``/``evaluate.py``), which runs
``laion_clap.CLAP_Module(enable_fusion=False, amodel="HTSAT-base")`` with
``music_speech_audioset_epoch_15_esc_89.98.pt`` and reports the mean of per-pair cosines, not
scaled. Verse-Bench uses the fusion checkpoint ``630k-audioset-fusion-best.pt`` (HTSAT-tiny);
both are selectable (:data:`~evaluation.models.clap.CHECKPOINTS`). The network, tokenizer and
feature code are laion_clap's own (1.1.7), built offline (:mod:`evaluation.models.clap`); this
module only supplies the inputs, deterministically. Per clip:

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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from omni_core.errors import OmniError

from ..models.clap import SAMPLE_RATE, ClapModel, model_class
from ..registry import Metric, MetricSpec, Output, register
from ..texts import caption_text

__all__ = [
    "DIRECTION",
    "VERSION",
    "AudioEmbedding",
    "ClapOptions",
    "ClapResult",
    "cosine",
    "embed_audio",
    "embed_text",
    "preprocess",
    "score_clap",
]

VERSION = "1"
DIRECTION = "higher"


# --------------------------------------------------------------------------------------------
# protocol


@dataclass(frozen=True)
class ClapOptions:
    """Protocol choices of the CLAP metric; defaults follow the reference protocol."""

    #: Checkpoint (:data:`~evaluation.models.clap.CHECKPOINTS`): av-benchmark's
    #: ``music_speech_audioset`` (HTSAT-base) or Verse-Bench's ``630k_audioset_fusion``
    #: (HTSAT-tiny, fusion).
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
    embedding, crop_start, n_repeat = model.audio_embedding(x, o.seed)
    crop_s = None if crop_start is None else crop_start / SAMPLE_RATE
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
