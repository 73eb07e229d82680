"""What this installation has: library versions, media tools, GPU, and which weights are present.

``omni doctor`` prints this report. It never downloads and never starts Ray; it reads package
metadata instead of importing heavy libraries, except torch (needed to see the GPU).
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import __version__
from .weights import FileState, Registry, entry_dir, load_registry, status, weights_root

# distribution name -> what it is for (the report's wording)
PACKAGES: dict[str, str] = {
    "torch": "tensor library (trainer, all models)",
    "torchaudio": "audio transforms (pyannote.audio)",
    "torchvision": "image transforms",
    "ray": "distributed curation, training, evaluation",
    "pyannote.audio": "speaker diarization",
    "openai-whisper": "transcription, WER",
    "insightface": "face detection + ArcFace",
    "onnxruntime": "insightface model runtime",
    "laion-clap": "CLAP text-audio score",
    "decord": "video frame decoding",
    "transformers": "WavLM, RoBERTa, T5",
    "numpy": "arrays",
    "pandas": "manifests",
    "pyarrow": "Parquet manifests",
}
# binary -> (version flag, what needs it)
BINARIES: dict[str, tuple[str, str]] = {
    "ffmpeg": ("-version", "decoding and encoding media"),
    "ffprobe": ("-version", "probing media"),
    "espeak-ng": ("--version", "sample-corpus speech"),
    "chromium": ("--version", "checking the HTML reports in tests"),
}


@dataclass
class Check:
    name: str
    ok: bool
    version: str | None
    note: str


@dataclass
class WeightsCheck:
    name: str
    state: str  # present | missing | partial | incomplete
    folder: str
    used_by: list[str]
    license: str
    gated: bool
    size: int | None
    how_to_get: str


@dataclass
class DoctorReport:
    suite_version: str
    git_commit: str | None
    python: str
    platform: str
    packages: list[Check] = field(default_factory=list)
    binaries: list[Check] = field(default_factory=list)
    gpu: dict = field(default_factory=dict)
    weights_root: str = ""
    weights: list[WeightsCheck] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        """Things that break the suite (missing weights are expected, not problems)."""
        return [f"{c.name}: {c.note}" for c in self.packages + self.binaries if not c.ok]


def collect(root: str | Path | None = None, registry: Registry | None = None) -> DoctorReport:
    report = DoctorReport(
        suite_version=__version__,
        git_commit=git_commit(),
        python=sys.version.split()[0],
        platform=f"{platform.system()} {platform.machine()}",
    )
    for dist, what in PACKAGES.items():
        try:
            report.packages.append(Check(dist, True, md.version(dist), what))
        except md.PackageNotFoundError:
            report.packages.append(Check(dist, False, None, f"not installed ({what})"))
    for exe, (flag, what) in BINARIES.items():
        report.binaries.append(_binary(exe, flag, what))
    report.gpu = _gpu()
    reg = registry or load_registry()
    report.weights_root = str(weights_root() if root is None else Path(root))
    for entry in reg.entries:
        st = status(entry, root)
        states = {f.state for f in st.files}
        if st.ok:
            state = "present"
        elif states == {FileState.MISSING}:
            state = "missing"
        elif FileState.PARTIAL in states:
            state = "partial"
        else:
            state = "incomplete"
        how = f"omni weights fetch {entry.name}"
        if entry.gated:
            how += " (gated: accept the terms on its page and set HF_TOKEN)"
        how += f", or copy its files into {entry_dir(entry, root)}"
        report.weights.append(WeightsCheck(
            entry.name, state, str(st.folder), list(entry.used_by), entry.license,
            entry.gated, entry.total_size, how))
    return report


def _binary(exe: str, flag: str, what: str) -> Check:
    path = shutil.which(exe)
    if path is None:
        return Check(exe, False, None, f"not on PATH (needed for {what}; apt-get install "
                     f"{'ffmpeg' if exe.startswith('ff') else exe})")
    try:
        out = subprocess.run([path, flag], capture_output=True, timeout=10, check=False)
        text = (out.stdout or out.stderr).decode("utf-8", "replace")
    except (OSError, subprocess.TimeoutExpired):
        text = ""
    m = re.search(r"(\d+\.\d+(?:\.\d+)?)", text)
    return Check(exe, True, m.group(1) if m else "?", what)


def _gpu() -> dict:
    try:
        import torch
    except ImportError:
        return {"available": False, "reason": "torch not installed"}
    info: dict = {"torch_cuda_build": torch.version.cuda, "available": torch.cuda.is_available()}
    if info["available"]:
        info["devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists() or shutil.which("git") is None:
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                             capture_output=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.decode().strip() or None if out.returncode == 0 else None
