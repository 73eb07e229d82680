"""Running external media programs (ffmpeg, ffprobe, espeak-ng): argument lists only (never a
shell string), always a timeout."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence

from ..errors import DecodeTimeout, MediaError

DEFAULT_TIMEOUT_S = 60.0


def binary(name: str, package: str = "ffmpeg") -> str:
    """Path of an external program, or a clear error saying which package provides it."""
    path = shutil.which(name)
    if path is None:
        raise MediaError(f"{name} not found on PATH; install it (Debian: apt-get install "
                         f"{package}; `make setup` does)")
    return path


def call(
    args: Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    input: bytes | None = None,
    what: str = "",
) -> subprocess.CompletedProcess:
    """Run ``args`` (an argv list) to completion; a run past ``timeout`` is killed."""
    try:
        return subprocess.run(
            list(args), input=input, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise DecodeTimeout(f"{what or args[0]}: timed out after {timeout:g} s") from exc


def run(
    args: Sequence[str],
    *,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    input: bytes | None = None,
    what: str = "",
) -> bytes:
    """Like :func:`call`, returning stdout; a non-zero exit is a MediaError with the last line."""
    proc = call(args, timeout=timeout, input=input, what=what)
    if proc.returncode != 0:
        raise MediaError(f"{what or args[0]}: {last_line(proc.stderr)}")
    return proc.stdout


_PREFIX = re.compile(r"^\[[^\]]+ @ 0x[0-9a-f]+\]\s*")


def last_line(stderr: bytes, path: str | None = None) -> str:
    """ffmpeg's error output as one line: its distinct messages, without component prefixes.

    ffmpeg often ends on a generic line ("Invalid data found when processing input") after the
    specific one ("moov atom not found"); both are kept, most specific first.
    """
    seen: list[str] = []
    for ln in stderr.decode("utf-8", "replace").splitlines():
        ln = _PREFIX.sub("", ln.strip())
        if path:
            ln = ln.removeprefix(f"{path}: ")
        if ln and ln not in seen:
            seen.append(ln)
    if not seen:
        return "failed without a message"
    text = "; ".join(seen[-3:])
    return text if len(text) <= 240 else text[:237] + "..."
