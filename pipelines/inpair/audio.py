"""The ``audio`` stage of in-pair curation: who speaks when, and what they say, in one clip.

The DAG's audio actor decodes a clip to 16 kHz mono (``omni_core.media.load_audio``) and runs
the stage's networks, each built once per actor, then the one piece of pipeline logic:

1. :class:`~omni_core.models.enhancer.Enhancer` -- optional speech enhancement with
   ClearerVoice; off by default, and then the identity.
2. speaker diarization, exclusive turns (at most one speaker at any instant): the paper
   backend's :class:`~omni_core.models.diarizer.Diarizer` (pyannote.audio 4's community-1
   pipeline, or DiariZen), or the lite backend's
   :class:`~omni_core.models.lite_diarizer.LiteDiarizer` (Silero VAD + GE2E windows +
   agglomerative clustering).
3. words with timestamps: Whisper (:func:`omni_core.models.whisper.transcribe`) or, lite,
   PocketSphinx (:func:`omni_core.models.sphinx.transcribe`, US English only).
4. :func:`attribute_words` -- every word to the speaker turn it overlaps most ->
   :class:`Segment` s (speaker, span, text, words).

:class:`AudioModels` bundles the networks of one backend and runs 1-4 for the DAG.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from omni_core.errors import OmniError
from omni_core.models.diarizer import Diarizer, Turn, check_backend
from omni_core.models.enhancer import Enhancer

if TYPE_CHECKING:  # omni_core.models.whisper imports torch: only when the stage runs
    from omni_core.models.whisper import Word

    from .config import AudioOptions

__all__ = [
    "SAMPLE_RATE",
    "AudioModels",
    "AudioResult",
    "Segment",
    "Segments",
    "attribute_words",
]

SAMPLE_RATE = 16000


# --------------------------------------------------------------------------------------------
# results


@dataclass(frozen=True)
class Segment:
    """The words of one speaker turn. The span is the turn's, widened to cover words that
    joined it from a gap next to it (see :func:`attribute_words`)."""

    speaker: str
    start_s: float
    end_s: float
    text: str
    words: tuple[Word, ...] = ()

    @property
    def confidence(self) -> float | None:
        """Mean word probability; ``None`` for a turn in which Whisper heard no word."""
        if not self.words:
            return None
        return float(np.mean([w.probability for w in self.words]))


class Segments(list[Segment]):
    """A list of :class:`Segment` plus ``dropped``: the words no turn could take."""

    def __init__(self, segments: Sequence[Segment] = (), dropped: Sequence[Word] = ()) -> None:
        super().__init__(segments)
        self.dropped: tuple[Word, ...] = tuple(dropped)


# --------------------------------------------------------------------------------------------
# 4. words -> speaker segments (pure)

_EPS = 1e-9


def attribute_words(words: Sequence[Word], turns: Sequence[Turn], *, max_gap_s: float = 0.5,
                    keep_empty: bool = True) -> Segments:
    """Give every word to one turn and return one :class:`Segment` per turn, sorted by start.

    A word goes to the turn it overlaps longest; on equal overlap, to the earlier turn (by
    start, then end, then speaker). A word of zero length counts as inside a turn whose span
    contains it. A word that overlaps no turn goes to the nearest turn when the gap between
    them is at most ``max_gap_s`` (on equal gaps, the earlier turn), and that segment's span is
    widened to cover it; otherwise the word is dropped and listed in ``Segments.dropped``.
    Consecutive turns of one speaker stay separate segments. ``keep_empty`` keeps turns that
    received no word (text ``""``): diarization heard speech there even if Whisper did not.
    """
    if max_gap_s < 0:
        raise OmniError(f"max_gap_s must be >= 0, got {max_gap_s}")
    order = sorted(turns, key=lambda t: (t.start_s, t.end_s, t.speaker))
    taken: list[list[Word]] = [[] for _ in order]
    lo = [t.start_s for t in order]
    hi = [t.end_s for t in order]
    dropped: list[Word] = []
    for w in sorted(words, key=lambda w: (w.start_s, w.end_s)):
        best, best_overlap = None, 0.0
        for k, t in enumerate(order):
            overlap = min(w.end_s, t.end_s) - max(w.start_s, t.start_s)
            if overlap > best_overlap + _EPS:
                best, best_overlap = k, overlap
        if best is None and w.end_s - w.start_s <= _EPS:
            best = next((k for k, t in enumerate(order) if t.start_s <= w.start_s <= t.end_s),
                        None)
        if best is None:
            gaps = [max(t.start_s - w.end_s, w.start_s - t.end_s, 0.0) for t in order]
            if gaps and min(gaps) <= max_gap_s + _EPS:
                best = gaps.index(min(gaps))
                lo[best] = min(lo[best], w.start_s)
                hi[best] = max(hi[best], w.end_s)
        if best is None:
            dropped.append(w)
        else:
            taken[best].append(w)
    segments = [
        Segment(t.speaker, lo[k], hi[k], "".join(w.text for w in taken[k]).strip(),
                tuple(taken[k]))
        for k, t in enumerate(order) if taken[k] or keep_empty
    ]
    segments.sort(key=lambda s: (s.start_s, s.end_s, s.speaker))
    return Segments(segments, dropped)


# --------------------------------------------------------------------------------------------
# the stage's networks and its run


def _backend(options: Any, weights: str | os.PathLike[str] | None) -> str:
    """``paper`` or ``lite``; ``auto`` decided as a job would for these ``weights``."""
    backend = getattr(options, "backend", "paper")
    if backend == "auto":
        from dataclasses import replace

        from omni_core.models.profile import choose

        paper = replace(options, backend="paper")
        return choose("auto", weights, [lambda w: AudioModels.check(paper, w)]).profile
    if backend not in ("paper", "lite"):
        raise OmniError(f"audio.backend {backend!r} has no models to load (paper or lite)")
    return backend


@dataclass
class AudioResult:
    """Everything stage 2 found in one clip."""

    turns: list[Turn]
    words: list[Word]
    segments: Segments


@dataclass
class AudioModels:
    """One backend's networks, built once per actor, and the per-clip run (enhance -> diarize
    (exclusive turns) -> transcribe -> attribute). ``transcribe`` is the backend's
    ``transcribe(asr, waveform, sample_rate, language)``."""

    enhancer: Enhancer
    diarizer: Any
    asr: Any
    transcribe: Callable[..., list[Word]]
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    language: str | None = None
    max_gap_s: float = 0.5
    notes: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, options: AudioOptions, weights: str | os.PathLike[str] | None = "debug",
             device: str = "cpu", *, seed: int = 0) -> AudioModels:
        """Build the models of ``options`` (the DAG's ``AudioOptions``; ``backend`` ``paper``
        or ``lite``). ``weights`` (the paper backend's, and the enhancer's): ``"debug"`` (tiny
        random models), ``"random"`` (released sizes, random weights), or a weights folder
        (``omni weights fetch`` layout)."""
        backend = _backend(options, weights)
        if backend == "paper" and weights is None:
            from omni_core.models.profile import weights_setting

            weights = weights_setting(weights)
        enabled = bool(getattr(options, "enhance", False))
        enhancer = Enhancer(enabled=enabled, weights=weights if enabled else "debug")
        if backend == "lite":
            from omni_core.models import sphinx
            from omni_core.models.lite_diarizer import LiteDiarizer

            diarizer: Any = LiteDiarizer.from_pretrained(device=device)
            asr: Any = sphinx.SphinxASR.from_pretrained(device=device)
            transcribe = sphinx.transcribe
            name = "lite"
        else:
            from omni_core.models import whisper

            name = getattr(options, "diarizer", "pyannote")
            check_backend(name)
            diarizer = Diarizer.for_weights(weights, device, seed=seed, backend=name)
            asr = whisper.WhisperASR.for_weights(weights, device, seed=seed)
            transcribe = whisper.transcribe
        enhancing = f"ClearerVoice {enhancer.model_name}" if enhancer.enabled else "off"
        return cls(enhancer, diarizer, asr, transcribe,
                   num_speakers=getattr(options, "num_speakers", None),
                   min_speakers=getattr(options, "min_speakers", None),
                   max_speakers=getattr(options, "max_speakers", None),
                   language=getattr(options, "language", None),
                   max_gap_s=float(getattr(options, "max_gap_s", 0.5)),
                   notes=[f"diarizer ({name}): {diarizer.describe()}",
                          f"asr: {asr.describe()}",
                          f"enhancer: {enhancing}"])

    @staticmethod
    def check(options: AudioOptions, weights: str | os.PathLike[str] | None = "debug") -> None:
        """The one-line error :meth:`load` would raise for a missing checkpoint; loads
        nothing (the job's pre-flight)."""
        backend = _backend(options, weights)
        Enhancer.check(bool(getattr(options, "enhance", False)), Enhancer.DEFAULT_MODEL,
                       weights)
        if backend == "lite":
            from omni_core.models.lite_diarizer import LiteDiarizer
            from omni_core.models.sphinx import SphinxASR

            LiteDiarizer.check_weights(None)
            SphinxASR.check_weights(None)
            return
        from omni_core.models.whisper import WhisperASR

        name = getattr(options, "diarizer", "pyannote")
        check_backend(name)
        Diarizer.check_weights(weights, backend=name)
        WhisperASR.check_weights(weights)

    def run(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> AudioResult:
        x = self.enhancer(waveform, sample_rate)
        turns = self.diarizer.diarize(x, sample_rate, self.num_speakers, self.min_speakers,
                                      self.max_speakers)
        words = self.transcribe(self.asr, x, sample_rate, self.language)
        return AudioResult(turns, words, attribute_words(words, turns, max_gap_s=self.max_gap_s))

    def segments(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE) -> Segments:
        """The clip's speaker segments (what the DAG's ``speech_segments`` rows hold)."""
        return self.run(waveform, sample_rate).segments

