"""The decode worker process (see :mod:`.guard`): runs requested functions, answers on a pipe.

Protocol on its stdin/stdout: 8-byte little-endian length + pickle, request
``(module, qualname, args, kwargs)``, answer ``(status, payload)``. C libraries that print to
stdout or stderr cannot corrupt it: both are pointed at /dev/null, and the protocol uses a
duplicate of the original stdout.
"""

from __future__ import annotations

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


def _pack(value: Any) -> tuple[str, Any]:
    if isinstance(value, np.ndarray) and value.nbytes > INLINE_BYTES:
        fd, path = tempfile.mkstemp(prefix="omni-decode-", suffix=".npy", dir=SPOOL_DIR)
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
