"""T-Sim (timbre similarity): seed-tts-eval's SIM, WavLM-large + ECAPA-TDNN speaker embeddings.

Reference: ``BytedanceSpeech/seed-tts-eval`` ``cal_sim.sh`` ->
``thirdparty/UniSpeech/downstreams/speaker_verification/verification.py`` with
``--model_name wavlm_large --checkpoint wavlm_large_finetune.pth``, i.e.
``ECAPA_TDNN_SMALL(feat_dim=1024, feat_type='wavlm_large', config_path=None)`` from
``models/ecapa_tdnn.py``, whose upstream is s3prl's ``wavlm_large`` (``UpstreamExpert`` in
``s3prl/upstream/wavlm/expert.py``), and ``torch.load(ckpt)['model']`` loaded on top with
``strict=False``.

Protocol (the defaults of :class:`TSimOptions`):

1. Both waveforms at 16 kHz mono, whole utterance, no VAD, no trimming.
2. Embedding (:meth:`SpeakerVerifier.forward`), one utterance at a time (batch 1, as upstream):
   a. the waveform is normalised to zero mean / unit variance over the whole utterance
      (``F.layer_norm(wav, wav.shape)``, eps 1e-5: s3prl does this because WavLM-large's
      ``cfg.normalize`` is true);
   b. WavLM-large; the ``hidden_states`` are what s3prl's hooks collect: the input of each of
      the 24 transformer layers (the first one is the CNN features after the projection and
      the convolutional position embedding) plus the encoder output after its final layer
      norm -> 25 tensors;
   c. softmax(``feature_weight``)-weighted sum of the 25, transposed to (B, C, T), ``+ 1e-6``,
      ``InstanceNorm1d(1024)`` (no affine, instance statistics);
   d. ECAPA-TDNN "small" (512 channels, three SE-Res2 blocks with dilation 2/3/4, 1536-channel
      aggregation, attentive statistics pooling, BatchNorm, Linear -> 256-d).
3. Score = ``F.cosine_similarity`` of the generated-speech and reference-timbre embeddings, in
   [-1, 1] (not clipped, not x100).

Multi-person instances (:func:`t_sim_multi`): each speaker's part of the generated audio is cut
with the caption's per-speaker timestamps and compared with that speaker's reference wav; the
instance score is the mean over speakers. See :class:`TSimOptions` for the choices
(``segment_mode``, ``missing_timestamps``) and the documented fallback.

The model (ECAPA-TDNN and the loading rules) lives in :mod:`omni_core.models.speaker`, its
WavLM (transformers' with our key converter) in :mod:`omni_core.models.wavlm`; the cross-pair
curation uses both too.

Not reproduced bit for bit: upstream reads files with librosa and resamples with torchaudio's
sinc ``Resample``; we take audio as :mod:`omni_core.media` decodes it (soxr, channel mean).
Upstream keeps only the first channel of a stereo file; we average the channels as the
protocol says (16 kHz mono).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from omni_core.models.speaker import MIN_SAMPLES, SpeakerVerifier

from ..registry import Metric, MetricSpec, Output, register

__all__ = [
    "DIRECTION",
    "SAMPLE_RATE",
    "VERSION",
    "MultiTSimResult",
    "SpeakerEmbedder",
    "SpeakerTSim",
    "TSimOptions",
    "TSimResult",
    "cosine",
    "speaker_audio",
    "t_sim",
    "t_sim_multi",
]

VERSION = "2"  # 2: per-turn breakdown of multi-person instances
DIRECTION = "higher"
SAMPLE_RATE = 16000

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# protocol


@dataclass(frozen=True)
class TSimOptions:
    """Every T-Sim choice; defaults = seed-tts-eval's SIM as the paper uses it.

    Attributes:
        sample_rate: the model's rate. Inputs at another rate are resampled with
            :func:`omni_core.media.audio.resample` (upstream: torchaudio's sinc Resample).
        checkpoint: the weights entry the scores come from (recorded with the results;
            ``wavlm-large-sv-ecapa`` = ``wavlm_large_finetune.pth``).
        segment_mode: multi-person only. ``"concat"``: a speaker's turns (caption timestamps)
            are concatenated into one utterance and embedded once, the closest thing to
            upstream's one-utterance-per-speaker protocol; ``"per_turn"``: each turn is
            embedded alone and the speaker's score is the mean of the per-turn cosines.
        missing_timestamps: multi-person only, when the caption gives no timestamps for a
            speaker. ``"whole_audio"``: compare the whole generated track with that speaker's
            reference (the result is flagged ``fallback="whole_audio"``; it mixes the other
            speakers' voices in, so it understates separation); ``"skip"``: the speaker gets no
            score (reason recorded) and the instance is scored on the others, or not at all.
        min_segment_s: multi-person only: segments (after clipping to the audio) shorter than
            this are dropped; a speaker with no segment left is scored as in
            ``missing_timestamps``. The floor is WavLM's receptive field (400 samples).
        turn_breakdown: multi-person only: also score each turn on its own against the
            speaker's reference (the per-turn table of a comparison; it never changes the
            instance's score). In ``concat`` mode that embeds every turn once more.
    """

    sample_rate: int = SAMPLE_RATE
    checkpoint: str = "wavlm-large-sv-ecapa"
    segment_mode: str = "concat"
    missing_timestamps: str = "whole_audio"
    min_segment_s: float = 0.0
    turn_breakdown: bool = True

    def __post_init__(self) -> None:
        if self.sample_rate != SAMPLE_RATE:
            raise ValueError(f"T-Sim's model runs at {SAMPLE_RATE} Hz, got {self.sample_rate}")
        if self.segment_mode not in ("concat", "per_turn"):
            raise ValueError(f"segment_mode must be concat or per_turn, got {self.segment_mode!r}")
        if self.missing_timestamps not in ("whole_audio", "skip"):
            raise ValueError(
                f"missing_timestamps must be whole_audio or skip, got {self.missing_timestamps!r}"
            )
        if self.min_segment_s < 0:
            raise ValueError("min_segment_s must be >= 0")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class SpeakerEmbedder(Protocol):
    """What the protocol needs from a speaker model: one embedding per 16 kHz mono utterance
    (:class:`SpeakerVerifier`, the paper's; the lite backend's GE2E encoder)."""

    def embed(self, waveform: np.ndarray, /) -> np.ndarray: ...


@dataclass(frozen=True)
class TSimResult:
    """One generated utterance against one reference."""

    score: float  # cosine in [-1, 1]
    generated_s: float  # seconds of generated audio embedded
    reference_s: float


@dataclass(frozen=True)
class SpeakerTSim:
    """One speaker of a multi-person instance."""

    speaker: str
    score: float | None  # None: not computed (see ``reason``)
    n_segments: int  # turns used (0 when the whole track was used or nothing was scored)
    speech_s: float  # seconds of generated audio embedded for this speaker
    fallback: str | None = None  # "whole_audio" when no usable timestamps
    reason: str | None = None
    turn_scores: tuple[float, ...] = ()  # per-turn cosines (segment_mode "per_turn")
    #: every caption turn of the speaker in time order: (start_s, end_s, cosine or None when
    #: the turn is too short), with ``turn_breakdown``
    turns: tuple[tuple[float, float, float | None], ...] = ()


@dataclass(frozen=True)
class MultiTSimResult:
    """A multi-person instance: per-speaker scores and their mean."""

    score: float | None  # mean over speakers with a score; None if none has one
    speakers: tuple[SpeakerTSim, ...]

    @property
    def used_fallback(self) -> bool:
        return any(s.fallback for s in self.speakers)


def cosine(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """``torch.nn.functional.cosine_similarity`` of two embeddings (upstream's score)."""
    ta = torch.as_tensor(np.asarray(a, dtype=np.float32)).reshape(1, -1)
    tb = torch.as_tensor(np.asarray(b, dtype=np.float32)).reshape(1, -1)
    if ta.shape != tb.shape:
        raise ValueError(f"embedding shapes differ: {tuple(ta.shape)} vs {tuple(tb.shape)}")
    return float(F.cosine_similarity(ta, tb)[0])


def _at_16k(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    a = np.asarray(audio, dtype=np.float32)
    if a.ndim == 2:  # (n, channels), as omni_core.media returns with mono=False
        a = a.mean(axis=1, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        a = resample(a, sample_rate, SAMPLE_RATE)
    return a


def t_sim(
    generated: np.ndarray,
    reference: np.ndarray,
    model: SpeakerEmbedder,
    options: TSimOptions | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> TSimResult:
    """Cosine between the speaker embeddings of a generated utterance and a reference wav.

    Both are whole utterances (decoded, any rate given by ``sample_rate``; mono or (n, ch)).
    """
    gen = _at_16k(generated, sample_rate)
    ref = _at_16k(reference, sample_rate)
    score = cosine(model.embed(gen), model.embed(ref))
    return TSimResult(score, gen.shape[0] / SAMPLE_RATE, ref.shape[0] / SAMPLE_RATE)


Segments = Mapping[str, Sequence[tuple[float, float]] | None]


def speaker_audio(
    audio: np.ndarray, segments: Sequence[tuple[float, float]], min_segment_s: float = 0.0
) -> list[np.ndarray]:
    """The 16 kHz pieces of ``audio`` inside ``segments`` ((start_s, end_s), clipped, sorted).

    Sample ``i`` belongs to ``[start, end)`` when ``round(start * 16000) <= i <
    round(end * 16000)``; pieces under ``max(min_segment_s, 400 samples)`` are dropped.
    """
    n = audio.shape[0]
    floor = max(MIN_SAMPLES, int(round(min_segment_s * SAMPLE_RATE)))
    pieces = []
    for start, end in sorted((float(s), float(e)) for s, e in segments):
        if not (math.isfinite(start) and math.isfinite(end)):
            raise ValueError(f"segment ({start}, {end}) is not finite")
        a = min(max(int(round(start * SAMPLE_RATE)), 0), n)
        b = min(max(int(round(end * SAMPLE_RATE)), 0), n)
        if b - a >= floor:
            pieces.append(audio[a:b])
    return pieces


def t_sim_multi(
    generated: np.ndarray,
    segments: Segments | None,
    references: Mapping[str, np.ndarray],
    model: SpeakerEmbedder,
    options: TSimOptions | None = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> MultiTSimResult:
    """Per-speaker T-Sim of a multi-person instance, and the mean over speakers.

    Args:
        generated: the whole generated track (decoded; rate ``sample_rate``).
        segments: speaker -> the (start_s, end_s) turns the caption assigns to that speaker in
            the generated audio; ``None`` (no timestamps at all) or a missing/empty entry uses
            ``options.missing_timestamps``.
        references: speaker -> that speaker's reference timbre wav (same rate).
    """
    opts = options or TSimOptions()
    gen = _at_16k(generated, sample_rate)
    segs = segments or {}
    whole: np.ndarray | None = None
    results = []
    for speaker in references:
        ref_emb = model.embed(_at_16k(references[speaker], sample_rate))
        turns = segs.get(speaker) or ()
        pieces = speaker_audio(gen, turns, opts.min_segment_s) if turns else []
        if not pieces:
            why = "no timestamps" if not turns else "no segment long enough"
            if opts.missing_timestamps == "skip":
                results.append(SpeakerTSim(speaker, None, 0, 0.0, reason=why))
                continue
            if whole is None:
                whole = model.embed(gen)
            results.append(SpeakerTSim(
                speaker, cosine(whole, ref_emb), 0, gen.shape[0] / SAMPLE_RATE,
                fallback="whole_audio", reason=why,
            ))
            continue
        speech_s = sum(p.shape[0] for p in pieces) / SAMPLE_RATE
        each: tuple[tuple[float, float, float | None], ...] = ()
        if opts.turn_breakdown or opts.segment_mode == "per_turn":
            each = tuple(
                (float(a), float(b), cosine(model.embed(one[0]), ref_emb) if one else None)
                for a, b in sorted((float(a), float(b)) for a, b in turns)
                for one in [speaker_audio(gen, [(a, b)], opts.min_segment_s)])
        if opts.segment_mode == "concat":
            score = cosine(model.embed(np.concatenate(pieces)), ref_emb)
            results.append(SpeakerTSim(speaker, score, len(pieces), speech_s,
                                       turns=each if opts.turn_breakdown else ()))
        else:
            per = tuple(v for _, _, v in each if v is not None)
            results.append(SpeakerTSim(
                speaker, float(np.mean(per)), len(pieces), speech_s, turn_scores=per,
                turns=each if opts.turn_breakdown else ()
            ))
    scored = [s.score for s in results if s.score is not None]
    return MultiTSimResult(float(np.mean(scored)) if scored else None, tuple(results))


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class TSim(Metric):
    spec = MetricSpec(
        name="t_sim", version=VERSION, needs=("audio16k", "ref_audios", "caption"),
        outputs=(Output("t_sim", "T-Sim", DIRECTION, split=True),),
        doc="WavLM-large + ECAPA speaker-embedding cosine between generated speech and each "
            "timbre reference; multi-person: per speaker via the caption's timestamps")
    Options = TSimOptions

    def setup(self) -> None:
        self.model = self.load(SpeakerVerifier)

    def compute(self, inp) -> dict:
        # the output's name, not "t_sim": the lite backend (t_sim_ge2e) reuses this protocol
        out = self.spec.outputs[0].name
        audio = inp.audio(SAMPLE_RATE)
        refs = inp.reference_audio(SAMPLE_RATE)
        if not refs:
            return {f"{out}_reason": "the instance has no timbre reference"}
        if len(refs) == 1:
            return {out: t_sim(audio, refs[0], self.model, self.options).score}
        subjects = [f"<sub{k}>" for k in range(1, len(refs) + 1)]
        stamps = inp.caption.speaker_timestamps
        segments = {s: stamps[s] for s in subjects if s in stamps} or None
        res = t_sim_multi(audio, segments, dict(zip(subjects, refs, strict=True)), self.model,
                          self.options)
        if res.score is None:
            return {f"{out}_reason": "; ".join(s.reason for s in res.speakers if s.reason)
                    or "no speaker could be scored"}
        return {out: float(res.score),
                f"{out}_turns": [{"speaker": s.speaker, "turn": k, "start_s": a, "end_s": b,
                                  "value": v}
                                 for s in res.speakers for k, (a, b, v) in enumerate(s.turns)]}
