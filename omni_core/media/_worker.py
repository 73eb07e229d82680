"""The decode worker process (see :mod:`.guard`): runs requested functions, answers on a socket.

Protocol on a Unix stream socket (the worker's stdin; its stdout and stderr are /dev/null, so
C libraries that print cannot corrupt it): 8-byte little-endian length + pickle. Request
``(module, qualname, args, kwargs, offered, dropped)``, answer ``(status, payload)``.

Large arrays do not travel in the answer. A decode function asks :func:`output_array` for
the array it fills; in the worker that array lives in a shared-memory segment (a memfd: no
name in /dev/shm, so nothing can be left behind), which the caller maps too, so the frames
are handed over without a copy. The worker creates segments and passes each one's file
descriptor to the caller once (SCM_RIGHTS); the caller keeps the ones its callers have let go
of and offers them back with the next request (``offered``), so a steady stream of decodes
reuses memory whose pages already exist (on this kind of machine, allocating fresh 4 KiB
shared pages takes about as long as decoding into them). ``dropped`` names segments the caller
has given up for good; the worker unmaps them.

A segment is freed by the kernel once neither process maps it: a killed worker or a killed
caller cannot leak one. A worker whose caller dies exits by itself, even in a hung decode
(:func:`_exit_with_parent`).
"""

from __future__ import annotations

import array
import importlib
import mmap
import os
import pickle
import select
import socket
import threading
import time
import traceback
from typing import Any

import numpy as np

# Arrays up to this size travel inside the answer; larger ones in a shared segment.
INLINE_BYTES = 1 << 20
# An offered segment is used for a result at most this many times smaller than it.
REUSE_SLACK = 2
# the environment variable holding the caller's pid (the worker's parent)
PARENT_ENV = "OMNI_DECODE_PARENT"
_FD_SPACE = socket.CMSG_SPACE(array.array("i").itemsize)

_CALL: _Call | None = None


