"""openai-whisper ASR (large-v3) as a pretrained component: log-mel, network, decoding.

The released ``large-v3.pt`` is read exactly as ``whisper.load_model`` reads it, and run with
openai-whisper's own front end (``log_mel_spectrogram`` of the first 30 s, zero-padded) and
decoding code (``whisper.decode`` for one window, ``whisper.transcribe`` for long form). The
``debug`` twin keeps large-v3's front end and tokenizer and shrinks the rest
(:data:`DEBUG_DIMS`). Shared by the WER metric (``evaluation.metrics.wer``, which adds text
normalisation and scoring) and the curation pipelines; :class:`WhisperOptions` holds the
decoding choices, whose defaults are the WER protocol's (English, greedy, first window, fp32).
:func:`transcribe` gives the curation pipelines words with timestamps (:class:`Word` s), from
openai-whisper's own ``transcribe(word_timestamps=True)`` on the same network.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.media.audio import to_mono
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "CHUNK_SECONDS",
    "DEBUG_DIMS",
    "LARGE_V3_DIMS",
    "SAMPLE_RATE",
    "Transcript",
    "WhisperASR",
    "WhisperOptions",
    "Word",
    "transcribe",
]

SAMPLE_RATE = 16000  # Whisper's only input rate
CHUNK_SECONDS = 30  # Whisper's window; the reference protocol transcribes only the first one

#: ``ModelDimensions`` of the released ``large-v3.pt`` (its ``dims`` entry).
LARGE_V3_DIMS: dict[str, int] = dict(
    n_mels=128, n_audio_ctx=1500, n_audio_state=1280, n_audio_head=20, n_audio_layer=32,
    n_vocab=51866, n_text_ctx=448, n_text_state=1280, n_text_head=20, n_text_layer=32,
)
#: The debug twin: large-v3's front end and tokenizer (128 mels, 1500 audio positions for a
#: 30 s window, the 51866-token multilingual vocabulary with 100 languages) so that the same
#: preprocessing, prompt and decoding code runs; everything else tiny. ``n_text_ctx`` 32 caps
#: greedy decoding at 16 tokens (openai-whisper samples at most ``n_text_ctx // 2``).
DEBUG_DIMS: dict[str, int] = dict(
    n_mels=128, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=2,
    n_vocab=51866, n_text_ctx=32, n_text_state=64, n_text_head=2, n_text_layer=2,
)


# --------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class WhisperOptions:
    """Decoding choices of :meth:`WhisperASR.transcribe`; the defaults are the WER protocol's
    (seed-tts-eval's English branch); the WER metric's ``WEROptions`` extends this class."""

    #: Language forced on the decoder; ``None`` lets Whisper detect it.
    language: str | None = "en"
    #: Whisper task token.
    task: Literal["transcribe", "translate"] = "transcribe"
    #: ``"first_window"``: one decoder pass over the first 30 s. ``"transcribe"``:
    #: openai-whisper's sliding-window ``transcribe`` (temperature 0 only, no fallback).
    long_form: Literal["first_window", "transcribe"] = "first_window"
    #: Only with ``long_form="transcribe"``: feed each window the previous window's text.
    condition_on_previous_text: bool = True
    #: ``None`` = greedy search; an int = beam search.
    beam_size: int | None = None
    #: fp16 inference on CUDA; CPU always runs fp32.
    fp16: bool = False

    def __post_init__(self) -> None:
        if self.long_form not in ("first_window", "transcribe"):
            raise OmniError(f"{type(self).__name__}.long_form must be "
                            f"first_window|transcribe, got {self.long_form!r}")


@dataclass(frozen=True)
class Transcript:
    """What Whisper heard in one utterance."""

    text: str
    tokens: tuple[int, ...]
    avg_logprob: float
    no_speech_prob: float
    duration_s: float
    truncated: bool  # longer than 30 s and transcribed with long_form="first_window"


@dataclass(frozen=True)
class Word:
    """One word Whisper heard. ``text`` is as Whisper writes it: with its leading space in
    languages that separate words by spaces, so joining the texts gives the transcript;
    ``probability`` is Whisper's mean token probability of the word."""

    text: str
    start_s: float
    end_s: float
    probability: float


# --------------------------------------------------------------------------------------------
# the model


class WhisperASR(PretrainedComponent, nn.Module):
    """openai-whisper's ``Whisper`` network plus its own front end and decoding code.

    ``from_pretrained`` reads the released ``large-v3.pt`` (``{"dims": ..., "model_state_dict":
    ...}``, loaded with ``weights_only=True``) exactly as ``whisper.load_model`` does;
    ``debug`` builds the same class with :data:`DEBUG_DIMS`, seeded random weights.
    """

    weights_entry = "whisper-large-v3"
    weights_files = ("large-v3.pt",)

    def __init__(self, dims: Mapping[str, int]) -> None:
        from whisper.model import ModelDimensions, Whisper

        nn.Module.__init__(self)
        self.dims = ModelDimensions(**dict(dims))
        self.model = Whisper(self.dims)
        self.eval()

    @property
    def device(self) -> torch.device:
        return self.model.device

    # ---- constructors

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths["large-v3.pt"]
        ckpt = load_torch_checkpoint(path)
        if not isinstance(ckpt.get("dims"), dict) or not isinstance(
            ckpt.get("model_state_dict"), dict
        ):
            raise WeightsError(f"{path}: not an openai-whisper checkpoint (expected the keys "
                               f"'dims' and 'model_state_dict', got {sorted(ckpt)})")
        try:
            obj = cls(ckpt["dims"])
        except TypeError as exc:
            raise WeightsError(f"{path}: dims do not fit openai-whisper's ModelDimensions: "
                               f"{exc}") from exc
        load_state_dict_strict(obj.model, ckpt["model_state_dict"], f"{path} (openai-whisper)")
        if dict(ckpt["dims"]) == LARGE_V3_DIMS:
            # whisper.load_model sets these for the named model; they only steer word-level
            # timestamps, which WER does not use, but keep the model identical to upstream's.
            import whisper

            obj.model.set_alignment_heads(whisper._ALIGNMENT_HEADS["large-v3"])
        return obj.to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"dims": LARGE_V3_DIMS}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        obj = cls({**DEBUG_DIMS, **kw.get("dims", {})})
        # Whisper leaves the decoder's learned positions uninitialised (torch.empty); give them
        # seeded values so that the debug twin is deterministic.
        with torch.no_grad():
            obj.model.decoder.positional_embedding.normal_(0.0, 0.02)
        return obj.to(device)

    # ---- the network pieces (thin, so that tests can compare them with upstream's)

    def log_mel(self, audio_16k: np.ndarray) -> torch.Tensor:
        """(n_mels, 3000) log-mel of the first 30 s, zero-padded: what the HF processor that
        upstream used and ``whisper.pad_or_trim`` + ``log_mel_spectrogram`` both compute."""
        import whisper

        x = torch.from_numpy(np.ascontiguousarray(audio_16k, dtype=np.float32))
        return whisper.log_mel_spectrogram(whisper.pad_or_trim(x), n_mels=self.dims.n_mels,
                                           device=self.device)

    @torch.no_grad()
    def logits(self, mel: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        """Decoder logits (batch, n_tokens, n_vocab) for mel (batch, n_mels, 3000)."""
        return self.model(mel.to(self.device), tokens.to(self.device))

    def tokenizer(self, options: WhisperOptions | None = None) -> Any:
        from whisper.tokenizer import get_tokenizer

        o = options or WhisperOptions()
        return get_tokenizer(self.model.is_multilingual, num_languages=self.model.num_languages,
                             language=o.language, task=o.task)

    # ---- transcription

    def transcribe(self, audio_16k: np.ndarray,
                   options: WhisperOptions | None = None) -> Transcript:
        """Transcribe 16 kHz mono float audio with openai-whisper's own decoding code
        (defaults: :class:`WhisperOptions`, the WER protocol's choices)."""
        import whisper

        o = options or WhisperOptions()
        x = np.ascontiguousarray(audio_16k, dtype=np.float32)
        duration = len(x) / SAMPLE_RATE
        fp16 = bool(o.fp16 and self.device.type == "cuda")
        if o.long_form == "transcribe":
            out = whisper.transcribe(
                self.model, x, verbose=None, temperature=0.0, fp16=fp16, language=o.language,
                task=o.task, beam_size=o.beam_size,
                condition_on_previous_text=o.condition_on_previous_text,
            )
            segs = out["segments"]
            tokens = tuple(t for s in segs for t in s["tokens"])
            lp = float(np.mean([s["avg_logprob"] for s in segs])) if segs else 0.0
            ns = float(np.mean([s["no_speech_prob"] for s in segs])) if segs else 1.0
            return Transcript(out["text"].strip(), tokens, lp, ns, duration, False)
        decoding = whisper.DecodingOptions(
            task=o.task, language=o.language, temperature=0.0, beam_size=o.beam_size,
            without_timestamps=True, fp16=fp16,
        )
        res = whisper.decode(self.model, self.log_mel(x), decoding)
        return Transcript(res.text.strip(), tuple(res.tokens), float(res.avg_logprob),
                          float(res.no_speech_prob), duration, duration > CHUNK_SECONDS)


# --------------------------------------------------------------------------------------------
# words with timestamps (curation)


def transcribe(model: WhisperASR, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
               language: str | None = None, *, fp16: bool = False,
               condition_on_previous_text: bool = False) -> list[Word]:
    """Words with timestamps: openai-whisper's ``transcribe(word_timestamps=True)`` on the
    network of ``model`` (a :class:`WhisperASR`).

    ``language=None`` lets Whisper detect it from the first 30 s. Decoding is deterministic:
    greedy at temperature 0 only. Upstream's default falls back to sampling at temperatures
    0.2 ... 1.0 when a window looks like a failure (compression ratio > 2.4 or mean log
    probability < -1); sampling is random, so here such a window keeps its greedy result.
    ``condition_on_previous_text`` is off by default: without the fallback, feeding each window
    the previous text lets one hallucinated window repeat itself through the rest of the clip.
    ``fp16`` only applies on CUDA.

    Times are in seconds from the clip start, clipped to the clip (the last window is padded)
    and made monotonic: each word starts where the previous one ended or later, and never ends
    before it starts. Words whose text is blank are left out.
    """
    import whisper

    from omni_core.media.audio import resample

    x = to_mono(waveform)
    if sample_rate != SAMPLE_RATE:
        x = resample(x, sample_rate, SAMPLE_RATE)
    x = np.array(x, dtype=np.float32)  # a writable copy: whisper wraps it in a tensor
    duration = len(x) / SAMPLE_RATE
    if len(x) == 0:
        return []
    net = model.model
    out = whisper.transcribe(
        net, x, verbose=None, temperature=0.0, word_timestamps=True, language=language,
        condition_on_previous_text=condition_on_previous_text,
        fp16=bool(fp16 and net.device.type == "cuda"))
    words: list[Word] = []
    last_end = 0.0
    for seg in out["segments"]:
        for w in seg.get("words", []):
            text = str(w["word"])
            if not text.strip():
                continue
            start = min(max(float(w["start"]), last_end), duration)
            end = min(max(float(w["end"]), start), duration)
            words.append(Word(text, start, end, float(w["probability"])))
            last_end = end
    return words
