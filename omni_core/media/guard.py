"""Run a decode in a worker process that is killed when it hangs.

decord is unmaintained and hangs on some files; a hung C++ decoder cannot be interrupted from
Python, so the only safe bound is a separate process. One long-lived worker per process
(a fresh interpreter, ``python -m omni_core.media._worker``) serves the decodes: numpy and
decord are imported once, a call costs a pipe round trip, and the caller's own script is never
re-imported (multiprocessing's spawn and forkserver re-run ``__main__`` in every child). When a
call runs past its timeout the worker is killed and the next call starts a new one.

Calls are serialised per process by a lock: decoding in one worker at a time matches how the
suite parallelises (Ray tasks and actors, each its own process).
"""

from __future__ import annotations

import atexit
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DecodeTimeout, MediaError, OmniError

_LOCK = threading.Lock()
_WORKER: _Worker | None = None


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # the worker imports the requested function's module by name: give it our sys.path
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p and os.path.isdir(p))
        self.pid_owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "omni_core.media._worker"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)

    def call(self, fn: Callable[..., Any], args: tuple, kwargs: dict,
             timeout: float) -> tuple[str, Any]:
        req = pickle.dumps((fn.__module__, fn.__qualname__, args, kwargs))
        try:
            self.proc.stdin.write(len(req).to_bytes(8, "little") + req)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise EOFError from None
        deadline = time.monotonic() + timeout
        n = int.from_bytes(self._read(8, deadline), "little")
        return pickle.loads(self._read(n, deadline))

    def _read(self, n: int, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        chunks, got = [], 0
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
            chunk = os.read(fd, min(n - got, 1 << 20))
            if not chunk:
                raise EOFError
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def kill(self) -> int | None:
        """Kill the worker and remove any spool file it left (one it was writing)."""
        from ._worker import remove_spool

        if self.proc.poll() is None:
            self.proc.kill()
        try:
            return self.proc.wait(5)
        except subprocess.TimeoutExpired:
            return None
        finally:
            remove_spool(self.proc.pid)


def _shutdown() -> None:
    global _WORKER
    if _WORKER is not None and _WORKER.pid_owner == os.getpid():
        _WORKER.kill()
    _WORKER = None


atexit.register(_shutdown)


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
    if status == "ok-file":
        return _unpack_file(payload)
    if status == "omni":
        raise MediaError(payload)
    raise MediaError(f"{what}: {payload}")


def _unpack_file(path: str) -> np.ndarray:
    # Map copy-on-write instead of reading: no copy up front, and the array stays valid (and
    # writable, privately) after the file's name is removed.
    try:
        return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
    finally:
        os.unlink(path)