def output_array(shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
    """An uninitialised array for a guarded function to fill and return (the array itself).

    In the decode worker a large one lives in shared memory that the caller maps, so the
    result reaches the caller without a copy. Anywhere else (``timeout=None``, small results,
    a second array in one call, shared memory refused) it is a plain ``np.empty``.
    """
    dtype = np.dtype(dtype)
    count = int(np.prod(shape, dtype=np.int64))
    call = _CALL
    if call is None or call.array is not None or count * dtype.itemsize <= INLINE_BYTES:
        return np.empty(shape, dtype)
    mm = call.take(count * dtype.itemsize)
    if mm is None:
        return np.empty(shape, dtype)
    call.array = np.frombuffer(mm, dtype, count=count).reshape(shape)
    return call.array


def segment_size(nbytes: int) -> int:
    """What a new segment for ``nbytes`` holds: rounded up in steps of an eighth of a power
    of two (at least 2 MiB), so clips of similar length share segments."""
    step = max(2 << 20, 1 << max(0, (nbytes - 1).bit_length() - 3))
    return -(-nbytes // step) * step


class _Call:
    """One request's view of the worker's segments: which it may fill, which it created."""

    def __init__(self, segments: dict[int, mmap.mmap], offered: list[int], seq: list[int]):
        self.segments, self.offered, self.seq = segments, offered, seq
        self.array: np.ndarray | None = None
        self.seg_id: int | None = None
        self.new_fd: int | None = None

    def take(self, nbytes: int) -> mmap.mmap | None:
        fits = [(len(self.segments[s]), s) for s in self.offered if s in self.segments
                and nbytes <= len(self.segments[s]) <= REUSE_SLACK * nbytes]
        if fits:
            self.seg_id = min(fits)[1]
            return self.segments[self.seg_id]
        self.seq[0] += 1
        seg_id, size = self.seq[0], segment_size(nbytes)
        fd = os.memfd_create(f"omni-decode-{os.getpid()}-{seg_id}", os.MFD_CLOEXEC)
        try:
            # reserve the pages now: a full memory limit is an error here (we fall back to
            # the answer itself), not a SIGBUS half way through the decode
            os.posix_fallocate(fd, 0, size)
            mm = mmap.mmap(fd, size)
        except OSError:
            os.close(fd)
            return None
        self.segments[seg_id] = mm
        self.seg_id, self.new_fd = seg_id, fd
        return mm

    def discard(self) -> None:
        """Forget the output array (an error, or the function returned something else)."""
        if self.new_fd is not None:
            self.segments.pop(self.seg_id, None)
        self.close_fd()
        self.array = self.seg_id = None

    def close_fd(self) -> None:
        if self.new_fd is not None:
            os.close(self.new_fd)
            self.new_fd = None

    def pack(self, value: Any) -> tuple[str, Any]:
        if self.array is not None and value is self.array:
            return "ok-shared", (self.seg_id, value.shape, value.dtype.str)
        self.discard()
        if isinstance(value, np.ndarray) and value.nbytes > INLINE_BYTES:
            out = output_array(value.shape, value.dtype)  # a function that did not use ours
            if out is self.array:
                np.copyto(out, value)
                return self.pack(out)
        return "ok", value


# -- the wire format, used by both sides ----------------------------------------------------

def send(sock: socket.socket, obj: Any, fd: int | None = None) -> None:
    """One message; ``fd`` (a file descriptor) travels with its first bytes."""
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    head = len(data).to_bytes(8, "little")
    if fd is None:
        sock.sendall(head + data)
        return
    sent = sock.sendmsg([head], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    sock.sendall(head[sent:] + data)


def receive(sock: socket.socket, deadline: float | None = None) -> tuple[Any, list[int]]:
    """One message and the file descriptors that came with it (the caller closes them).
    TimeoutError past ``deadline`` (a ``time.monotonic()`` value), EOFError on a closed
    socket."""
    fds: list[int] = []
    try:
        n = int.from_bytes(_receive(sock, 8, deadline, fds), "little")
        return pickle.loads(_receive(sock, n, deadline, fds)), fds
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise


def _receive(sock: socket.socket, n: int, deadline: float | None, fds: list[int]) -> bytes:
    buf = bytearray(n)
    view, got = memoryview(buf), 0
    while got < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([sock], [], [], left)[0]:
                raise TimeoutError
        k, ancillary, _, _ = sock.recvmsg_into([view[got:]], _FD_SPACE)
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.extend(array.array("i", data[:len(data) - len(data) % 4]))
        if not k:
            raise EOFError
        got += k
    return bytes(buf)


# -- the worker ------------------------------------------------------------------------------

def _resolve(module: str, qualname: str):
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _exit_with_parent(parent: int) -> None:
    """Exit once the caller is gone (killed -9 mid-call, say): the socket's EOF is only seen
    between calls, and a hung decode would otherwise live on, holding its memory."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)


def main() -> None:
    global _CALL
    from ..errors import OmniError

    sock = socket.socket(fileno=os.dup(0))
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    segments: dict[int, mmap.mmap] = {}
    seq = [0]
    while True:
        try:
            (module, qualname, args, kwargs, offered, dropped), _ = receive(sock)
        except (EOFError, OSError):
            return
        for seg_id in dropped:
            segments.pop(seg_id, None)
        _CALL = call = _Call(segments, offered, seq)
        try:
            answer = call.pack(_resolve(module, qualname)(*args, **kwargs))
        except OmniError as exc:
            call.discard()
            answer = ("omni", str(exc))
        except BaseException as exc:  # noqa: BLE001 - any decoder failure is reported as data
            call.discard()
            answer = ("error", traceback.format_exception_only(type(exc), exc)[-1].strip())
        finally:
            _CALL = None
        try:
            send(sock, answer, call.new_fd)
        except OSError:  # the caller is gone
            return
        finally:
            call.close_fd()
            call.array = None


if __name__ == "__main__":
    # run the module under its own name: output_array, imported by the decode functions from
    # omni_core.media._worker, must see the _CALL that main sets (not a __main__ copy)
    from omni_core.media._worker import main as _main

    _main()
