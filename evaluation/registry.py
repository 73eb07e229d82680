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

Lite backends: a metric whose ``spec.lite_for`` names a paper metric is a stand-in for it that
runs a real small model shipped inside an installed wheel (:mod:`omni_core.models.packaged`),
for a laptop without the paper's checkpoints. It is *not* the paper's protocol: it has its own
name (so its results, cache entries and table column never mix with the paper metric's), its
outputs carry a ``caveat`` (the tables mark the column with a dagger and print the caveat
under the table), ``backend`` names the model in ``summary.json``, and it loads its packaged
model whatever the run's weights setting (recorded as weights ``"packaged"``).
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
PAPER = "paper"
#: the weights setting a lite backend records: its model comes from an installed wheel
PACKAGED = "packaged"


@dataclass(frozen=True)
class Output:
    """One number a metric reports, as the paper's tables show it."""

    name: str  # column in results, e.g. "sync_c"
    label: str  # table header, e.g. "Sync-C"
    direction: Direction
    scale: float = 1.0  # table value = mean * scale (ViCLIP is printed x100)
    split: bool = False  # reported separately for single- (S) and multi-person (M) instances
    # set on a lite backend's outputs: how the number departs from the paper's protocol (the
    # tables mark the column with a dagger and print this under the table)
    caveat: str = ""


@dataclass(frozen=True)
class MetricSpec:
    name: str
    outputs: tuple[Output, ...]
    needs: tuple[str, ...]  # frames, audio16k, audio48k, ref_images, ref_audios, caption
    version: str
    tasks: tuple[str, ...] = TASKS
    multi_person_only: bool = False  # Speaker Confusion: a rate over multi-person instances
    doc: str = ""
    # the model behind the numbers: "paper" for the paper's protocol, else the lite model's name
    backend: str = PAPER
    lite_for: str | None = None  # a lite backend: the paper metric it stands in for

    def __post_init__(self) -> None:
        if (self.backend == PAPER) != (self.lite_for is None):
            raise ValueError(f"metric {self.name!r}: a lite backend names both its backend and "
                             f"the paper metric it stands in for (lite_for); a paper metric "
                             f"neither")
        if self.lite_for is not None and not all(o.caveat for o in self.outputs):
            raise ValueError(f"metric {self.name!r} is a lite backend: every output needs a "
                             f"caveat (the tables print it under the table)")

    @property
    def is_paper(self) -> bool:
        return self.lite_for is None

    @property
    def protocol(self) -> dict[str, str]:
        """What summary.json records beside :meth:`Metric.describe`: the backend, and for a
        lite one the paper metric it stands in for. Not part of the cache key: the name and
        version already fix both."""
        return {"backend": self.backend} if self.is_paper else {
            "backend": self.backend, "lite_for": str(self.lite_for),
            "not_paper_protocol": "; ".join(o.caveat for o in self.outputs)}


@dataclass
class NoOptions:
    """A metric without protocol choices."""


class Metric(ABC):
    spec: ClassVar[MetricSpec]
    Options: ClassVar[type] = NoOptions

    def __init__(self, weights: str = "debug", device: str = "cpu",
                 options: Any | None = None) -> None:
        # a lite backend's model ships in a wheel: no weights folder, no debug twin
        self.weights = weights if self.spec.is_paper else PACKAGED
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
        from omni_core.models.packaged import PackagedComponent, package_version
        from omni_core.weights import PretrainedComponent, load_registry

        out = []
        for value in vars(self).values():
            if not isinstance(value, PretrainedComponent):
                continue
            if isinstance(value, PackagedComponent) and not value.is_debug:
                out.append({"component": type(value).__name__, "package": value.package_dist,
                            "version": package_version(value.package_dist)})
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


def paper_metrics() -> list[str]:
    """Names of the metrics that follow the paper's protocol: what a run computes by default."""
    load_builtin()
    return sorted(n for n, c in REGISTRY.items() if c.spec.is_paper)


def lite_backends() -> dict[str, str]:
    """Paper metric -> the lite backend that stands in for it (one each)."""
    load_builtin()
    out: dict[str, str] = {}
    for name, cls in sorted(REGISTRY.items()):
        if cls.spec.lite_for is not None:
            out.setdefault(cls.spec.lite_for, name)
    return out


def with_lite(names: list[str]) -> list[str]:
    """``names`` with every paper metric that has a lite backend replaced by it (``omni eval
    --lite``): the run needs no checkpoint for those, and its table marks them."""
    swap = lite_backends()
    return list(dict.fromkeys(swap.get(n, n) for n in names))


def load_builtin() -> None:
    """Import the metric modules shipped with the suite (each registers itself)."""
    from . import metrics  # noqa: F401
