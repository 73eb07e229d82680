"""What made a job's outputs: code, configuration, weights and inputs.

Every job's ``summary.json`` carries this record, so that a curation run, a latent set, a
folder of generated videos or an evaluation can say which suite version and commit, which
resolved config, which weights (mode and every checkpoint file loaded, with its size and
mtime, and the manifest's sha256 where known) and which inputs produced it.
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

NOT_GIT = "not a git checkout"


def weights_mode(weights: str | os.PathLike[str] | None) -> dict[str, Any]:
    """``{"mode": "debug" | "random" | "folder", "folder": path or None}`` of a weights
    setting."""
    w = "debug" if weights is None else os.fspath(weights)
    if w in ("debug", "random"):
        return {"mode": w, "folder": None}
    return {"mode": "folder", "folder": str(Path(w).expanduser().resolve())}


def file_identity(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Path, size and mtime of a checkpoint outside the weights registry (a training
    checkpoint folder: every file in it)."""
    p = Path(path).expanduser().resolve()
    if p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
        return {"path": str(p), "files": {str(f.relative_to(p)): [f.stat().st_size,
                                                                    f.stat().st_mtime_ns]
                                          for f in files}}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def provenance(config: Mapping[str, Any], *, weights: str | os.PathLike[str] | None,
               inputs: Iterable[str] = (), checkpoints: Iterable[Mapping[str, Any]] = ()
               ) -> dict[str, Any]:
    """The provenance record of a job (the ``provenance`` key of every summary.json)."""
    from omni_core import __version__
    from omni_core.doctor import git_commit

    seen: dict[str, dict[str, Any]] = {}
    for c in checkpoints:
        seen.setdefault(str(c.get("path")), dict(c))
    return {
        "suite_version": __version__,
        "git_commit": git_commit() or NOT_GIT,
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "host": platform.node(),
        "argv": list(sys.argv),
        "config": dict(config),
        "weights": {**weights_mode(weights),
                    "checkpoints": [seen[k] for k in sorted(seen)]},
        "inputs": [str(i) for i in inputs],
    }
