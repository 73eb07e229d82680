"""Speaker diarization: who speaks when in one in-memory waveform -> :class:`Turn` s.

:class:`Diarizer` runs pyannote.audio 4's ``SpeakerDiarization`` pipeline (the "community-1"
release by default) or, optionally, DiariZen (the paper's). The waveform goes to pyannote in
memory (``{"waveform": (1, n) tensor, "sample_rate": sr}``): given a file path instead,
pyannote re-reads and re-decodes it for every chunk of its embedding step, which is very slow.
The in-pair curation's audio stage (``pipelines.inpair.audio``) attributes Whisper's words to
these turns.

Which diarization: pyannote 4 returns a ``DiarizeOutput`` with ``speaker_diarization`` (turns
may overlap where two people talk at once) and ``exclusive_speaker_diarization`` (the same
turns with overlaps resolved so that at most one speaker is active at any time; pyannote
keeps it for aligning transcripts). :meth:`Diarizer.diarize` returns the exclusive one by
default because word attribution needs one owner per instant; ``exclusive=False`` gives the
overlapping turns.

Offline: :meth:`Diarizer.from_pretrained` never asks the Hugging Face hub for anything. It
reads the release's ``config.yaml`` itself, loads the checkpoints it names from the local
folder (``$model/<subfolder>``, or a hub id the weights registry knows) with
``torch.load(weights_only=True)`` and hands pyannote the ready model objects. pyannote's own
loader would unpickle the checkpoints with ``weights_only=False``. pyannote.audio 4 also sends
usage telemetry to ``otel.pyannote.ai`` unless ``PYANNOTE_METRICS_ENABLED`` is false; this
module sets it to false before pyannote runs.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any, Self

import numpy as np

from omni_core.errors import OmniError, WeightsError, first_line
from omni_core.media.audio import to_mono
from omni_core.media.write import temp_wav
from omni_core.weights import PretrainedComponent, require, safe_torch_load

__all__ = [
    "BACKENDS",
    "COMMUNITY1_PARAMS",
    "DEBUG_MEL_BINS",
    "DEBUG_SEGMENTATION_STEP",
    "HUB_MODELS",
    "SAMPLE_RATE",
    "Diarizer",
    "Turn",
    "check_backend",
]

SAMPLE_RATE = 16000
#: Diarization backends: pyannote.audio 4 (default) and DiariZen (the paper's; not on PyPI).
BACKENDS = ("pyannote", "diarizen")
#: The debug pipeline slides its 10 s segmentation window by half a window (community-1: a
#: tenth), so that a 30 s recording takes 5 windows instead of 21 through the embedding model.
DEBUG_SEGMENTATION_STEP = 0.5
#: Mel bins of the debug WeSpeaker ResNet34 (released: 80). The only size WeSpeakerResNet34
#: lets a caller change; fewer bins make its convolutions proportionally cheaper.
DEBUG_MEL_BINS = 16
#: Hyper-parameters of the community-1 release (its config.yaml ``params``); the debug pipeline
#: is instantiated with the same values.
COMMUNITY1_PARAMS: dict[str, dict[str, float]] = {
    "clustering": {"threshold": 0.6, "Fa": 0.07, "Fb": 0.8},
    "segmentation": {"min_duration_off": 0.0},
}
#: Hub ids that a pyannote config may name instead of ``$model/...``, mapped to the weights
#: registry entry (and file) holding the same checkpoint locally.
HUB_MODELS: dict[str, tuple[str, str]] = {
    "pyannote/segmentation-3.0": ("pyannote-segmentation-3.0", "pytorch_model.bin"),
    "pyannote/wespeaker-voxceleb-resnet34-LM": ("pyannote-wespeaker-voxceleb-resnet34-lm",
                                                "pytorch_model.bin"),
}
_PIPELINE_NAME = "pyannote.audio.pipelines.SpeakerDiarization"
_MODEL_FILE = "pytorch_model.bin"
_PLDA_FILES = ("xvec_transform.npz", "plda.npz")
_WESPEAKER_ENTRY = "pyannote-wespeaker-voxceleb-resnet34-lm"


# --------------------------------------------------------------------------------------------
# result


@dataclass(frozen=True)
class Turn:
    """One speaker talking from ``start_s`` to ``end_s`` (seconds from the clip start)."""

    speaker: str
    start_s: float
    end_s: float

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


# --------------------------------------------------------------------------------------------
# pyannote helpers


def _no_telemetry() -> None:
    """pyannote.audio 4 reports pipeline use to otel.pyannote.ai unless this is false (it reads
    the variable at every call); a curation run never talks to the network."""
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"


@contextlib.contextmanager
def _quiet_pyannote() -> Iterator[None]:
    """Hide warnings pyannote triggers on short or silent inputs (std over one frame, mean of
    an empty cluster); they say nothing about the output's validity."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"std\(\): degrees of freedom")
        warnings.filterwarnings("ignore", message="Mean of empty slice")
        warnings.filterwarnings("ignore", message="invalid value encountered")
        warnings.filterwarnings("ignore", message=r"\s*The detected number of speakers")
        yield


