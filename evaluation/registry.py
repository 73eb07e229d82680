"""The metric registry: every IDBench-Omni metric is one class registered here.

A metric declares what it reports (one or more outputs, each with a direction and the scale the
paper prints it at), which tasks it applies to, what it needs from an instance (frames, audio,
references, caption), its version (bump it when its numbers would change: cached features and
results are keyed by it), and an options dataclass holding every protocol choice.

Adding a metric is one file with one decorated class::

    @register
    class Loudness(Metric):
        spec = MetricSpec(name="loudness", outputs=(Output("loudness", "Loud", "higher"),),
                          needs=("audio16k",), version="1")

        def compute(self, inp):
            return {"loudness": float(np.abs(inp.audio(16000)).mean())}

``setup`` loads models once per run (``self.weights`` is ``"debug"``, ``"random"`` or a weights
folder).
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from .inputs import InstanceInputs

Direction = Literal["higher", "lower"]
TASKS = ("r2av", "rv2av", "ra2v")


@dataclass(frozen=True)
class Output:
    """One number a metric reports, as the paper's tables show it."""

    name: str  # column in results, e.g. "sync_c"
    label: str  # table header, e.g. "Sync-C"
    direction: Direction
    scale: float = 1.0  # table value = mean * scale (ViCLIP is printed x100)
    split: bool = False  # reported separately for single- (S) and multi-person (M) instances


@dataclass(frozen=True)
class MetricSpec:
    name: str
    outputs: tuple[Output, ...]
    needs: tuple[str, ...]  # frames, audio16k, audio48k, ref_images, ref_audios, caption
    version: str
    tasks: tuple[str, ...] = TASKS
    multi_person_only: bool = False  # Speaker Confusion: a rate over multi-person instances
    doc: str = ""


@dataclass
class NoOptions:
    """A metric without protocol choices."""


class Metric(ABC):
    spec: ClassVar[MetricSpec]
    Options: ClassVar[type] = NoOptions

    def __init__(self, weights: str = "debug", device: str = "cpu",
                 options: Any | None = None) -> None:
        self.weights = weights
        self.device = device
        self.options = options if options is not None else self.Options()

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Load models (once per run)."""

    def load(self, component: type, **kw: Any) -> Any:
        """A model wrapper for this run: its debug twin (seed 0), the released architecture
        with random weights (``"random"``, seed 0: for throughput on real shapes) or the real
        checkpoint from the weights folder (``omni_core.weights``; a missing file is one clear
        error)."""
        return component.for_weights(self.weights, self.device, **kw)

    @abstractmethod
    def compute(self, inp: InstanceInputs) -> dict[str, float]:
        """Scores of one instance, keyed by output name. Raise OmniError to record an error."""

    def applies_to(self, task: str, split: str) -> bool:
        if task not in self.spec.tasks:
            return False
        return split == "M" or not self.spec.multi_person_only

    def describe(self) -> dict[str, Any]:
        """Provenance: version, options, weights and the checkpoints behind every loaded model
        (entry names, files and their manifest sha256), recorded in summary.json."""
        return {"version": self.spec.version, "weights": self.weights,
                "options": dataclasses.asdict(self.options),
                "checkpoints": self._checkpoints()}

    def _checkpoints(self) -> list[dict[str, Any]]:
        from omni_core.weights import PretrainedComponent, load_registry

        out = []
        for value in vars(self).values():
            if not isinstance(value, PretrainedComponent):
                continue
            if value.is_debug:
                out.append({"component": type(value).__name__, "variant": value.variant,
                            "seed": value.debug_seed})
                continue
            names = getattr(value, "weights_entries", None) or (value.weights_entry,)
            for name in [n for n in names if n]:
                entry = load_registry().get(name)
                out.append({"component": type(value).__name__, "entry": name,
                            "files": {f.path: f.sha256 for f in entry.files}})
        return out


REGISTRY: dict[str, type[Metric]] = {}


def register(cls: type[Metric]) -> type[Metric]:
    name = cls.spec.name
    if name in REGISTRY and REGISTRY[name] is not cls:
        raise ValueError(f"metric {name!r} is already registered by {REGISTRY[name].__module__}")
    REGISTRY[name] = cls
    return cls


def unregister(name: str) -> None:
    REGISTRY.pop(name, None)


def get(name: str) -> type[Metric]:
    from omni_core.errors import OmniError

    load_builtin()
    if name not in REGISTRY:
        raise OmniError(f"unknown metric {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def load_builtin() -> None:
    """Import the metric modules shipped with the suite (each registers itself)."""
    from . import metrics  # noqa: F401
