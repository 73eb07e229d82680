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
    espeak voice (accent, variant, pitch) whose GE2E embedding is nearest the prompt's. It
    can only reproduce voices espeak-ng makes (the sample corpus's); real voices' clones
    fail the check, as they should.

* :func:`check_clone` -- speaker similarity (cosine of speaker embeddings) against the
  original speech, at least ``min_similarity`` (None: the verifier's own threshold); and the
  words (a recogniser's transcript, the evaluator's normalisation and WER), at most
  ``max_wer`` (None: not checked). The result says which test failed, so a failure becomes
  an error row. Its models (:func:`load_check_models`, a :class:`CheckModels`): the paper's,
  WavLM-large + ECAPA (:class:`omni_core.models.speaker.SpeakerVerifier`) and Whisper
  large-v3 from the weights folder (or their random twins), or the lite ones, Resemblyzer's
  GE2E and PocketSphinx from their wheels (their operating points: docs/crosspair.md, "Clone
  check on the lite models", measured by ``python -m bench.clone_check``).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from omni_core.errors import OmniError

if TYPE_CHECKING:
    from omni_core.samples.speech import Voice

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
    """**Test double** (tests and the offline demo): espeak-ng reads the text with the espeak
    voice nearest the prompt's speaker.

    The candidates are every accent x variant x pitch of :attr:`ACCENTS`, :attr:`VARIANTS`
    and :attr:`PITCHES` (those of the sample corpus's voices and a few more; speed fixed at
    ``speed``, as the corpus's voices are near it; 539 voices). Each says
    :attr:`CALIBRATION` once per process, on the first clone (:func:`voice_grid`: 12 - 14 s
    on one core, measured by ``python -m bench.clone_check``; one torch thread is the
    fastest, which the caller sets); a clone speaks with the candidate whose GE2E embedding
    (:class:`~omni_core.models.ge2e.GE2EEncoder`, loaded from its wheel) of that sentence
    has the highest cosine with the prompt's.

    It can only reproduce voices espeak-ng can make: the sample corpus's speakers get a
    clone the lite clone check accepts (17 of 18 at GE2E 0.77, docs/crosspair.md "Clone check
    on the lite models"), while a real human voice gets the nearest robot, which that check
    rightly refuses (0 of 17 real voices' clones pass). It is no voice cloner.
    """

    name = "espeak"
    test_double = True
    needs_prompt_text = False
    #: the corpus's accents (omni_core/samples/speech.py) and New York
    ACCENTS: ClassVar[tuple[str, ...]] = ("en-us", "en-gb", "en-gb-scotland", "en",
                                          "en-gb-x-rp", "en-029", "en-us-nyc")
    #: the corpus's variants and f5, m2, m4
    VARIANTS: ClassVar[tuple[str, ...]] = ("f1", "f2", "f3", "f4", "f5",
                                           "m1", "m2", "m3", "m4", "m5", "m7")
    PITCHES: ClassVar[tuple[int, ...]] = (10, 25, 40, 55, 70, 85, 99)
    #: what each candidate says to be compared with the prompt (2.3 s: two GE2E partials)
    CALIBRATION: ClassVar[str] = "The birch canoe slid on the smooth planks."

    def __init__(self, speed: int = 160) -> None:
        self.speed = speed
        self.sample_rate = SAMPLE_RATE

    def candidates(self) -> tuple[Voice, ...]:
        from omni_core.samples.speech import Voice

        return tuple(Voice(f"{a}+{v}", p, self.speed, v[0])
                     for a in self.ACCENTS for v in self.VARIANTS for p in self.PITCHES)

    def voice_for(self, prompt_wav: np.ndarray, prompt_rate: int) -> Voice:
        """The candidate whose calibration embedding is nearest (cosine) the prompt's."""
        from omni_core.media.audio import resample

        grid = voice_grid(self.candidates())
        e = _ge2e().embed(resample(_mono(prompt_wav), prompt_rate, SAMPLE_RATE))
        return grid.voices[int(np.argmax(grid.embeddings @ e))]

    def clone(self, text: str, prompt_wav: np.ndarray, prompt_rate: int,
              prompt_text: str) -> np.ndarray:
        from omni_core.samples.speech import speak

        voice = self.voice_for(prompt_wav, prompt_rate)
        return np.array(speak(text, voice, SAMPLE_RATE, in_process=True))


@dataclass(frozen=True)
class VoiceGrid:
    """The espeak double's candidates and the GE2E embeddings (n, 256) of their saying
    :attr:`EspeakCloner.CALIBRATION`; ``seconds``: what building it took."""

    voices: tuple[Voice, ...]
    embeddings: np.ndarray
    seconds: float


@cache
def voice_grid(voices: tuple[Voice, ...]) -> VoiceGrid:
    """:class:`VoiceGrid` of ``voices``, built once per process."""
    import time

    from omni_core.samples.speech import speak

    t0 = time.perf_counter()
    wavs = [speak(EspeakCloner.CALIBRATION, v, SAMPLE_RATE, in_process=True) for v in voices]
    emb = _ge2e().embed_many(wavs)
    emb.setflags(write=False)
    return VoiceGrid(voices, emb, time.perf_counter() - t0)


@cache
def _ge2e() -> Any:
    from omni_core.models.ge2e import GE2EEncoder

    return GE2EEncoder.from_pretrained()


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


def _mono(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x.mean(axis=1) if x.ndim == 2 else x


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


class SpeakerEmbedder(Protocol):
    """What the check needs of a speaker model (:class:`~omni_core.models.speaker.
    SpeakerVerifier`, :class:`~omni_core.models.ge2e.GE2EEncoder`)."""

    #: cosine at or above which two of its embeddings count as one speaker
    same_speaker_threshold: float

    def embed(self, wav16k: np.ndarray) -> np.ndarray:
        """One 16 kHz mono utterance -> its speaker embedding."""
        ...


@dataclass
class CheckModels:
    """The clone check's models: a speaker embedder, a recogniser and the function that
    transcribes with it (``transcribe_fn(asr, waveform, sample_rate, language=...)`` giving
    Whisper-like words: :func:`omni_core.models.whisper.transcribe`,
    :func:`omni_core.models.sphinx.transcribe`)."""

    verifier: SpeakerEmbedder
    asr: Any
    transcribe_fn: Callable[..., list[Any]]
    #: the WER gate this recogniser can hold (``check.max_wer`` null uses it; None: it cannot
    #: tell right words from wrong ones on the speech measured)
    max_wer: float | None = 0.2
    lite: bool = False

    @property
    def min_similarity(self) -> float:
        """The verifier's operating point (used when ``min_similarity`` is null)."""
        return float(self.verifier.same_speaker_threshold)

    def transcribe(self, wav16k: np.ndarray, language: str | None = "en") -> str:
        """The transcript (the words' texts joined: both recognisers write English words
        with a leading space)."""
        words = self.transcribe_fn(self.asr, wav16k, SAMPLE_RATE, language=language)
        return "".join(w.text for w in words).strip()


#: PocketSphinx reads none of the espeak-ng speech (the corpus voices and the espeak double's
#: clones: WER about 1 for the right and the wrong words alike, docs/crosspair.md "Clone check
#: on the lite models"), so with the lite models the words are no gate by default
LITE_MAX_WER: float | None = None


def _verifier_class(lite: bool) -> type:
    if lite:
        from omni_core.models.ge2e import GE2EEncoder

        return GE2EEncoder
    from omni_core.models.speaker import SpeakerVerifier

    return SpeakerVerifier


def default_min_similarity(lite: bool) -> float:
    """The similarity threshold of the verifier :func:`load_check_models` builds, without
    loading it (for the driver's summary)."""
    return float(_verifier_class(lite).same_speaker_threshold)


def load_check_models(lite: bool, weights: str | os.PathLike[str] = "debug",
                      device: str = "cpu", *, seed: int = 0) -> CheckModels:
    """The clone check's models. ``lite``: Resemblyzer's GE2E encoder and PocketSphinx US
    English, the real models inside their wheels (``weights`` is not read; CPU). Otherwise
    the paper's: WavLM-large + ECAPA and Whisper large-v3 for ``weights`` (a weights folder,
    or ``"debug"`` / ``"random"`` for the random twins)."""
    if lite:
        from omni_core.models import sphinx

        # the same encoder the espeak double picks its voices with: loaded once per process
        return CheckModels(_ge2e(), sphinx.SphinxASR.from_pretrained(), sphinx.transcribe,
                           max_wer=LITE_MAX_WER, lite=True)
    from omni_core.models import whisper
    from omni_core.models.speaker import SpeakerVerifier

    verifier = SpeakerVerifier.for_weights(weights, device, seed=seed)
    asr = whisper.WhisperASR.for_weights(weights, device, seed=seed)
    twins = str(weights) in ("debug", "random")  # random weights cannot read
    return CheckModels(verifier, asr, whisper.transcribe, max_wer=None if twins else 0.2)


def check_check_models(lite: bool, weights: str | os.PathLike[str] = "debug") -> None:
    """The one-line error :func:`load_check_models` would raise for a missing model file;
    loads nothing (the job's pre-flight)."""
    if lite:
        from omni_core.models.ge2e import GE2EEncoder
        from omni_core.models.sphinx import SphinxASR

        GE2EEncoder.weight_paths()
        SphinxASR.weight_paths()
        return
    from omni_core.models.speaker import SpeakerVerifier
    from omni_core.models.whisper import WhisperASR

    SpeakerVerifier.check_weights(weights)
    WhisperASR.check_weights(weights)


CHECK_BACKENDS = ("auto", "paper", "lite")


@dataclass
class CloneCheckOptions:
    #: the check's models: ``paper`` (WavLM-large + ECAPA and Whisper large-v3 from the
    #: weights folder, or their twins), ``lite`` (GE2E + PocketSphinx from their wheels) or
    #: ``auto`` (the job's ``models`` switch decides, :mod:`omni_core.models.profile`)
    backend: str = "auto"
    #: cosine of the clone's and the original's speaker embeddings; None: the verifier's own
    #: operating point (WavLM-ECAPA 0.5, GE2E :attr:`~omni_core.models.ge2e.GE2EEncoder.
    #: same_speaker_threshold`)
    min_similarity: float | None = None
    #: normalised word error rate of the clone's transcript; None: the recogniser's own gate
    #: (:attr:`CheckModels.max_wer`: 0.2 for Whisper large-v3; none for its random twins,
    #: which cannot read, nor for PocketSphinx, which cannot read espeak-ng speech). A large
    #: value (e.g. 100) never refuses.
    max_wer: float | None = None

    def __post_init__(self) -> None:
        if self.backend not in CHECK_BACKENDS:
            raise ValueError(f"check.backend must be one of {', '.join(CHECK_BACKENDS)}, got "
                             f"{self.backend!r}")

    def threshold(self, models: CheckModels | None = None, *, lite: bool = False) -> float:
        """``min_similarity``, or the verifier's default (of ``models``, else of the set
        ``lite`` names)."""
        if self.min_similarity is not None:
            return float(self.min_similarity)
        return models.min_similarity if models is not None else default_min_similarity(lite)

    def wer_gate(self, models: CheckModels) -> float | None:
        """``max_wer``, or the recogniser's own gate (None: the words are not checked)."""
        return models.max_wer if self.max_wer is None else float(self.max_wer)


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
                original_rate: int, text: str, models: CheckModels,
                opts: CloneCheckOptions | None = None, language: str | None = "en"
                ) -> CloneCheck:
    """Is ``clone`` the speaker of ``original`` saying ``text``? The speaker embeddings'
    cosine against :meth:`CloneCheckOptions.threshold`, the transcript's WER against
    ``max_wer``."""
    from omni_core.media.audio import resample
    from omni_core.wer import utterance_wer

    o = opts or CloneCheckOptions()
    c16 = resample(_mono(clone), clone_rate, SAMPLE_RATE)
    o16 = resample(_mono(original), original_rate, SAMPLE_RATE)
    a, b = models.verifier.embed(c16), models.verifier.embed(o16)
    sim = float(np.dot(a, b) / max(1e-12, float(np.linalg.norm(a) * np.linalg.norm(b))))
    threshold = o.threshold(models)
    gate = o.wer_gate(models)
    hyp: str | None = None
    wer: float | None = None
    if gate is not None:
        hyp = models.transcribe(c16, language)
        wer = float(utterance_wer(text, hyp).wer)
    reasons = []
    if sim < threshold:
        reasons.append(f"speaker similarity {sim:.3f} < {threshold:g}")
    if gate is not None and wer is not None and wer > gate:
        reasons.append(f"WER {wer:.3f} > {gate:g}")
    return CloneCheck(sim, wer, hyp, not reasons, "; ".join(reasons))