# --------------------------------------------------------------------------------------------
# pyannote checkpoints: safe loading, saving in the released format


def _safe_globals() -> list[Any]:
    """Classes a pyannote checkpoint pickles besides tensors and builtins: its task
    ``Specifications`` (with the ``Problem``/``Resolution`` enums) and, in checkpoints written
    by pyannote.audio 3.x, ``torch.__version__`` (a ``TorchVersion``)."""
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from torch.torch_version import TorchVersion

    return [Specifications, Problem, Resolution, TorchVersion]


def _load_pyannote_model(path: Path) -> Any:
    """A pyannote ``Model`` from its ``pytorch_model.bin`` (a Lightning checkpoint with a
    ``pyannote.audio`` section naming the architecture), unpickled with ``weights_only=True``.

    Mirrors ``pyannote.audio.Model.from_pretrained``: dependency check, class from the
    checkpoint (only classes of ``pyannote.audio.models``), Lightning's
    ``load_from_checkpoint`` (strict; retried non-strict only for a task loss, as upstream).
    """
    import torch
    from pyannote.audio.core.model import Model
    from pyannote.audio.utils.dependencies import check_dependencies

    if not path.is_file():
        raise WeightsError(f"checkpoint not found: {path}")
    data = path.read_bytes()
    allowed = _safe_globals()
    with torch.serialization.safe_globals(allowed):
        ckpt = safe_torch_load(io.BytesIO(data), name=str(path))
    meta = ckpt.get("pyannote.audio") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("architecture"), dict):
        raise WeightsError(f"{path} is not a pyannote.audio model checkpoint (no "
                           f"'pyannote.audio' architecture section)")
    module, name = meta["architecture"].get("module", ""), meta["architecture"].get("class", "")
    if not str(module).startswith("pyannote.audio.models."):
        raise WeightsError(f"{path} names architecture {module}.{name}; only classes of "
                           f"pyannote.audio.models are loaded")
    try:
        klass = getattr(import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise WeightsError(f"{path} names architecture {module}.{name}, which this "
                           f"pyannote.audio does not have") from exc
    if not (isinstance(klass, type) and issubclass(klass, Model)):
        raise WeightsError(f"{path} names {module}.{name}, which is not a pyannote Model")
    version = (meta.get("versions") or {}).get("pyannote.audio")
    if version:
        try:
            check_dependencies({"pyannote.audio": str(version)}, f"checkpoint {path}")
        except Exception as exc:
            raise WeightsError(first_line(exc)) from exc
    try:
        with torch.serialization.safe_globals(allowed):
            try:
                model = klass.load_from_checkpoint(io.BytesIO(data), map_location="cpu",
                                                   strict=True, weights_only=True)
            except RuntimeError as exc:
                if "loss_func" not in str(exc):
                    raise
                model = klass.load_from_checkpoint(io.BytesIO(data), map_location="cpu",
                                                   strict=False, weights_only=True)
    except Exception as exc:
        raise WeightsError(f"{path} does not load into {name}: {first_line(exc)}") from exc
    model.eval()
    return model


def _save_pyannote_model(model: Any, path: Path) -> None:
    """Write ``model`` as pyannote writes ``pytorch_model.bin``: a Lightning checkpoint dict
    (state dict, hyper-parameters, Lightning version) plus the model's own
    ``on_save_checkpoint`` section (versions, architecture, task specifications)."""
    import lightning
    import torch

    ckpt: dict[str, Any] = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(ckpt)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)


