"""Clean cloned voices for cross-pair timbre references (paper.md, "Data construction").

For each speaker, a zero-shot TTS says *other* words in that speaker's voice (so the timbre
reference cannot leak the target's words), the result is enhanced, and it is kept only if it
is still the same speaker and says the right words:

* :class:`VoiceCloner` -- ``clone(text, prompt_wav, prompt_rate, prompt_text) -> wav`` at the
  backend's ``sample_rate``; backends in :data:`CLONERS`:

  - ``cosyvoice``: CosyVoice 2 zero-shot (``inference_zero_shot``). Users install CosyVoice
    themselves (it is not on PyPI); it is imported only when used, and its absence is one
    clear error;
  - ``f5-tts``: F5-TTS v1 Base (installed with the suite; its checkpoint and the Vocos
    vocoder from the weights folder, :mod:`omni_core.models.f5tts`);
  - ``espeak``: a **test double** for tests and the demo: espeak-ng reads the text with the
    espeak pitch whose output's median F0 is closest to the prompt's. It mimics pitch only.

* :func:`check_clone` -- speaker similarity (WavLM + ECAPA cosine,
  :class:`omni_core.models.speaker.SpeakerVerifier`) against the original speech, at least
  ``min_similarity``; and the words (Whisper, the evaluator's normalisation and WER), at most
  ``max_wer`` (None: not checked). The result says which test failed, so a failure becomes
  an error row.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from omni_core.errors import OmniError

SAMPLE_RATE = 16000


class VoiceCloner(ABC):
    """A zero-shot voice-cloning backend."""

    name: ClassVar[str]
    #: True for backends that only stand in for a real one (tests, demo)
    test_double: ClassVar[bool] = False
    #: whether :meth:`clone` uses ``prompt_text`` (else the caller need not transcribe it)
    needs_prompt_text: ClassVar[bool] = True
    sample_rate: int = SAMPLE_RATE

    @abstractmethod
    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int,
              prompt_text: str) -> np.ndarray:
        """``text`` in the voice of ``prompt_wav`` (whose words are ``prompt_text``), float32
        mono at :attr:`sample_rate`."""


class CosyVoiceCloner(VoiceCloner):
    """CosyVoice 2 zero-shot cloning from a local model folder (e.g. CosyVoice2-0.5B)."""

    name = "cosyvoice"

    def __init__(self, model_dir: str | os.PathLike[str] | None, *, fp16: bool = False) -> None:
        _check_cosyvoice_dir(model_dir)
        try:
            from cosyvoice.cli.cosyvoice import CosyVoice2  # type: ignore[import-not-found]
        except ImportError as exc:
            raise OmniError(
                "the cosyvoice backend needs CosyVoice, which is not on PyPI: clone "
                "https://github.com/FunAudioLLM/CosyVoice, `pip install -r requirements.txt` "
                "there and put it (and third_party/Matcha-TTS) on PYTHONPATH; or use another "
                "clone backend") from exc
        self._model = CosyVoice2(str(model_dir), load_jit=False, load_trt=False, fp16=fp16)
        self.sample_rate = int(self._model.sample_rate)

    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int,
              prompt_text: str) -> np.ndarray:
        import torch

        from omni_core.media.audio import resample

        prompt = torch.from_numpy(resample(_mono(prompt_wav), prompt_rate, 16000))[None]
        chunks = [c["tts_speech"] for c in self._model.inference_zero_shot(
            text, prompt_text, prompt, stream=False)]
        if not chunks:
            raise OmniError("CosyVoice returned no audio")
        return torch.cat(chunks, dim=1)[0].float().numpy()


class F5Cloner(VoiceCloner):
    """F5-TTS v1 Base zero-shot cloning (24 kHz), installed from PyPI with the suite.

    ``weights``: ``"debug"`` (tiny random twin: it produces noise-like audio, so the clone check
    rejects it; for tests of the plumbing), ``"random"`` (real size, random) or the weights
    folder holding the ``f5-tts-v1-base`` and ``vocos-mel-24khz`` entries.
    """

    name = "f5-tts"

    def __init__(self, weights: str | os.PathLike[str] = "debug", device: str = "cpu", *,
                 seed: int = 0, **options: Any) -> None:
        from omni_core.models.f5tts import F5TTS, SamplingOptions

        self.seed = seed
        self._tts = F5TTS.for_weights(weights, device, options=SamplingOptions(**options))
        self.sample_rate = self._tts.sample_rate
        #: a debug / random-weights instance stands in for the real model
        self.test_double = self._tts.variant != "pretrained"

    def describe(self) -> str:
        return f"f5-tts: {self._tts.describe()}"

    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int,
              prompt_text: str) -> np.ndarray:
        return self._tts.clone(text, _mono(prompt_wav), prompt_rate, prompt_text, seed=self.seed)


class EspeakCloner(VoiceCloner):
    """Test double: espeak-ng speech at the espeak pitch that best matches the prompt's
    median F0 (searched over :attr:`PITCHES`). It clones nothing but the pitch."""

    name = "espeak"
    test_double = True
    needs_prompt_text = False
    PITCHES: ClassVar[tuple[int, ...]] = (10, 25, 40, 55, 70, 85, 99)

    def __init__(self, voice: str = "en-us", speed: int = 160) -> None:
        self.voice = voice
        self.speed = speed
        self.sample_rate = SAMPLE_RATE

    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int,
              prompt_text: str) -> np.ndarray:
        from omni_core.media.audio import resample

        target = median_f0(resample(_mono(prompt_wav), prompt_rate, SAMPLE_RATE))
        pitch = self.pitch_for(target)
        return _espeak(text, self.voice, pitch, self.speed)

    def pitch_for(self, f0: float | None) -> int:
        """The espeak pitch whose speech has the median F0 nearest ``f0`` (50 if unknown)."""
        if f0 is None:
            return 55
        table = {p: median_f0(_espeak("one two three four five", self.voice, p, self.speed))
                 for p in self.PITCHES}
        known = {p: f for p, f in table.items() if f is not None}
        if not known:
            return 55
        return min(known, key=lambda p: abs(np.log(known[p]) - np.log(f0)))


def _check_cosyvoice_dir(model_dir: str | os.PathLike[str] | None) -> None:
    if model_dir is None or not Path(model_dir).is_dir():
        raise OmniError(f"CosyVoice needs its model folder (clone.model_dir), got "
                        f"{model_dir!r}: download CosyVoice2-0.5B and point to it")


CLONERS: dict[str, type[VoiceCloner]] = {"cosyvoice": CosyVoiceCloner,
                                          "f5-tts": F5Cloner,
                                          "espeak": EspeakCloner}


def _cloner_class(name: str) -> type[VoiceCloner]:
    try:
        return CLONERS[name]
    except KeyError:
        raise OmniError(f"unknown clone backend {name!r}; choose one of "
                        f"{', '.join(CLONERS)}") from None


def make_cloner(name: str, **kw: Any) -> VoiceCloner:
    return _cloner_class(name)(**kw)


def check_cloner(name: str, *, model_dir: str | os.PathLike[str] | None,
                 weights: str | os.PathLike[str]) -> None:
    """The one-line error building backend ``name`` would raise for a missing model; loads
    nothing (the job's pre-flight)."""
    _cloner_class(name)
    if name == "cosyvoice":
        _check_cosyvoice_dir(model_dir)
    elif name == "f5-tts":
        from omni_core.models.f5tts import F5TTS

        F5TTS.check_weights(weights)


@cache
def _espeak(text: str, voice: str, pitch: int, speed: int) -> np.ndarray:
    from omni_core.samples.speech import Voice, synthesize

    return synthesize(text, Voice(voice, pitch, speed, "f"), SAMPLE_RATE)


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


def median_f0(wav: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float | None:
    """Median fundamental frequency (Hz) of the voiced frames (librosa's pYIN, 60-500 Hz),
    ``None`` when nothing is voiced."""
    import librosa

    x = _mono(wav)
    if x.size < sample_rate // 10:
        return None
    f0, voiced, _ = librosa.pyin(x, fmin=60.0, fmax=500.0, sr=sample_rate,
                                 frame_length=1024)
    vals = f0[voiced & np.isfinite(f0)]
    return float(np.median(vals)) if vals.size else None


# --------------------------------------------------------------------------------------------
# what the clones say

def load_texts(path: str | os.PathLike[str] | None) -> tuple[str, ...]:
    """The sentences clones may say: one per line of ``path`` (blank lines skipped), or the
    Harvard sentences (IEEE 1969; public domain) of :data:`omni_core.samples.speech.SENTENCES`:
    phonetically balanced and neutral."""
    if path is None:
        from omni_core.samples.speech import SENTENCES

        return SENTENCES
    lines = tuple(x.strip() for x in Path(path).read_text().splitlines() if x.strip())
    if not lines:
        raise OmniError(f"clone.texts: {path} holds no sentence")
    return lines


def pick_text(texts: tuple[str, ...], avoid: str, key: str) -> str:
    """The sentence sharing the fewest words with ``avoid`` (what the speaker says in the
    target: the reference must not carry the target's words); ties broken by ``key``'s hash,
    so a speaker's choice is stable and different speakers say different things."""
    from omni_core.manifests import stable_id
    from omni_core.wer import normalize_text

    said = set(normalize_text(avoid).split())
    overlap = [len(said & set(normalize_text(t).split())) for t in texts]
    best = [t for t, o in zip(texts, overlap, strict=True) if o == min(overlap)]
    return best[int(stable_id(key), 16) % len(best)]


# --------------------------------------------------------------------------------------------
# the check


@dataclass
class CloneCheckOptions:
    min_similarity: float = 0.5  # WavLM-ECAPA cosine with the original speech
    #: normalised word error rate of Whisper's transcript; None: words not checked (the
    #: offline demo, whose debug Whisper cannot read)
    max_wer: float | None = 0.2


@dataclass
class CloneCheck:
    similarity: float
    wer: float | None  # None: words not checked (max_wer None)
    transcript: str | None
    passed: bool
    reason: str  # empty when passed

    def to_dict(self) -> dict[str, Any]:
        return dict(vars(self))


def check_clone(clone: np.ndarray, clone_rate: int, original: np.ndarray,
                original_rate: int, text: str, verifier: Any, asr: Any,
                opts: CloneCheckOptions | None = None, language: str | None = "en"
                ) -> CloneCheck:
    """Is ``clone`` the speaker of ``original`` saying ``text``? ``verifier`` is a
    :class:`~omni_core.models.speaker.SpeakerVerifier`, ``asr`` a
    :class:`~omni_core.models.whisper.WhisperASR`."""
    from omni_core.media.audio import resample
    from omni_core.models.whisper import transcribe
    from omni_core.wer import utterance_wer

    o = opts or CloneCheckOptions()
    c16 = resample(_mono(clone), clone_rate, SAMPLE_RATE)
    o16 = resample(_mono(original), original_rate, SAMPLE_RATE)
    a, b = verifier.embed(c16), verifier.embed(o16)
    sim = float(np.dot(a, b) / max(1e-12, float(np.linalg.norm(a) * np.linalg.norm(b))))
    hyp: str | None = None
    wer: float | None = None
    if o.max_wer is not None:
        words = transcribe(asr, c16, SAMPLE_RATE, language=language)
        hyp = " ".join(w.text for w in words).strip()
        wer = float(utterance_wer(text, hyp).wer)
    reasons = []
    if sim < o.min_similarity:
        reasons.append(f"speaker similarity {sim:.3f} < {o.min_similarity}")
    if o.max_wer is not None and wer is not None and wer > o.max_wer:
        reasons.append(f"WER {wer:.3f} > {o.max_wer}")
    return CloneCheck(sim, wer, hyp, not reasons, "; ".join(reasons))
