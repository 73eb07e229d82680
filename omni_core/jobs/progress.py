"""Progress of a running job, shown the same way for every job.

Stages tell a :class:`ProgressBoard` what they finished (on Ray, the board is a named
zero-CPU actor that actors call without waiting; in-process jobs call it directly). Items that
a stage passes on become the next stage's total, so a stage that turns one video into many
clips grows the totals after it. The driver shows the board:

* on a terminal, one line per stage, redrawn in place: items done / total, failed, rate and
  ETA;
* elsewhere (a log file, CI), one line every ``interval`` seconds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, TextIO


class ProgressBoard:
    """Counts per stage: ``total`` (items it will get), ``done``, ``failed``; the stages in
    order, so what one passes on is added to the next one's total."""

    def __init__(self, stages: Sequence[str], total: int, units: Sequence[str] = ()) -> None:
        self.stages = list(stages)
        self.units = list(units) or ["items"] * len(self.stages)
        self.counts = {s: {"total": 0, "done": 0, "failed": 0} for s in self.stages}
        self.started = time.time()
        #: when each stage got its first item (its rate and ETA count from there)
        self.began: dict[str, float] = {}
        if self.stages:
            self.counts[self.stages[0]]["total"] = total
            self.began[self.stages[0]] = self.started

    def add(self, stage: str, done: int = 0, failed: int = 0, out: int = 0,
            total: int = 0) -> None:
        c = self.counts.setdefault(stage, {"total": 0, "done": 0, "failed": 0})
        c["done"] += done
        c["failed"] += failed
        c["total"] += total
        if out and stage in self.stages:
            i = self.stages.index(stage)
            if i + 1 < len(self.stages):
                nxt = self.stages[i + 1]
                self.counts[nxt]["total"] += out
                self.began.setdefault(nxt, time.time())

    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        return {"stages": self.stages, "units": self.units, "counts": self.counts,
                "elapsed": now - self.started,
                "running": {s: now - t for s, t in self.began.items()}}


class _Direct:
    """A board called in-process with the actor's calling convention (``add`` returns at
    once)."""

    def __init__(self, board: ProgressBoard) -> None:
        self.board = board

    def add(self, *args: Any, **kw: Any) -> None:
        self.board.add(*args, **kw)


class _Remote:
    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def add(self, *args: Any, **kw: Any) -> None:
        self.actor.add.remote(*args, **kw)


_LOCAL_BOARDS: dict[str, ProgressBoard] = {}


def board_handle(name: str) -> Any:
    """What a stage calls to report: the in-process board of that name, else the named Ray
    actor; None when neither exists (progress is best effort)."""
    if name in _LOCAL_BOARDS:
        return _Direct(_LOCAL_BOARDS[name])
    try:
        import ray

        return _Remote(ray.get_actor(name))
    except Exception:  # no Ray, or the board is gone: the job goes on without progress
        return None


def render(snap: dict[str, Any], *, bars: bool = True) -> list[str]:
    """One line per stage: done / total, failed, rate and ETA (from when the stage got its
    first item)."""
    lines = []
    width = max((len(s) for s in snap["stages"]), default=5)
    for stage, unit in zip(snap["stages"], snap["units"], strict=False):
        c = snap["counts"][stage]
        done, total = c["done"], c["total"]
        running = snap.get("running", {}).get(stage, snap["elapsed"])
        rate = done / running if running > 0 else 0.0
        left = max(total - done, 0)
        if total and done >= total:
            eta = "done"
        elif rate > 0 and left:
            eta = f"ETA {_dur(left / rate)}"
        else:
            eta = "ETA ?"
        failed = f", {c['failed']} failed" if c["failed"] else ""
        if bars:
            frac = done / total if total else 0.0
            bar = "#" * round(20 * frac) + "." * (20 - round(20 * frac))
            lines.append(f"  {stage:<{width}} [{bar}] {done}/{total} {unit}{failed}  "
                         f"{rate * 60:.1f}/min  {eta}")
        else:
            lines.append(f"{stage} {done}/{total}{failed} {eta}")
    return lines


def _dur(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressView:
    """Shows a board from a background thread until :meth:`close` (which shows it a last
    time). ``snapshot``: a callable returning :meth:`ProgressBoard.snapshot`'s dict."""

    def __init__(self, snapshot: Any, *, stream: TextIO | None = None,
                 interval: float | None = None, tty: bool | None = None) -> None:
        self.snapshot = snapshot
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.interval = interval if interval is not None else (0.5 if self.tty else 5.0)
        self._drawn = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="omni-progress", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.show()

    def show(self) -> None:
        try:
            snap = self.snapshot()
        except Exception:  # the board went away: nothing to show this time
            return
        lines = render(snap, bars=self.tty)
        if self.tty:
            up = f"\x1b[{self._drawn}F" if self._drawn else ""
            self.stream.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
            self._drawn = len(lines)
        else:
            self.stream.write(f"[{_dur(snap['elapsed'])}] " + " | ".join(lines) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.show()
