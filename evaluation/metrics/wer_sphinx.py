"""WER (PocketSphinx): the WER protocol with PocketSphinx as the recogniser, a lite backend.

Not the paper's protocol. The paper's WER (:mod:`.wer`) transcribes with Whisper large-v3,
whose checkpoint a laptop without the weights folder does not have; this metric runs CMU
PocketSphinx with the US-English models that ship inside the ``pocketsphinx`` wheel
(:class:`omni_core.models.sphinx.SphinxASR`) through the *same* protocol code: the
``<S>...<E>`` reference text, 16 kHz mono, seed-tts-eval's normalisation, jiwer per
utterance, the mean of per-utterance WERs; multi-person instances cut per speaker with the
caption's timestamps (:func:`.wer.score_wer_caption`, the :class:`~.wer.WERScoring` choices).

What differs, and why the numbers are not comparable with published WER:

- the recogniser: a 2010s semi-continuous HMM with a trigram language model and a closed
  126k-word dictionary instead of a 1.5 B-parameter transformer. Its error rate is several
  times Whisper's (measured: about 0.1 on clean read speech, about 0.8 on telephone
  conversation); use it to compare runs with each other, never with the paper;
- no 30 s window: PocketSphinx decodes the whole utterance;
- US English only. The benchmark instances carry no language, so the reference speech
  decides (:func:`not_english`): a reference with letters of another script (CJK, Cyrillic
  ...) or accented letters, or with fewer than ``min_in_vocabulary`` of its words in the
  recogniser's dictionary, is not scored; the instance is recorded as not computed with the
  reason, never as a number.

It has its own name, results, cache entries and table column (``WER (PocketSphinx)†``),
never mixed with ``wer``'s.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

import numpy as np

from omni_core.errors import OmniError
from omni_core.models.sphinx import SphinxASR
from omni_core.models.whisper import SAMPLE_RATE, Transcript
from omni_core.wer import normalize_text

from ..registry import MetricSpec, Output, register
from .wer import DIRECTION, WER, WERScoring, reference_text

__all__ = ["CAVEAT", "VERSION", "SphinxOptions", "SphinxTranscriber", "WERSphinx",
           "not_english"]

VERSION = "2"  # 2: per-turn WERs of multi-person instances
CAVEAT = "PocketSphinx US-English instead of Whisper large-v3; English only"
ENGLISH_ONLY = "the lite WER (PocketSphinx) recognises US English only"


@dataclass(frozen=True)
class SphinxOptions(WERScoring):
    """The WER scoring choices (:class:`~.wer.WERScoring`) and the English test.

    Attributes:
        min_in_vocabulary: the share of the reference's words that must be in PocketSphinx's
            dictionary for the instance to count as English (the recogniser can never output
            another word). English sentences score 0.9 - 1.0 (names are the usual misses);
            the 126k-word dictionary also holds many foreign words and names, so German,
            French or Italian sentences without accents score 0.3 - 0.75, and some Spanish
            ones above 0.8, which pass: the test is a heuristic, see :func:`not_english`.
    """

    min_in_vocabulary: float = 0.8

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.min_in_vocabulary <= 1.0:
            raise OmniError(f"SphinxOptions.min_in_vocabulary must be in [0, 1], "
                            f"got {self.min_in_vocabulary}")


def not_english(text: str, vocabulary: frozenset[str], min_in_vocabulary: float) -> str | None:
    """Why ``text`` (an instance's reference speech) is not English that PocketSphinx could
    transcribe, or ``None``. A heuristic, checked in this order: letters of another script
    (CJK, Cyrillic, ...); Latin letters English does not write (``à``, ``ñ``, ``ß``: the
    dictionary has no such word either); fewer than ``min_in_vocabulary`` of the normalised
    words in the recogniser's ``vocabulary``."""
    letters = {c for c in text if c.isalpha() and not c.isascii()}
    if letters:
        script = sorted(c for c in letters if not unicodedata.name(c, "").startswith("LATIN"))
        shown = "".join((script or sorted(letters))[:8])
        what = "is written in another script" if script else "has letters English does not use"
        return f"{ENGLISH_ONLY}; the reference speech {what} ({shown})"
    words = normalize_text(text).split()
    if not words:
        return None
    known = sum(w in vocabulary for w in words) / len(words)
    if known < min_in_vocabulary:
        return (f"{ENGLISH_ONLY}; {known:.0%} of the reference words are in its English "
                f"dictionary (at least {min_in_vocabulary:.0%} needed)")
    return None


class SphinxTranscriber:
    """PocketSphinx behind the protocol's recogniser interface (:class:`~.wer.Recognizer`).

    The :class:`~omni_core.models.whisper.Transcript` it returns holds the words joined
    (``text``), no Whisper tokens, ``avg_logprob`` = the mean log posterior of the words
    (0 when none), ``no_speech_prob`` NaN (PocketSphinx gives none) and never ``truncated``.
    """

    def __init__(self, asr: SphinxASR) -> None:
        self.asr = asr

    def transcribe(self, audio_16k: np.ndarray, options: Any = None, /) -> Transcript:
        x = np.asarray(audio_16k, dtype=np.float32)
        words = self.asr.transcribe(x, SAMPLE_RATE)
        logp = [float(np.log(max(w.probability, 1e-12))) for w in words]
        return Transcript("".join(w.text for w in words).strip(), (),
                          float(np.mean(logp)) if logp else 0.0, float("nan"),
                          len(x) / SAMPLE_RATE, False)


@register
class WERSphinx(WER):
    spec = MetricSpec(
        name="wer_sphinx", version=VERSION, needs=("audio16k", "caption"),
        outputs=(Output("wer_sphinx", "WER (PocketSphinx)", DIRECTION, caveat=CAVEAT),),
        backend="pocketsphinx", lite_for="wer",
        doc="lite WER: PocketSphinx US-English transcript (packaged model, no weights folder) "
            "with WER's normalisation and per-speaker protocol; English only; not the paper's")
    Options = SphinxOptions

    def setup(self) -> None:
        self.asr = self.load(SphinxASR)
        self.model = SphinxTranscriber(self.asr)

    def compute(self, inp) -> dict:
        why = not_english(reference_text(inp.caption), self.asr.vocabulary,
                          self.options.min_in_vocabulary)
        if why is not None:
            return {f"{self.spec.outputs[0].name}_reason": why}
        return super().compute(inp)
