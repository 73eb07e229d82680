"""Run a decode in a child process that can be killed when it hangs.

decord is unmaintained and hangs on some files; a hung C++ decoder cannot be interrupted from
Python, so the only safe bound is a separate process. Children come from a forkserver (a clean
process that has already imported numpy and decord), which keeps the per-call cost to a fork
instead of a fresh interpreter, and is safe in a parent that runs threads (Ray, torch).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import DecodeTimeout, MediaError, OmniError

_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = mp.get_context("forkserver")
        _CTX.set_forkserver_preload(["numpy", "decord", "omni_core.media.video"])
    return _CTX


# Arrays larger than this travel through a file in shared memory (/dev/shm) instead of being
# pickled through the pipe, which costs several times the decode itself for a whole clip.
_INLINE_BYTES = 1 << 20
_SPOOL_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _pack(value: Any) -> tuple[str, Any]:
    if isinstance(value, np.ndarray) and value.nbytes > _INLINE_BYTES:
        fd, path = tempfile.mkstemp(prefix="omni-decode-", suffix=".npy", dir=_SPOOL_DIR)
        with os.fdopen(fd, "wb") as f:
            np.save(f, value, allow_pickle=False)
        return "ok-file", path
    return "ok", value


def _unpack_file(path: str) -> np.ndarray:
    # Map copy-on-write instead of reading: no copy up front, and the array stays valid (and
    # writable, privately) after the file's name is removed.
    try:
        return np.asarray(np.load(path, mmap_mode="c", allow_pickle=False))
    finally:
        os.unlink(path)


def _child(conn, fn: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    # decord and ffmpeg log from C++ straight to fd 2; failures come back as exceptions, so
    # the child's log lines are noise on the console of a user running `omni probe`.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        conn.send(_pack(fn(*args, **kwargs)))
    except OmniError as exc:
        conn.send(("omni", str(exc)))
    except BaseException as exc:  # noqa: BLE001 - report any failure of the decoder as data
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        conn.send(("error", last))
    finally:
        conn.close()


def run_guarded(fn: Callable[..., Any], *args: Any, timeout: float | None, what: str,
                **kwargs: Any) -> Any:
    """Call ``fn(*args, **kwargs)`` in a child process; kill it after ``timeout`` seconds.

    ``fn`` must be a module-level function (it is pickled by reference). ``timeout=None`` runs
    it in this process, for callers that already bound it (a Ray task with its own limit).
    Failures come back as MediaError with a one-line reason, a hang as DecodeTimeout.
    """
    if timeout is None:
        try:
            return fn(*args, **kwargs)
        except OmniError:
            raise
        except Exception as exc:
            raise MediaError(f"{what}: {type(exc).__name__}: {exc}") from exc
    ctx = _context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(send, fn, args, kwargs), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(timeout):
            raise DecodeTimeout(f"{what}: decode timed out after {timeout:g} s")
        try:
            status, payload = recv.recv()
        except EOFError:
            proc.join(5)
            raise MediaError(f"{what}: decoder died (exit code {proc.exitcode})") from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
    if status == "ok":
        return payload
    if status == "ok-file":
        return _unpack_file(payload)
    if status == "omni":
        raise MediaError(payload)
    raise MediaError(f"{what}: {payload}")
