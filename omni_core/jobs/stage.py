"""The stage contract: what one step of a batch job declares and how it is timed.

A stage is a class with

* ``name``: what the summary, the progress display and the report call it;
* ``steps``: the named, timed parts of its per-item work (default: the stage's name alone);
  an error row names the step that failed;
* ``version``: bump it when a change of the code changes results (it is part of the result
  key, :mod:`omni_core.jobs.store`, so finished items are recomputed);
* :meth:`Stage.preflight`: runs on the driver before any worker starts, with the stage's
  parameters: it resolves every checkpoint :meth:`Stage.setup` will load (without loading
  it), so that a missing or incomplete file is one line in milliseconds, not an actor that
  dies on every node;
* :meth:`Stage.setup`: loads models once per actor (or once per process for in-process
  jobs). Its time, and the worker's start-up before it, is booked as the stage's *setup*,
  never as compute;
* :meth:`Stage.process`: the work on one item. Its time is the stage's *compute*, split into
  steps with :meth:`Stage.step`. An exception fails the item at the running step: the item
  gets an ``errors`` row (item, step, reason), carries ``failed`` through the later stages
  (which skip it) and the run goes on.

Items travel between stages as :class:`WorkItem` rows (JSON in one column), each carrying its
rows of the job's tables and its per-step seconds, so that the driver's summary adds every
item's step times once.

Resources (CPUs, a GPU fraction, custom resources) come from the job's config as
:class:`~omni_core.jobs.resources.StageResources`; the runner (:mod:`omni_core.jobs.runner`)
turns them into actor pools.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from omni_core.errors import OmniError
from omni_core.manifests import error_row
from omni_core.storage import RunFolder

SETUP_DIR = "_setup"


@dataclass(frozen=True)
class JobContext:
    """What every stage of one run gets: the job, its output, its result key, this
    invocation's id (setup records, the progress board) and when the stages were submitted."""

    job: str
    out: RunFolder
    key: str
    run: str = field(default_factory=lambda: uuid.uuid4().hex)
    started: float = field(default_factory=time.time)
    #: name of the run's progress board actor (None: no progress display)
    board: str | None = None


@dataclass
class WorkItem:
    """One item travelling through the stages: its id, job-specific ``data``, its rows of the
    job's tables, its seconds per step, and the step it failed in (later stages skip it)."""

    item: str
    data: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    steps: dict[str, float] = field(default_factory=dict)
    failed: str | None = None
    #: a record travelling to the stage that publishes results (e.g. an input's plan, made
    #: by a fan-out stage): the stages between pass it on untouched and uncounted
    carried: bool = False

    def fail(self, step: str, exc: BaseException) -> None:
        self.failed = step
        self.tables.setdefault("errors", []).append(error_row(self.item, step, exc))

    def to_row(self) -> dict[str, str]:
        return {"item": self.item, "work": json.dumps(self.__dict__, default=_default)}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> WorkItem:
        return cls(**json.loads(row["work"]))

    def stats(self) -> dict[str, Any]:
        """What the summary needs of the item: its step seconds and the step it failed in."""
        return {"steps": dict(self.steps), "failed": self.failed}


