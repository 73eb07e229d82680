"""Configuration of the in-pair DAG (``configs/curate/inpair.yaml`` holds the defaults)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omni_core.jobs import StageResources
from omni_core.media.video import DECODERS
from omni_core.models.profile import check_models
from omni_core.ray_helpers import RayConfig

from .associate import AssociateOptions
from .caption import CaptionVLMConfig
from .clip import ClipOptions
from .faces import FaceOptions
from .references import ReferenceOptions


@dataclass
class Resources:
    """What each stage's actors reserve (:class:`omni_core.jobs.StageResources`)."""

    prepare: StageResources = field(default_factory=StageResources)
    audio: StageResources = field(default_factory=StageResources)
    #: faces + association + references (one decode of the clip's frames)
    visual: StageResources = field(default_factory=StageResources)
    caption: StageResources = field(default_factory=lambda: StageResources(num_cpus=0.5))
    finish: StageResources = field(default_factory=lambda: StageResources(num_cpus=0.25,
                                                                          max_actors=1))


@dataclass
class OutputOptions:
    """How results are published and merged (never part of the result key): finished clips
    per result part written by the finish stage (one object per table per part), and clips
    per manifest shard (a table of a run with more clips is a folder of shards;
    :mod:`omni_core.jobs.merge`)."""

    part_clips: int = 64
    shard_clips: int = 2_000

    def __post_init__(self) -> None:
        for name in ("part_clips", "shard_clips"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"output.{name} must be an integer >= 1, got {v!r}")


AUDIO_BACKENDS = ("auto", "paper", "lite", "annotations")


@dataclass
class AudioOptions:
    """The ``audio`` stage.

    ``backend``: ``paper`` (optional ClearerVoice enhancement, ``diarizer``, Whisper: the
    paper's models from the weights folder), ``lite`` (Silero VAD + GE2E diarization and
    PocketSphinx, :mod:`omni_core.models.lite_diarizer` / :mod:`~omni_core.models.sphinx`;
    no weights), ``auto`` (what the job's ``models`` switch picks) or ``annotations``, a test
    double that reads who-says-what-when from the sample corpus's ground truth
    (:mod:`pipelines.inpair.doubles`; for tests only). ``diarizer``: the paper backend's
    diarization, ``pyannote`` (community-1) or ``diarizen`` (the paper's).
    """

    backend: str = "auto"
    enhance: bool = False  # ClearerVoice speech enhancement before diarization
    diarizer: str = "pyannote"
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None
    language: str | None = None  # None: Whisper detects it
    max_gap_s: float = 0.5  # a word outside every turn joins the nearest one within this gap

    def __post_init__(self) -> None:
        if self.backend not in AUDIO_BACKENDS:
            raise ValueError(f"audio.backend must be one of {', '.join(AUDIO_BACKENDS)}, got "
                             f"{self.backend!r}")


@dataclass
class InpairConfig:
    """``models``: ``auto`` | ``paper`` | ``lite`` (:mod:`omni_core.models.profile`);
    ``weights``: the paper's checkpoints, a folder, ``null`` (the default folder) or the random
    twins by name (``debug``, ``random``). :func:`pipelines.inpair.models.resolve_models`
    turns every ``auto`` below into a concrete backend before the job starts.

    ``decoder``: how the clips' frames are decoded (:data:`omni_core.media.video.DECODERS`):
    ``decord`` on the CPU, ``torchcodec`` (its FFmpeg, the same frames) or
    ``torchcodec-cuda`` (NVDEC, on the GPU of a worker that has one; each stage's actors
    check it when they start)."""

    ray: RayConfig = field(default_factory=RayConfig)
    models: str = "auto"
    weights: str | None = None
    device: str = "cpu"
    decoder: str = "decord"
    clip: ClipOptions = field(default_factory=ClipOptions)
    audio: AudioOptions = field(default_factory=AudioOptions)
    faces: FaceOptions = field(default_factory=FaceOptions)
    associate: AssociateOptions = field(default_factory=AssociateOptions)
    references: ReferenceOptions = field(default_factory=ReferenceOptions)
    caption: CaptionVLMConfig = field(default_factory=CaptionVLMConfig)
    resources: Resources = field(default_factory=Resources)
    output: OutputOptions = field(default_factory=OutputOptions)

    def __post_init__(self) -> None:
        check_models(self.models)
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got "
                             f"{self.decoder!r}")
