"""PocketSphinx US-English speech recognition (the ``pocketsphinx`` wheel's own model).

The wheel ships CMU Sphinx's ``en-us`` semi-continuous acoustic model (16 kHz), the
``en-us.lm.bin`` trigram language model and ``cmudict-en-us.dict``; :class:`SphinxASR`
runs PocketSphinx 5's ``Decoder`` on them and returns words with times, a drop-in for
:func:`omni_core.models.whisper.transcribe` (the same :class:`~.whisper.Word` type):

- ``text`` is the dictionary word with a leading space, as Whisper writes English words, so
  joining the texts gives the transcript; alternative pronunciations (``the(2)``) are folded
  into their word, and the decoder's fillers (``<s>``, ``</s>``, ``<sil>``, ``[NOISE]`` ...)
  are left out. The dictionary is lower case with apostrophes (``didn't``) and no
  punctuation;
- ``start_s``/``end_s`` come from the word's frames (100 per second; the end frame is
  inclusive, so a word on frames 10..19 lasts 0.10 .. 0.20 s);
- ``probability`` is the word's posterior probability in the decoder's lattice.

Each utterance is decoded in one call with ``full_utt=True`` (the model normalises cepstra
over the whole utterance), from a freshly initialised front end: PocketSphinx otherwise
carries its noise and cepstral-mean estimates from one utterance to the next, which makes a
transcript depend on what the decoder heard before. :meth:`SphinxASR.transcribe` decodes the
whole waveform as one utterance, or each of the given speech ``segments`` (a VAD's,
:mod:`.vad`) as its own, which keeps long recordings tractable.

Expect a high word error rate on conversational or telephone speech: this is a lite
stand-in for Whisper. Measured (tests/omni_core/models/test_sphinx.py): WER 0.11 on the
clean English prompt that ships with f5-tts, 0.78 on ten seconds and 0.83 on the whole of
pyannote.audio's 30 s telephone sample; about a third of real time on one core.

There is no random twin (an acoustic model is a set of trained Gaussian mixtures in
Sphinx's own file formats): :meth:`SphinxASR.debug` is the released model with narrow search
beams and no second pass (about three times faster, less accurate).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np

from omni_core.errors import OmniError, WeightsError, first_line
from omni_core.media.audio import model_input

from .packaged import PackagedComponent
from .whisper import Word

__all__ = ["DEBUG_SEARCH", "SAMPLE_RATE", "SphinxASR", "transcribe"]

SAMPLE_RATE = 16000
FRAMES_PER_SECOND = 100
ACOUSTIC_MODEL = "model/en-us/en-us/mdef"  # one file of the acoustic model folder
LANGUAGE_MODEL = "model/en-us/en-us.lm.bin"
DICTIONARY = "model/en-us/cmudict-en-us.dict"
#: search settings of the debug variant (defaults: beam 1e-48, wbeam 7e-29, fwdflat on)
DEBUG_SEARCH: dict[str, Any] = {"beam": 1e-40, "wbeam": 1e-30, "maxhmmpf": 3000,
                                "fwdflat": False}
_LANGUAGES = (None, "en", "en-us", "english")


def _is_filler(word: str) -> bool:
    return word.startswith(("<", "[", "+")) or not word


def _base_word(word: str) -> str:
    """``the(2)`` -> ``the`` (CMUdict's alternative pronunciations)."""
    return word.split("(", 1)[0] if word.endswith(")") else word


class SphinxASR(PackagedComponent):
    """PocketSphinx 5 with the wheel's US-English models; CPU only, single-threaded. One
    instance holds one decoder: do not share it between threads."""

    package_dist = "pocketsphinx"
    package_module = "pocketsphinx"
    package_pin = "5.1.1"
    package_files = (ACOUSTIC_MODEL, LANGUAGE_MODEL, DICTIONARY)

    def __init__(self, hmm: Path, lm: Path, dictionary: Path, **search: Any) -> None:
        from pocketsphinx import Decoder

        self.search = dict(search)
        self.dictionary = Path(dictionary)
        try:
            self.decoder = Decoder(hmm=str(hmm), lm=str(lm), dict=str(dictionary),
                                   samprate=SAMPLE_RATE, loglevel="FATAL", **search)
        except (ValueError, RuntimeError) as exc:
            raise WeightsError(f"PocketSphinx cannot load its models from {hmm.parent}: "
                               f"{first_line(exc)}") from exc

    @functools.cached_property
    def vocabulary(self) -> frozenset[str]:
        """Every word the recogniser can output (the dictionary's, lower case, alternative
        pronunciations folded): a word outside it is never recognised."""
        with open(self.dictionary, encoding="utf-8") as f:
            return frozenset(_base_word(line.split(None, 1)[0]) for line in f if line.strip())

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        return cls(Path(paths[ACOUSTIC_MODEL]).parent, Path(paths[LANGUAGE_MODEL]),
                   Path(paths[DICTIONARY]), **kw)

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """The released model with :data:`DEBUG_SEARCH` (see the module docstring)."""
        paths, _ = cls.weight_paths()
        return cls._load(paths, device, **{**DEBUG_SEARCH, **kw})

    # ---- recognition

    def _decode(self, pcm: np.ndarray, offset_s: float) -> list[Word]:
        dec = self.decoder
        dec.reinit_feat()  # the noise and cepstral-mean estimates would carry over otherwise
        dec.start_utt()
        dec.process_raw(pcm.tobytes(), full_utt=True)
        dec.end_utt()
        if dec.hyp() is None:
            return []
        out = []
        for seg in dec.seg():
            if _is_filler(seg.word):
                continue
            start = offset_s + seg.start_frame / FRAMES_PER_SECOND
            end = offset_s + (seg.end_frame + 1) / FRAMES_PER_SECOND
            out.append(Word(" " + _base_word(seg.word), start, end,
                            float(min(max(seg.prob, 0.0), 1.0))))
        return out

    def transcribe(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                   segments: Sequence[tuple[float, float]] | None = None) -> list[Word]:
        """Words with times (seconds from the waveform's start, clipped to it, in order).

        ``segments``: ``(start_s, end_s)`` stretches of speech to decode one by one (others
        are skipped); ``None`` decodes the whole waveform as one utterance.
        """
        x = model_input(waveform, sample_rate, SAMPLE_RATE, "speech recognition")
        pcm = np.round(np.clip(x, -1.0, 1.0) * 32767).astype("<i2")
        duration = len(x) / SAMPLE_RATE
        spans = [(0.0, duration)] if segments is None else sorted(segments)
        words: list[Word] = []
        last_end = 0.0
        for start_s, end_s in spans:
            a = max(0, int(round(start_s * SAMPLE_RATE)))
            b = min(len(pcm), int(round(end_s * SAMPLE_RATE)))
            if b - a < SAMPLE_RATE // FRAMES_PER_SECOND * 3:  # under 3 frames: nothing to hear
                continue
            for w in self._decode(pcm[a:b], a / SAMPLE_RATE):
                start = min(max(w.start_s, last_end), duration)
                end = min(max(w.end_s, start), duration)
                words.append(Word(w.text, start, end, w.probability))
                last_end = end
        return words


def transcribe(model: SphinxASR, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
               language: str | None = None, *, fp16: bool = False,
               condition_on_previous_text: bool = False) -> list[Word]:
    """:func:`omni_core.models.whisper.transcribe`'s signature on PocketSphinx: words with
    times for the whole waveform. Only English is available (``language`` None or "en");
    ``fp16`` and ``condition_on_previous_text`` mean nothing to PocketSphinx and are ignored."""
    if (language.lower() if isinstance(language, str) else language) not in _LANGUAGES:
        raise OmniError(f"the lite recogniser (PocketSphinx) knows US English only, "
                        f"not {language!r}")
    return model.transcribe(waveform, sample_rate)
