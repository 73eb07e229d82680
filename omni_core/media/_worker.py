"""The decode worker process (see :mod:`.guard`): runs requested functions, answers on a pipe.

Protocol on its stdin/stdout: 8-byte little-endian length + pickle, request
``(module, qualname, args, kwargs)``, answer ``(status, payload)``. C libraries that print to
stdout or stderr cannot corrupt it: both are pointed at /dev/null, and the protocol uses a
duplicate of the original stdout.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import sys
import tempfile
import traceback
from typing import Any

import numpy as np

# Arrays larger than this travel through a file in shared memory (/dev/shm) instead of the
# pipe, which would cost several times the decode itself for a whole clip.
INLINE_BYTES = 1 << 20
SPOOL_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def spool_prefix(pid: int | None = None) -> str:
    """Spool files carry their worker's pid, so that the leftovers of a killed worker (or of a
    caller killed before it read its answer) can be told from files still in use."""
    return f"omni-decode-{os.getpid() if pid is None else pid}-"


def remove_spool(pid: int) -> None:
    for name in os.listdir(SPOOL_DIR):
        if name.startswith(spool_prefix(pid)):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(SPOOL_DIR, name))


def sweep_stale_spool() -> int:
    """Remove spool files whose worker is no longer alive; returns how many."""
    removed = 0
    for name in os.listdir(SPOOL_DIR):
        pid = name.removeprefix("omni-decode-").split("-", 1)[0]
        if not (name.startswith("omni-decode-") and pid.isdigit()) or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(SPOOL_DIR, name))
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _pack(value: Any) -> tuple[str, Any]:
    if isinstance(value, np.ndarray) and value.nbytes > INLINE_BYTES:
        fd, path = tempfile.mkstemp(prefix=spool_prefix(), suffix=".npy", dir=SPOOL_DIR)
        with os.fdopen(fd, "wb") as f:
            np.save(f, value, allow_pickle=False)
        return "ok-file", path
    return "ok", value


def _resolve(module: str, qualname: str):
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def main() -> None:
    from ..errors import OmniError

    sweep_stale_spool()
    inp = sys.stdin.buffer
    out = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    while True:
        header = inp.read(8)
        if len(header) < 8:
            return
        module, qualname, args, kwargs = pickle.loads(inp.read(int.from_bytes(header, "little")))
        try:
            answer = _pack(_resolve(module, qualname)(*args, **kwargs))
        except OmniError as exc:
            answer = ("omni", str(exc))
        except BaseException as exc:  # noqa: BLE001 - any decoder failure is reported as data
            answer = ("error", traceback.format_exception_only(type(exc), exc)[-1].strip())
        data = pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL)
        out.write(len(data).to_bytes(8, "little") + data)
        out.flush()


if __name__ == "__main__":
    main()