def _plda(files: Mapping[str, bytes]) -> Any:
    """pyannote's ``PLDA`` from the bytes of ``xvec_transform.npz`` and ``plda.npz`` (numpy
    reads them with ``allow_pickle=False``)."""
    from pyannote.audio.core.plda import PLDA

    return PLDA(io.BytesIO(files["xvec_transform.npz"]), io.BytesIO(files["plda.npz"]))


def _debug_plda_files(dimension: int, lda_dimension: int,
                      rng: np.random.Generator) -> dict[str, bytes]:
    """Random but well-posed VBx/PLDA transforms with the released shapes: x-vector
    centring means and an LDA projection ``dimension -> lda_dimension``, and a PLDA with an
    invertible transform and positive between-class variances."""
    def npz(**arrays: np.ndarray) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return buf.getvalue()

    q, _ = np.linalg.qr(rng.standard_normal((lda_dimension, lda_dimension)))
    return {
        "xvec_transform.npz": npz(
            mean1=0.01 * rng.standard_normal(dimension),
            mean2=0.01 * rng.standard_normal(lda_dimension),
            lda=rng.standard_normal((dimension, lda_dimension)) / math.sqrt(dimension)),
        "plda.npz": npz(mu=np.zeros(lda_dimension), tr=q,
                        psi=np.sort(rng.uniform(0.5, 5.0, lda_dimension))[::-1].copy()),
    }


# --------------------------------------------------------------------------------------------
# the diarizer


