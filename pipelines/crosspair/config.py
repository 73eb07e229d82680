"""Configuration of the cross-pair DAG (``configs/curate/crosspair.yaml`` holds the defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omni_core.errors import OmniError
from omni_core.jobs import StageResources
from omni_core.models.profile import check_models
from omni_core.ray_helpers import RayConfig

from .identity import RetrievalOptions
from .labels import LabelRefineConfig
from .voices import CloneCheckOptions

TASK_MIX = {"r2av": 4.0, "rv2av": 3.0, "ra2v": 3.0}


@dataclass
class CloneOptions:
    """How each speaker's clean voice is made (paper: CosyVoice, then ClearerVoice).

    ``backend``: ``cosyvoice`` (``model_dir``: a CosyVoice2 folder), ``f5-tts`` (from the
    weights folder) or ``espeak`` (a test double, for tests and the offline demo).
    ``texts``: a text file of sentences to say, one per line (default: built-in Harvard
    sentences); each clone says the sentence sharing the fewest words with what the speaker
    says in the target clip. ``enhance``: ClearerVoice on the clone (needs its checkpoint).
    """

    backend: str = "cosyvoice"
    model_dir: str | None = None
    texts: str | None = None
    enhance: bool = True
    enhance_model: str = "MossFormerGAN_SE_16K"
    language: str | None = "en"  # of the texts; Whisper's language for the checks


@dataclass
class Stage3Options:
    """The stage-3 sample table: ``pool`` (sample kinds drawn from: ``crosspair``, and
    ``inpair`` if wanted), each sample given one task so that the table holds the tasks in
    the ratio ``mix`` (paper: R2AV : RV2AV : RA2V = 4 : 3 : 3)."""

    pool: list[str] = field(default_factory=lambda: ["crosspair"])
    mix: dict[str, float] = field(default_factory=lambda: dict(TASK_MIX))

    def __post_init__(self) -> None:
        from omni_core.tasks import deal_tasks

        try:
            deal_tasks(self.mix, 0)
        except OmniError as exc:
            raise ValueError(f"stage3.mix: {exc}") from None
        if not self.pool or set(self.pool) - {"crosspair", "inpair"}:
            raise ValueError(f"stage3.pool: crosspair and/or inpair, got {self.pool}")


@dataclass
class Resources:
    #: clone + enhance + check (+ the MLLM label check): one actor holds the TTS, the
    #: enhancer, the speaker verifier and Whisper
    voices: StageResources = field(default_factory=StageResources)


@dataclass
class CrosspairConfig:
    """``models``: ``auto`` | ``paper`` | ``lite`` (:mod:`omni_core.models.profile`; it decides
    the clone check's models, :mod:`pipelines.crosspair.models`); ``weights``: the paper's
    checkpoints, a folder, ``null`` (the default folder) or the random twins by name."""

    ray: RayConfig = field(default_factory=RayConfig)
    models: str = "auto"
    weights: str | None = None
    device: str = "cpu"
    retrieval: RetrievalOptions = field(default_factory=RetrievalOptions)
    clone: CloneOptions = field(default_factory=CloneOptions)
    check: CloneCheckOptions = field(default_factory=CloneCheckOptions)
    #: optional: a multimodal LLM re-reads who says what in multi-speaker clips, and a voice
    #: whose prompt it attributes to someone else is not cloned
    labels: LabelRefineConfig = field(default_factory=LabelRefineConfig)
    stage3: Stage3Options = field(default_factory=Stage3Options)
    resources: Resources = field(default_factory=Resources)

    def __post_init__(self) -> None:
        check_models(self.models)
