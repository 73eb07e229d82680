"""WER: Whisper large-v3 transcribes the generated speech, jiwer scores it against the caption.

Reference protocol: ``run_wer.py`` of https://github.com/BytedanceSpeech/seed-tts-eval (English
branch), with the ASR model the DreamID-Omni paper names (Whisper large-v3). Per utterance:

1. audio -> mono -> 16 kHz (upstream: ``scipy.signal.resample`` to ``int(n * 16000 / sr)``);
2. Whisper large-v3, language forced to English, task ``transcribe``, greedy (temperature 0),
   no timestamps, fp32; only the first 30 s window is transcribed, as upstream's
   ``WhisperProcessor`` pads/truncates every input to 30 s. We run openai-whisper's own model
   and decoding code on the original ``large-v3.pt`` (upstream used the same weights through
   transformers; the log-mel front end and the network are the same computation);
3. text normalisation (:func:`normalize_text`, shared with the curation scorer from
   :mod:`omni_core.wer`) of reference and transcript alike;
4. ``jiwer.process_words`` (jiwer 4 dropped upstream's ``compute_measures``) -> WER of the
   utterance; the benchmark number is the mean of per-utterance WERs, as a fraction
   (the paper's 0.052), see :func:`mean_wer`.

The reference text is the ground-truth speech: the ``<S>...<E>`` spans of the caption's joint
(CO_ANALYSIS) field, joined in caption order (:func:`speech_spans`, :func:`reference_text`).

Multi-person instances (:func:`score_wer_speakers`, :func:`score_wer_caption`): the generated
audio is cut at each speaker's caption timestamps, every cut is transcribed on its own, a
speaker's transcript is its cuts joined in time order, and it is scored against that speaker's
spans joined in caption order; the instance WER is the mean over speakers. Fallback when the
caption has no timestamps for some speaker who talks: the whole audio is transcribed once and
scored against all spans joined in caption order (exactly the single-person protocol); the
result says which of the two was used (``mode``).

Empty references: jiwer 4 itself scores an empty reference as (number of inserted words), so
"" vs "hello" is 1.0 and "" vs "" is 0.0; :func:`utterance_wer` keeps that. An instance whose
caption has no speech at all is not a WER sample: by default (``empty_reference="skip"``) its
WER is ``None`` ("not applicable", never averaged in as 0 or 1); ``"score"`` applies jiwer's rule.

The Whisper wrapper (checkpoint loading, log-mel, decoding) is
:class:`omni_core.models.whisper.WhisperASR`, shared with the curation pipelines; this module
holds the protocol: reference text, normalisation, resampling, scoring and the metric.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from omni_core.captions import SPEECH_RE, CaptionError, StructuredCaption
from omni_core.errors import OmniError
from omni_core.models.whisper import (
    CHUNK_SECONDS,
    SAMPLE_RATE,
    Transcript,
    WhisperASR,
    WhisperOptions,
)
from omni_core.wer import PUNCTUATION, UtteranceWER, normalize_text, utterance_wer

from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "PUNCTUATION",
    "VERSION",
    "MultiSpeakerWER",
    "Recognizer",
    "SpeakerWER",
    "UtteranceWER",
    "WERResult",
    "WEROptions",
    "WERScoring",
    "mean_wer",
    "normalize_text",
    "reference_text",
    "score_wer",
    "score_wer_caption",
    "score_wer_speakers",
    "speech_spans",
    "to_16k_mono",
    "utterance_wer",
]

VERSION = "2"  # 2: per-turn WERs of multi-person instances
DIRECTION = "lower"



# --------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class WERScoring:
    """The protocol choices every recogniser shares (the Whisper metric's :class:`WEROptions`,
    the lite PocketSphinx backend's options): resampling, text normalisation, captions without
    speech, segment padding. The defaults are seed-tts-eval's."""

    #: ``"fft"``: ``scipy.signal.resample`` to ``int(n * 16000 / sr)`` samples, as upstream;
    #: ``"soxr"``: :func:`omni_core.media.audio.resample` (soxr HQ). Inputs at 16 kHz are untouched.
    resampler: Literal["fft", "soxr"] = "fft"
    #: Text normalisation applied to reference and transcript: seed-tts-eval's English rule
    #: (:func:`normalize_text`) or ``"none"`` (raw text, for debugging only).
    normalization: Literal["seed-tts-eval", "none"] = "seed-tts-eval"
    #: An instance with no ``<S>...<E>`` speech: ``"skip"`` -> WER ``None`` (not applicable);
    #: ``"score"`` -> jiwer 4's rule (inserted words / 1, so silence scores 0.0).
    empty_reference: Literal["skip", "score"] = "skip"
    #: Seconds added on both sides of every speaker segment before cutting (caption timestamps
    #: are often whole seconds). 0 cuts exactly at the caption's times.
    segment_pad_s: float = 0.0

    def __post_init__(self) -> None:
        more = getattr(super(), "__post_init__", None)  # WhisperOptions' in WEROptions
        if more is not None:
            more()
        name = type(self).__name__
        if self.resampler not in ("fft", "soxr"):
            raise OmniError(f"{name}.resampler must be fft|soxr, got {self.resampler!r}")
        if self.normalization not in ("seed-tts-eval", "none"):
            raise OmniError(f"{name}.normalization must be seed-tts-eval|none, "
                            f"got {self.normalization!r}")
        if self.empty_reference not in ("skip", "score"):
            raise OmniError(f"{name}.empty_reference must be skip|score, "
                            f"got {self.empty_reference!r}")
        if self.segment_pad_s < 0:
            raise OmniError(f"{name}.segment_pad_s must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def decoding(self) -> WhisperOptions | None:
        """The decoding choices handed to the recogniser's ``transcribe`` (none here)."""
        return None


@dataclass(frozen=True)
class WEROptions(WERScoring, WhisperOptions):
    """Every protocol choice of the WER metric; the defaults are seed-tts-eval's.

    The decoding fields are :class:`~omni_core.models.whisper.WhisperOptions`' (same defaults:
    English forced on the decoder, as seed-tts-eval's English branch; ``first_window``, since
    the Hugging Face processor upstream truncates to 30 s; greedy search, upstream's
    ``generate`` defaults; fp32, as upstream ran), the scoring fields :class:`WERScoring`'s.
    Recorded with the results; changing one changes the numbers.
    """

    #: Whisper checkpoint: the weights manifest entry :class:`WhisperASR` loads (recorded with
    #: the results; large-v3, the paper's, is the only one registered).
    checkpoint: str = "whisper-large-v3"

    def decoding(self) -> WhisperOptions:
        """The decoding choices :meth:`WhisperASR.transcribe` reads (a plain WhisperOptions)."""
        return WhisperOptions(**{f.name: getattr(self, f.name)
                                 for f in dataclasses.fields(WhisperOptions)})


class Recognizer(Protocol):
    """What the protocol needs from a speech recogniser: the transcript of one 16 kHz mono
    utterance (:class:`WhisperASR`, the paper's; the lite backend's PocketSphinx adapter)."""

    def transcribe(self, audio_16k: np.ndarray, options: Any = None, /) -> Transcript: ...


@dataclass(frozen=True)
class WERResult:
    """One instance: ``wer`` is ``None`` when not applicable (no reference speech)."""

    wer: float | None
    reference: str  # raw, as given
    transcript: Transcript
    detail: UtteranceWER | None
    note: str = ""


@dataclass(frozen=True)
class SpeakerWER:
    """One speaker of a multi-person instance."""

    speaker: str
    reference: str  # the speaker's spans joined in caption order (raw)
    hypothesis: str  # the transcripts of the speaker's segments joined in time order (raw)
    segments: tuple[tuple[float, float], ...]
    wer: float | None
    detail: UtteranceWER | None
    transcripts: tuple[Transcript, ...] = field(default=(), repr=False)
    #: one WER per turn (segment k against the speaker's k-th span) when the speaker has as
    #: many spans as segments; empty otherwise (the turns cannot be paired with their text)
    turn_wers: tuple[float | None, ...] = ()


@dataclass(frozen=True)
class MultiSpeakerWER:
    """``wer``: mean of the speakers' WERs (``mode="segments"``) or the whole-audio WER
    against every span in caption order (``mode="whole_audio"``, the no-timestamp fallback)."""

    wer: float | None
    mode: Literal["segments", "whole_audio"]
    speakers: tuple[SpeakerWER, ...]
    whole: WERResult | None = None
    note: str = ""


# --------------------------------------------------------------------------------------------
# reference text and normalisation


def speech_spans(text: str) -> list[str]:
    """The spoken words of a caption: every ``<S>...<E>`` span, in order, whitespace collapsed.

    >>> speech_spans("<sub1> smiles and says <S>Hello there, friend!<E> while <sub2> nods.")
    ['Hello there, friend!']
    """
    return [s for s in (" ".join(m.group(1).split()) for m in SPEECH_RE.finditer(text)) if s]


def reference_text(caption: str | StructuredCaption) -> str:
    """The WER reference of a whole instance: all spans joined by a space in caption order.

    Accepts the joint caption text or a parsed :class:`~omni_core.captions.StructuredCaption`
    (whose joint / CO_ANALYSIS field holds the speech).
    """
    text = caption.joint if isinstance(caption, StructuredCaption) else caption
    return " ".join(speech_spans(text))


def mean_wer(values: Iterable[float | WERResult | MultiSpeakerWER | None]) -> float | None:
    """The reported number: the plain mean of per-utterance WERs (a fraction, not %).

    ``None`` entries (not applicable, or missing predictions) are left out, never counted as
    0; ``None`` when nothing is left.
    """
    xs: list[float] = []
    for v in values:
        w = v.wer if isinstance(v, WERResult | MultiSpeakerWER) else v
        if w is not None:
            xs.append(float(w))
    return float(np.mean(xs)) if xs else None


def to_16k_mono(audio: np.ndarray, sample_rate: int, resampler: str = "fft") -> np.ndarray:
    """float32 mono at 16 kHz. Channels (time on axis 0) are averaged; see ``WEROptions``."""
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if x.ndim != 1:
        raise OmniError(f"audio must be (n,) or (n, channels), got shape {x.shape}")
    if sample_rate == SAMPLE_RATE:
        return np.ascontiguousarray(x)
    if resampler == "fft":
        from scipy.signal import resample

        return resample(x, int(len(x) * SAMPLE_RATE / sample_rate)).astype(np.float32)
    from omni_core.media.audio import resample as soxr_resample

    return np.asarray(soxr_resample(x, sample_rate, SAMPLE_RATE), dtype=np.float32)


# --------------------------------------------------------------------------------------------
# scoring


def _score(reference: str, hypothesis: str, options: WERScoring) -> UtteranceWER | None:
    normalize = options.normalization == "seed-tts-eval"
    ref = normalize_text(reference) if normalize else reference.strip()
    if not ref and options.empty_reference == "skip":
        return None
    return utterance_wer(reference, hypothesis, normalize=normalize)


def score_wer(audio: np.ndarray, sample_rate: int, reference: str, model: Recognizer,
              options: WERScoring | None = None) -> WERResult:
    """WER of one utterance: ``audio`` ((n,) or (n, channels) float) against ``reference``
    (plain text: use :func:`reference_text` for a caption)."""
    o = options or WEROptions()
    x = to_16k_mono(audio, sample_rate, o.resampler)
    tr = model.transcribe(x, o.decoding())
    detail = _score(reference, tr.text, o)
    notes = ["no reference speech"] if detail is None else []
    if tr.truncated:
        notes.append(f"only the first {CHUNK_SECONDS} s transcribed (long_form=first_window)")
    note = "; ".join(notes)
    return WERResult(None if detail is None else detail.wer, reference, tr, detail, note)


def _pairs(references: Mapping[str, str] | Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    items = references.items() if isinstance(references, Mapping) else references
    return [(str(s), str(t)) for s, t in items]


def score_wer_speakers(
    audio: np.ndarray,
    sample_rate: int,
    references: Mapping[str, str] | Sequence[tuple[str, str]],
    segments: Mapping[str, Sequence[tuple[float, float]]] | None,
    model: Recognizer,
    options: WERScoring | None = None,
) -> MultiSpeakerWER:
    """Per-speaker WER of a multi-person instance.

    ``references``: (speaker, spoken text) pairs in caption order (one per ``<S>`` span, as
    ``StructuredCaption.speech()`` gives them; a speaker may appear several times) or a
    mapping speaker -> text. ``segments``: speaker -> [(start_s, end_s), ...] from the
    caption's speaker timestamps.

    Every segment is transcribed on its own; a speaker's hypothesis is its segment transcripts
    joined in time order, its reference its spans joined in caption order; ``wer`` is the mean
    over the speakers who have reference speech (a speaker with timestamps but no span is
    not scored). If ``segments`` is missing, or lacks (or has only empty) segments for a
    speaker who has reference speech, the whole audio is transcribed once and scored against
    all spans joined in caption order (``mode "whole_audio"``; per-speaker WERs are then
    ``None``).
    """
    o = options or WEROptions()
    pairs = _pairs(references)
    order: list[str] = []
    refs: dict[str, list[str]] = {}
    for spk, text in pairs:
        if spk not in refs:
            order.append(spk)
            refs[spk] = []
        if text.strip():
            refs[spk].append(" ".join(text.split()))
    x = to_16k_mono(audio, sample_rate, o.resampler)
    dur = len(x) / SAMPLE_RATE

    def cut(spans: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        out = []
        for a, b in sorted((float(a), float(b)) for a, b in spans):
            a, b = max(a - o.segment_pad_s, 0.0), min(b + o.segment_pad_s, dur)
            if b > a:
                out.append((a, b))
        return out

    segs = {spk: cut((segments or {}).get(spk, ())) for spk in order}
    talking = [spk for spk in order if refs[spk]]
    if segments is None or any(not segs[spk] for spk in talking):
        missing = [spk for spk in talking if not segs[spk]]
        whole_ref = " ".join(t for _, t in pairs if t.strip())
        whole = score_wer(x, SAMPLE_RATE, whole_ref, model, o)
        speakers = tuple(SpeakerWER(spk, " ".join(refs[spk]), "", tuple(segs[spk]), None, None)
                         for spk in order)
        why = ("no speaker timestamps" if segments is None
               else f"no usable timestamps for {', '.join(missing)}")
        return MultiSpeakerWER(whole.wer, "whole_audio", speakers, whole,
                               f"{why}: whole audio vs all spans in caption order")
    speakers_out: list[SpeakerWER] = []
    decoding = o.decoding()
    for spk in order:
        trs = tuple(model.transcribe(x[round(a * SAMPLE_RATE):round(b * SAMPLE_RATE)], decoding)
                    for a, b in segs[spk])
        hyp = " ".join(t.text for t in trs if t.text)
        ref = " ".join(refs[spk])
        detail = _score(ref, hyp, o)
        per_turn: tuple[float | None, ...] = ()
        if len(refs[spk]) == len(trs):
            per_turn = tuple(None if (d := _score(r, t.text, o)) is None else d.wer
                             for r, t in zip(refs[spk], trs, strict=True))
        speakers_out.append(SpeakerWER(spk, ref, hyp, tuple(segs[spk]),
                                       None if detail is None else detail.wer, detail, trs,
                                       per_turn))
    scored = [s.wer for s in speakers_out if s.wer is not None]
    wer = float(np.mean(scored)) if scored else None
    return MultiSpeakerWER(wer, "segments", tuple(speakers_out), None,
                           "" if scored else "no reference speech")


def score_wer_caption(audio: np.ndarray, sample_rate: int, caption: StructuredCaption,
                      model: Recognizer, options: WERScoring | None = None
                      ) -> WERResult | MultiSpeakerWER:
    """Score an instance from its parsed caption.

    One speaker (or none, or spans the caption does not attribute to a speaker): the
    single-utterance protocol, whole audio vs all spans (:func:`score_wer`), whatever the
    timestamps say. Several speakers:
    :func:`score_wer_speakers` with the caption's speaker timestamps (``None`` when the caption
    has none, which selects the whole-audio fallback).
    """
    try:
        speech = caption.speech()
    except CaptionError as exc:  # spans without a speaker anchor: no per-speaker references
        res = score_wer(audio, sample_rate, reference_text(caption), model, options)
        return dataclasses.replace(res, note="; ".join(filter(None, [res.note, str(exc)])))
    speakers = {u.subject for u in speech}
    if len(speakers) <= 1:
        return score_wer(audio, sample_rate, reference_text(caption), model, options)
    stamps = caption.speaker_timestamps or None
    return score_wer_speakers(audio, sample_rate, [(u.subject, u.text) for u in speech], stamps,
                              model, options)



# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class WER(Metric):
    spec = MetricSpec(
        name="wer", version=VERSION, needs=("audio16k", "caption"),
        outputs=(Output("wer", "WER", DIRECTION),),
        doc="Whisper-large-v3 transcript vs the caption's <S>...<E> speech, mean per-utterance "
            "WER (fraction); multi-person: per speaker via the speaker timestamps")
    Options = WEROptions

    def setup(self) -> None:
        self.model = self.load(WhisperASR)

    def compute(self, inp) -> dict:
        # the output's name, not "wer": the lite backend (wer_sphinx) reuses this protocol
        out = self.spec.outputs[0].name
        res = score_wer_caption(inp.audio(SAMPLE_RATE), SAMPLE_RATE, inp.caption, self.model,
                                self.options)
        if res.wer is None:
            return {f"{out}_reason": res.note or "no reference speech in the caption"}
        values: dict = {out: float(res.wer)}
        if isinstance(res, MultiSpeakerWER) and res.mode == "segments":
            stamps = inp.caption.speaker_timestamps
            values[f"{out}_turns"] = [
                {"speaker": s.speaker, "turn": k, "start_s": float(a), "end_s": float(b),
                 "value": v}
                for s in res.speakers
                if s.turn_wers and len(stamps.get(s.speaker, ())) == len(s.turn_wers)
                for k, ((a, b), v) in enumerate(zip(sorted(stamps[s.speaker]), s.turn_wers,
                                                    strict=True))]
        return values