class Diarizer(PretrainedComponent):
    """Speaker diarization of one in-memory waveform -> :class:`Turn` s.

    ``backend="pyannote"`` (default): pyannote.audio 4's ``SpeakerDiarization`` pipeline.
    :meth:`from_pretrained` builds it from the local community-1 folder
    (``config.yaml``, ``segmentation/``, ``embedding/``, ``plda/``; see the module docstring);
    :meth:`debug` builds the same pipeline class from randomly initialised pyannote models:
    a small ``PyanNet`` with community-1's powerset task (10 s chunks, 3 speakers, at most 2
    at once), a ``WeSpeakerResNet34`` with :data:`DEBUG_MEL_BINS` mel bins, random VBx/PLDA
    transforms of the released shapes (256 -> 128), community-1's hyper-parameters and a
    window step of :data:`DEBUG_SEGMENTATION_STEP`. :meth:`random` builds the released sizes
    (4-layer LSTM PyanNet, 80 mel bins, step 0.1) with random weights.
    :meth:`save_pretrained` writes either in the release layout.

    ``backend="diarizen"``: DiariZen (BUT), which the paper used. It is not on PyPI and pins
    pyannote.audio 3.1, so it is imported only when asked for and cannot be installed beside
    this suite's pyannote.audio 4; ``from_pretrained(backend="diarizen",
    diarizen_model=<folder of a DiariZen release>)`` uses the WeSpeaker checkpoint of the
    registry entry ``pyannote-wespeaker-voxceleb-resnet34-lm``. DiariZen reads files only, so
    the waveform goes through a temporary wav, and it has no exclusive output.
    """

    weights_entry = "pyannote-speaker-diarization-community-1"

    def __init__(self, pipeline: Any, *, backend: str = "pyannote",
                 plda_files: Mapping[str, bytes] | None = None) -> None:
        self.pipeline = pipeline
        self.backend = backend
        self._plda_files = dict(plda_files or {})

    # ---- constructors

    @classmethod
    def from_pretrained(cls, root: str | os.PathLike[str] | None = None, device: str = "cpu",
                        *, registry: Any = None, backend: str = "pyannote", **kw: Any) -> Self:
        """The released pipeline from ``<root>/<weights_entry>/`` (pyannote), or DiariZen from
        ``diarizen_model`` (see the class docstring). Never touches the network."""
        check_backend(backend)
        if backend == "diarizen":
            _import_diarizen()
            paths, folder = cls.weight_paths(root, registry=registry, backend=backend, **kw)
            return cls._load_diarizen(paths, device).mark_pretrained(folder)
        return super().from_pretrained(root, device, registry=registry, **kw)

    @classmethod
    def weight_paths(cls, root: str | os.PathLike[str] | None = None, *, registry: Any = None,
                     backend: str = "pyannote",
                     diarizen_model: str | os.PathLike[str] | None = None,
                     **kw: Any) -> tuple[Mapping[str, Path], Path | None]:
        """pyannote: the manifest entry's files; DiariZen: its release folder
        (``diarizen_model``) and the WeSpeaker embedding it reads from the manifest."""
        check_backend(backend)
        if backend != "diarizen":
            return super().weight_paths(root, registry=registry, **kw)
        if diarizen_model is None or not (Path(diarizen_model) / "config.toml").is_file():
            raise WeightsError(
                "backend 'diarizen' needs diarizen_model=<folder of a DiariZen release with "
                "config.toml, pytorch_model.bin and plda/>, e.g. a local copy of "
                "https://huggingface.co/BUT-FIT/diarizen-wavlm-large-s80-md")
        embedding = require(_WESPEAKER_ENTRY, "pytorch_model.bin", root, registry=registry)
        return {"embedding": embedding, "release": Path(diarizen_model)}, Path(diarizen_model)

    @classmethod
    def debug(cls, seed: int = 0, device: str = "cpu", **kw: Any) -> Self:
        """A tiny random pyannote pipeline (see the class docstring), identical per seed."""
        check_backend(kw.get("backend", "pyannote"))
        if kw.get("backend") == "diarizen":
            _import_diarizen()
            raise OmniError("the DiariZen backend has no debug build (its WavLM segmentation "
                            "model is not built offline here); use backend='pyannote'")
        kw.pop("backend", None)
        return super().debug(seed, device, **kw)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        # PyanNet as in segmentation-3.0 (assumed unchanged in community-1): its defaults with
        # a 4-layer LSTM, 1,473,265 parameters, i.e. the 5.9 MB of the released checkpoint
        return {"lstm": {"hidden_size": 128, "num_layers": 4},
                "linear": {"hidden_size": 128, "num_layers": 2},
                "num_mel_bins": 80, "segmentation_step": 0.1}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        _no_telemetry()
        from pyannote.audio.core.task import Problem, Resolution, Specifications
        from pyannote.audio.models.embedding import WeSpeakerResNet34
        from pyannote.audio.models.segmentation import PyanNet
        from pyannote.audio.pipelines import SpeakerDiarization

        segmentation = PyanNet(
            sincnet={"stride": 10},
            lstm=kw.get("lstm", {"hidden_size": 16, "num_layers": 1}),
            linear=kw.get("linear", {"hidden_size": 16, "num_layers": 1}),
        )
        segmentation.specifications = Specifications(
            problem=Problem.MONO_LABEL_CLASSIFICATION, resolution=Resolution.FRAME,
            duration=10.0, min_duration=None, warm_up=(0.0, 0.0),
            classes=["speaker#1", "speaker#2", "speaker#3"], powerset_max_classes=2,
            permutation_invariant=True)
        segmentation.setup()  # adds the powerset classifier, as loading a checkpoint does
        embedding = WeSpeakerResNet34(num_mel_bins=kw.get("num_mel_bins", DEBUG_MEL_BINS))
        # what pyannote's WeSpeaker conversion script stores with the released checkpoint
        embedding.specifications = Specifications(
            problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0)
        segmentation.eval()
        embedding.eval()
        plda_files = _debug_plda_files(embedding.dimension, 128, np.random.default_rng(seed))
        pipeline = SpeakerDiarization(
            segmentation=segmentation,
            segmentation_step=kw.get("segmentation_step", DEBUG_SEGMENTATION_STEP),
            embedding=embedding, embedding_exclude_overlap=True, plda=_plda(plda_files),
            clustering="VBxClustering", embedding_batch_size=32, segmentation_batch_size=32)
        pipeline.instantiate(COMMUNITY1_PARAMS)
        pipeline.to(_torch_device(device))
        return cls(pipeline, plda_files=plda_files)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        _no_telemetry()
        config_path = paths["config.yaml"]
        folder = config_path.parent
        config = _read_config(config_path)
        pipeline, plda_files = _pipeline_from_config(config, folder, config_path)
        pipeline.to(_torch_device(device))
        return cls(pipeline, plda_files=plda_files)

    @classmethod
    def _load_diarizen(cls, paths: Mapping[str, Path], device: str) -> Self:
        from diarizen.pipelines.inference import DiariZenPipeline  # type: ignore[import-not-found]

        pipeline = DiariZenPipeline(diarizen_hub=paths["release"].resolve(),
                                    embedding_model=str(paths["embedding"]))
        return cls(pipeline, backend="diarizen")

    # ---- diarization

    def diarize(self, waveform: np.ndarray, sample_rate: int = SAMPLE_RATE,
                num_speakers: int | None = None, min_speakers: int | None = None,
                max_speakers: int | None = None, *, exclusive: bool = True) -> list[Turn]:
        """Who speaks when in ``waveform`` (float mono; (n, channels) is averaged).

        Turns are sorted by start and clipped to the clip (pyannote pads the last window, so
        its raw output may run past the end). ``exclusive`` (default): pyannote's exclusive
        diarization, no two turns overlap; ``False``: the overlapping one. Speaker counts are
        passed to the pipeline as hints (DiariZen ignores them).
        """
        x = to_mono(waveform)
        duration = len(x) / sample_rate
        if len(x) == 0:
            return []
        if self.backend == "diarizen":
            with temp_wav(x, sample_rate) as path:
                annotation = self.pipeline(str(path))
        else:
            import torch

            _no_telemetry()
            file = {"waveform": torch.from_numpy(x)[None], "sample_rate": int(sample_rate),
                    "uri": "clip"}
            with _quiet_pyannote():
                out = self.pipeline(file, num_speakers=num_speakers, min_speakers=min_speakers,
                                    max_speakers=max_speakers)
            if hasattr(out, "exclusive_speaker_diarization"):
                annotation = (out.exclusive_speaker_diarization if exclusive
                              else out.speaker_diarization)
            else:  # a config with legacy: true returns the overlapping Annotation only
                annotation = out
        turns = []
        for seg, _, label in annotation.itertracks(yield_label=True):
            start, end = max(float(seg.start), 0.0), min(float(seg.end), duration)
            if end > start:
                turns.append(Turn(str(label), start, end))
        turns.sort(key=lambda t: (t.start_s, t.end_s, t.speaker))
        return turns

    # ---- saving

    def save_pretrained(self, folder: str | os.PathLike[str]) -> Path:
        """Write this pipeline in the community-1 release layout (``config.yaml``,
        ``segmentation/pytorch_model.bin``, ``embedding/pytorch_model.bin``,
        ``plda/xvec_transform.npz``, ``plda/plda.npz``), which both :meth:`from_pretrained`
        and pyannote's own ``Pipeline.from_pretrained`` read. Returns ``folder``."""
        import yaml
        from pyannote.audio import __version__ as pyannote_version

        if self.backend != "pyannote" or not self._plda_files:
            raise OmniError("only a pyannote Diarizer built by debug() or from_pretrained() "
                            "can be saved")
        p = self.pipeline
        out = Path(folder)
        _save_pyannote_model(p._segmentation.model, out / "segmentation" / _MODEL_FILE)
        _save_pyannote_model(p._embedding.model_, out / "embedding" / _MODEL_FILE)
        (out / "plda").mkdir(parents=True, exist_ok=True)
        for name in _PLDA_FILES:
            (out / "plda" / name).write_bytes(self._plda_files[name])
        params: dict[str, Any] = {
            "clustering": p.klustering,
            "segmentation": "$model/segmentation",
            "segmentation_batch_size": int(p.segmentation_batch_size),
            "embedding": "$model/embedding",
            "embedding_batch_size": int(p.embedding_batch_size),
            "embedding_exclude_overlap": bool(p.embedding_exclude_overlap),
            "plda": "$model/plda",
        }
        if not math.isclose(p.segmentation_step, 0.1):  # community-1 leaves the default
            params["segmentation_step"] = float(p.segmentation_step)
        config = {
            "dependencies": {"pyannote.audio": pyannote_version},
            "pipeline": {"name": _PIPELINE_NAME, "params": params},
            "params": _plain(p.parameters(instantiated=True)),
        }
        (out / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False),
                                         encoding="utf-8")
        return out


