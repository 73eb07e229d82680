"""Run a decode in a worker process that is killed when it hangs.

decord is unmaintained and hangs on some files; a hung C++ decoder cannot be interrupted from
Python, so the only safe bound is a separate process. One long-lived worker per process
(a fresh interpreter, ``python -m omni_core.media._worker``) serves the decodes: numpy and
decord are imported once, a call costs a socket round trip, and the caller's own script is
never re-imported (multiprocessing's spawn and forkserver re-run ``__main__`` in every child).
When a call runs past its timeout the worker is killed and the next call starts a new one.

Large results (decoded frames) are not copied back: the worker decodes into shared memory
(:func:`._worker.output_array`) and the caller gets a numpy array over its own mapping of it,
writable, valid for as long as it (or any view of it) lives, whatever becomes of the worker.
When the array is garbage, its segment goes back to a small per-worker pool and the next
decode fills it again (:class:`_Pool`). A process forked while holding such an array shares
its pages with its parent (as with any shared mapping); the parent then never reuses them.

Calls are serialised per process by a lock: decoding in one worker at a time matches how the
suite parallelises (Ray tasks and actors, each its own process).
"""

from __future__ import annotations

import atexit
import collections
import mmap
import os
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DecodeTimeout, MediaError, OmniError
from . import _worker

_LOCK = threading.Lock()
_WORKER: _Worker | None = None

#: Segments the pool keeps for reuse once their arrays are gone, and their total size
#: (``OMNI_DECODE_POOL_MB`` sets the latter; 0 keeps none, every decode then maps new memory).
POOL_SEGMENTS = 2
POOL_BYTES = int(float(os.environ.get("OMNI_DECODE_POOL_MB", 1024)) * (1 << 20))


class _Pool:
    """The caller's side of one worker's shared segments.

    Every segment the caller has received is mapped here once. A segment is *leased* while an
    array over it is alive (a finalizer on the array's root notes its release: from any
    thread, at garbage-collection time, so it only appends to a deque) and *idle* after; idle
    ones are offered to the worker with each request, least recently used dropped first
    beyond :data:`POOL_SEGMENTS` / :data:`POOL_BYTES`.
    """

    def __init__(self) -> None:
        self.maps: dict[int, mmap.mmap] = {}
        self.idle: list[int] = []  # least recently used first
        self.released: collections.deque[int] = collections.deque()
        self.tainted: set[int] = set()  # leased at a fork: a child may still read them
        self.dropped: list[int] = []

    def offer(self) -> tuple[list[int], list[int]]:
        """(idle segments the worker may fill, segments it should unmap) for the next call."""
        while self.released:
            seg_id = self.released.popleft()
            if seg_id in self.tainted:
                self.tainted.discard(seg_id)
                self._drop(seg_id)
            elif seg_id in self.maps:
                self.idle.append(seg_id)
        while self.idle and (len(self.idle) > POOL_SEGMENTS or sum(
                len(self.maps[s]) for s in self.idle) > POOL_BYTES):
            self._drop(self.idle.pop(0))
        dropped, self.dropped = self.dropped, []
        return list(self.idle), dropped

    def _drop(self, seg_id: int) -> None:
        # never mm.close(): an export may still be winding down; the last reference unmaps it
        self.maps.pop(seg_id, None)
        self.dropped.append(seg_id)

    def lease(self, seg_id: int, fds: list[int], shape: tuple[int, ...], dtype: str
              ) -> np.ndarray:
        if fds:  # a new segment: map it (mmap keeps its own duplicate of the descriptor)
            self.maps[seg_id] = mmap.mmap(fds[0], 0)
        if seg_id in self.idle:
            self.idle.remove(seg_id)
        dt = np.dtype(dtype)
        root = np.frombuffer(self.maps[seg_id], dt, count=int(np.prod(shape, dtype=np.int64)))
        # every view of the result has `root` as its base: the segment is free once it dies
        weakref.finalize(root, self.released.append, seg_id).atexit = False
        return root.reshape(shape)

    def taint_leased(self) -> None:
        self.tainted |= set(self.maps) - set(self.idle)


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # the worker imports the requested function's module by name: give it our sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        env[_worker.PARENT_ENV] = str(os.getpid())
        self.pid_owner = os.getpid()
        self.pool = _Pool()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        with theirs:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "omni_core.media._worker"], stdin=theirs,
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        self.sock = ours

    def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
             timeout: float) -> tuple[str, Any]:
        offered, dropped = self.pool.offer()
        try:
            _worker.send(self.sock, (fn.__module__, fn.__qualname__, args, kwargs, offered,
                                     dropped))
        except OSError:  # BrokenPipeError, ConnectionResetError: the worker is gone
            raise EOFError from None
        try:
            (status, payload), fds = _worker.receive(self.sock, time.monotonic() + timeout)
        except TimeoutError:
            raise
        except OSError:  # ConnectionResetError: the worker is gone
            raise EOFError from None
        try:
            if status == "ok-shared":
                seg_id, shape, dtype = payload
                return "ok", self.pool.lease(seg_id, fds, shape, dtype)
            return status, payload
        finally:
            for fd in fds:
                os.close(fd)

    def kill(self) -> int | None:
        """Kill the worker. Its segments die with it, except those our arrays still map."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.sock.close()
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None


def _shutdown() -> None:
    global _WORKER
    if _WORKER is not None and _WORKER.pid_owner == os.getpid():
        _WORKER.kill()
    _WORKER = None


def _before_fork() -> None:
    if _WORKER is not None and _WORKER.pid_owner == os.getpid():
        _WORKER.pool.taint_leased()


atexit.register(_shutdown)
os.register_at_fork(before=_before_fork)


def run_guarded(fn: Callable[..., Any], *args: Any, timeout: float | None, what: str,
                **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in the decode worker; kill it after ``timeout`` seconds.

    ``fn`` must be importable by module and name (a module-level function). ``timeout=None``
    runs it in this process, for callers that already bound it (a Ray task with its own
    limit). Failures come back as MediaError with a one-line reason, a hang as DecodeTimeout.
    """
    global _WORKER
    if timeout is None:
        try:
            return fn(*args, **kwargs)
        except OmniError:
            raise
        except Exception as exc:
            raise MediaError(f"{what}: {type(exc).__name__}: {exc}") from exc
    if fn.__module__ == "__main__":
        raise ValueError("run_guarded: fn must live in an importable module, not __main__")
    with _LOCK:
        if _WORKER is None or _WORKER.pid_owner != os.getpid() or _WORKER.proc.poll() is not None:
            if _WORKER is not None and _WORKER.pid_owner == os.getpid():
                _WORKER.kill()  # it died between calls: close our end
            _WORKER = _Worker()
        worker = _WORKER
        try:
            status, payload = worker.call(fn, args, kwargs, timeout)
        except TimeoutError:
            worker.kill()
            _WORKER = None
            raise DecodeTimeout(f"{what}: decode timed out after {timeout:g} s") from None
        except EOFError:
            code = worker.kill()
            _WORKER = None
            raise MediaError(f"{what}: decoder died (exit code {code})") from None
    if status == "ok":
        return payload
    if status == "omni":
        raise MediaError(payload)
    raise MediaError(f"{what}: {payload}")
