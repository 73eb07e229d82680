"""T-Sim (GE2E): the T-Sim protocol on Resemblyzer's GE2E speaker encoder, a lite backend.

Not the paper's protocol. The paper's T-Sim (:mod:`.t_sim`) embeds speech with seed-tts-eval's
WavLM-large + ECAPA-TDNN verifier, whose checkpoint a laptop without the weights folder does
not have; this metric runs the real GE2E encoder that ships inside the ``resemblyzer`` wheel
(:class:`omni_core.models.ge2e.GE2EEncoder`: 3-layer LSTM over 40 mel bands, 256-d) through
the *same* protocol code: 16 kHz mono, whole utterance, cosine with the reference timbre wav;
multi-person instances cut per speaker with the caption's timestamps (:func:`.t_sim.t_sim_multi`,
the same :class:`~.t_sim.TSimOptions` choices).

What differs, and why the numbers are not comparable with published T-Sim:

- the embedding: GE2E (trained on VoxCeleb + LibriSpeech by Resemblyzer) instead of
  WavLM-large + ECAPA fine-tuned for verification;
- GE2E's own front end: quiet audio is raised to -30 dBFS, and an utterance is the mean of
  1.6 s partial embeddings (:meth:`~omni_core.models.ge2e.GE2EEncoder.embed`);
- the scale: GE2E embeddings pass a ReLU, so cosines lie in [0, 1] and different speakers
  typically score 0.4 - 0.85 (the paper model's different-speaker cosines sit near 0).

It has its own name, results, cache entries and table column (``T-Sim (GE2E)†``), never
mixed with ``t_sim``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from omni_core.models.ge2e import GE2EEncoder

from ..registry import MetricSpec, Output, register
from .t_sim import DIRECTION, TSim, TSimOptions

__all__ = ["CAVEAT", "VERSION", "TSimGE2E", "TSimGE2EOptions"]

VERSION = "2"  # 2: per-turn breakdown of multi-person instances
CHECKPOINT = "resemblyzer/pretrained.pt"
CAVEAT = ("Resemblyzer's GE2E speaker encoder instead of WavLM-large + ECAPA-TDNN; "
          "cosines lie in [0, 1]")


@dataclass(frozen=True)
class TSimGE2EOptions(TSimOptions):
    """The T-Sim choices (:class:`~.t_sim.TSimOptions`); ``checkpoint`` names the packaged
    GE2E model, the only one this backend runs."""

    checkpoint: str = CHECKPOINT

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.checkpoint != CHECKPOINT:
            raise ValueError(f"t_sim_ge2e runs {CHECKPOINT} only, got {self.checkpoint!r}")


@register
class TSimGE2E(TSim):
    spec = MetricSpec(
        name="t_sim_ge2e", version=VERSION, needs=("audio16k", "ref_audios", "caption"),
        outputs=(Output("t_sim_ge2e", "T-Sim (GE2E)", DIRECTION, split=True, caveat=CAVEAT),),
        backend="ge2e", lite_for="t_sim",
        doc="lite T-Sim: Resemblyzer's GE2E speaker-embedding cosine (packaged model, no "
            "weights folder) with T-Sim's single/multi-speaker protocol; not the paper's")
    Options = TSimGE2EOptions

    def setup(self) -> None:
        self.model = self.load(GE2EEncoder)