def _plain(value: Any) -> Any:
    """Nested parameters as plain YAML-safe Python (numpy scalars -> float/int)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _torch_device(device: str) -> Any:
    import torch

    return torch.device(device)


def check_backend(backend: str) -> None:
    """One :class:`OmniError` naming the choices for an unknown diarization backend."""
    if backend not in BACKENDS:
        raise OmniError(f"unknown diarization backend {backend!r}; choose one of "
                        f"{', '.join(BACKENDS)}")


def _import_diarizen() -> Any:
    try:
        return import_module("diarizen")
    except ImportError as exc:
        raise OmniError(
            "diarization backend 'diarizen' needs the DiariZen package, which is not "
            "installed. It is not on PyPI: git clone --recursive "
            "https://github.com/BUTSpeechFIT/DiariZen, then `pip install -e .` there and in "
            "its bundled pyannote-audio fork, in an environment of its own (it pins "
            "pyannote.audio 3.1; this suite uses 4.x). Or use the default backend 'pyannote'"
        ) from exc


def _read_config(path: Path) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise WeightsError(f"cannot read pipeline config {path}: {first_line(exc)}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("pipeline"), dict):
        raise WeightsError(f"{path} is not a pyannote pipeline config (no 'pipeline' section)")
    return config


def _resolve_ref(value: Any, key: str, folder: Path, config_path: Path) -> Path:
    """Where a config's model reference lives locally: ``$model/<sub>[@rev]`` -> the release
    folder; a hub id the registry knows -> that entry (under the same weights root); an
    existing local path. Anything else is one error: no hub call is ever made."""
    if isinstance(value, Mapping) and "checkpoint" in value:
        base = _resolve_ref(value["checkpoint"], key, folder, config_path)
        sub = value.get("subfolder")
        return base / sub if sub else base
    if not isinstance(value, str):
        raise WeightsError(f"{config_path}: '{key}' must name a model, got {value!r}")
    if value.startswith("$model/"):
        return folder / value.removeprefix("$model/").split("@")[0]
    if value in HUB_MODELS:
        entry, file = HUB_MODELS[value]
        return require(entry, file, folder.parent)
    local = Path(value) if Path(value).is_absolute() else folder / value
    if local.exists():
        return local
    raise WeightsError(f"{config_path}: '{key}' refers to {value!r}, which is neither a "
                       f"$model/ subfolder, a hub id of the local weights registry "
                       f"({', '.join(HUB_MODELS)}) nor a local path; the hub is never asked")


def _model_file(path: Path) -> Path:
    return path / _MODEL_FILE if path.is_dir() or path.suffix != ".bin" else path


def _pipeline_from_config(config: Mapping[str, Any], folder: Path,
                          config_path: Path) -> tuple[Any, dict[str, bytes]]:
    """Build ``SpeakerDiarization`` as ``Pipeline.from_pretrained`` would from ``config``,
    but with every model loaded here from local files (safely) and passed as an object."""
    from pyannote.audio.pipelines import SpeakerDiarization
    from pyannote.audio.utils.dependencies import check_dependencies

    dependencies = dict(config.get("dependencies") or {})
    if "version" in config:  # pyannote.audio < 4 configs
        dependencies = {"pyannote.audio": str(config["version"])}
    try:
        check_dependencies({k: str(v) for k, v in dependencies.items()}, f"{config_path}")
    except Exception as exc:
        raise WeightsError(first_line(exc)) from exc
    name = str(config["pipeline"].get("name", ""))
    if name.rsplit(".", 1)[-1] != "SpeakerDiarization":
        raise WeightsError(f"{config_path}: pipeline {name!r} is not pyannote's "
                           f"SpeakerDiarization")
    params = dict(config["pipeline"].get("params") or {})
    for unused in ("token", "cache_dir", "use_auth_token"):
        params.pop(unused, None)
    for key in ("segmentation", "embedding"):
        ref = params.get(key, f"$model/{key}")  # upstream's default: community-1's subfolders
        params[key] = _load_pyannote_model(_model_file(_resolve_ref(ref, key, folder,
                                                                    config_path)))
    plda_dir = _resolve_ref(params.get("plda", "$model/plda"), "plda", folder, config_path)
    plda_files: dict[str, bytes] = {}
    for file in _PLDA_FILES:
        p = plda_dir / file
        if not p.is_file():
            raise WeightsError(f"PLDA file not found: {p} (named by {config_path})")
        plda_files[file] = p.read_bytes()
    try:
        params["plda"] = _plda(plda_files)
        pipeline = SpeakerDiarization(**params)
        if "freeze" in config:
            pipeline.freeze(config["freeze"])
        if "params" in config:
            pipeline.instantiate(config["params"])
    except WeightsError:
        raise
    except Exception as exc:
        raise WeightsError(f"{config_path}: cannot build the pipeline: {first_line(exc)}"
                           ) from exc
    return pipeline, plda_files