def _default(value: Any) -> Any:
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Stage:
    """Base of every stage; see the module docstring. Subclasses implement :meth:`setup`
    (optional) and :meth:`process` (or :meth:`__call__` for a stage that turns one row into
    several, with :meth:`timed` and :meth:`report`)."""

    name: ClassVar[str] = ""
    steps: ClassVar[tuple[str, ...]] = ()
    version: ClassVar[int] = 1
    #: the class of the items it reads (a job may carry a subclass with typed accessors)
    item_type: ClassVar[type[WorkItem]] = WorkItem

    def __init__(self, job: JobContext, **params: Any) -> None:
        self.job = job
        self.out = job.out
        self._board: Any = None
        self.setup(**params)
        record_setup(job, self.name)

    @classmethod
    def step_names(cls) -> tuple[str, ...]:
        return cls.steps or (cls.name,)

    @classmethod
    def preflight(cls, **params: Any) -> None:
        """Raise the error :meth:`setup` would raise for a missing checkpoint or a setting
        that cannot load, without loading anything (``PretrainedComponent.check_weights``).
        Called by the runners, inside :func:`omni_core.weights.unrecorded`."""

    def setup(self, **params: Any) -> None:
        """Load what the stage needs once (models, clients)."""

    def process(self, item: WorkItem) -> None:
        raise NotImplementedError

    # -- per item

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        item = self.item_type.from_row(row)
        if item.carried:
            return row
        if item.failed is None:
            self.timed(item, self.process)
        self.report(done=1, failed=int(item.failed is not None), out=1)
        return item.to_row()

    def timed(self, item: WorkItem, fn: Any, *args: Any) -> Any:
        """Run ``fn(item, *args)`` on the stage's clock, starting at its first step; an
        exception fails the item at the running step."""
        self._item, self._step, self._t = item, self.step_names()[0], time.perf_counter()
        try:
            return fn(item, *args)
        except Exception as exc:  # one item's failure is an error row, never a crash
            if not isinstance(exc, OmniError):
                traceback.print_exc()
            item.fail(self._step, exc)
        finally:
            self._book()
        return None

    def step(self, name: str) -> None:
        """Close the running step's clock and start ``name``'s."""
        if name not in self.step_names():
            raise ValueError(f"stage {self.name!r} declares no step {name!r}")
        self._book()
        self._step, self._t = name, time.perf_counter()

    def _book(self) -> None:
        now = time.perf_counter()
        steps = self._item.steps
        steps[self._step] = steps.get(self._step, 0.0) + now - self._t
        self._t = now

    def report(self, *, done: int = 0, failed: int = 0, out: int = 0, total: int = 0) -> None:
        """Tell the progress board about finished items (fire and forget)."""
        if self.job.board is None:
            return
        from .progress import board_handle

        if self._board is None:
            self._board = board_handle(self.job.board)
        if self._board is not None:
            self._board.add(self.name, done=done, failed=failed, out=out, total=total)


def record_setup(job: JobContext, stage: str) -> None:
    """Book this worker's start-up and its stage's setup to ``stage``: the seconds from the
    later of the worker process's start and the job's submission until now, as one small
    JSON file under ``OUT/_setup/<run>/`` (a remote output gets one object per actor), with
    the checkpoint files the worker loaded; :func:`collect_setup` sums them."""
    from omni_core.weights import used_checkpoints

    now = time.time()
    start = max(_process_start(), job.started)
    name = f"{stage}-{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    job.out.write_text(f"{SETUP_DIR}/{job.run}/{name}", json.dumps({
        "stage": stage, "seconds": max(0.0, now - start),
        "checkpoints": used_checkpoints()}))


def _process_start() -> float:
    """When this process started (epoch seconds), from /proc; 0 where unknown."""
    try:
        import psutil

        return float(psutil.Process().create_time())
    except Exception:  # psutil missing or no /proc: the job's submission time bounds it
        return 0.0


@dataclass
class SetupRecord:
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> summed seconds
    actors: dict[str, int] = field(default_factory=dict)  # stage -> actors started
    checkpoints: list[dict[str, Any]] = field(default_factory=list)


def collect_setup(job: JobContext) -> SetupRecord:
    """Setup seconds and actors per stage, and checkpoints loaded, of run ``job.run``; the
    records are removed afterwards."""
    rec = SetupRecord()
    for rel in job.out.list(f"{SETUP_DIR}/{job.run}"):
        if not rel.endswith(".json"):
            continue
        try:
            r = json.loads(job.out.read_text(rel))
        except (OSError, json.JSONDecodeError):
            continue
        st = r["stage"]
        rec.seconds[st] = rec.seconds.get(st, 0.0) + float(r["seconds"])
        rec.actors[st] = rec.actors.get(st, 0) + 1
        rec.checkpoints += r.get("checkpoints", [])
    job.out.remove(SETUP_DIR)
    return rec

