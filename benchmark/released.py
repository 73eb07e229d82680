"""The released IDBench-Omni / test-case layout, imported into ``bench_instances`` rows.

Released layout (one folder per set, e.g. ``oneip`` and ``twoip``)::

    <set>/imgs/<id>/<id>.png            one person: the file is named after the instance
    <set>/imgs/<id>/0.png, 1.png, ...   several people: <subK> is file K-1
    <set>/audios/<id>/...               timbre references, named the same way (.wav)
    <set>/captions/<id>.json            the structured caption, a JSON string

The release's own inference names each output ``<set>_<id>``; so do we (``instance_id``), so a
folder of predictions made with it scores as is. Only R2AV sets were released. For the editing
and animation tasks we read, as our extension of the layout, ``<set>/videos/<id>.mp4`` (the
masked source video: an RV2AV instance) and ``<set>/driving_audios/<id>.wav`` (an RA2V
instance).

A test case with a missing or unreadable file is not imported; it becomes an error row
(stage ``import``) so it is counted, never silently dropped. Hidden files and folders (names
starting with a dot) are not part of the layout and are ignored: the release itself ships
macOS ``.DS_Store`` files inside ``twoip/*/20/``, and a copy made on a macOS machine may carry
AppleDouble ``._<name>`` companions of every file.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from omni_core.captions import CaptionError, parse_caption, read_caption_text
from omni_core.errors import OmniError
from omni_core.manifests import BENCH_INSTANCES, ERRORS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")


def load_bench(bench: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(instances, import errors) of a benchmark given as a ``bench_instances`` Parquet
    manifest or a folder in the released layout."""
    from omni_core.manifests import read_manifest

    bench = Path(bench)
    if bench.suffix == ".parquet" or bench.is_file():
        return (read_manifest(bench, "bench_instances"),
                ERRORS.validate_frame(pd.DataFrame(columns=ERRORS.column_names)))
    if is_released_layout(bench):
        return import_released(bench)
    raise OmniError(f"{bench}: neither the released layout nor a .parquet manifest")


def is_released_layout(root: str | Path) -> bool:
    root = Path(root)
    return root.is_dir() and any((s / "captions").is_dir() for s in _sets(root))


def import_released(root: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(instances, errors) for every test case under ``root`` (a set folder or their parent)."""
    root = Path(root)
    if not root.is_dir():
        raise OmniError(f"{root}: benchmark folder not found")
    rows, errors = [], []
    sets = _sets(root)
    if not sets:
        raise OmniError(f"{root}: no <set>/captions/ folder: not the released layout")
    for set_dir in sets:
        for cap_path in sorted(_visible((set_dir / "captions").glob("*.json")), key=_natural):
            case = cap_path.stem
            iid = f"{set_dir.name}_{case}"
            try:
                rows.append(_instance(set_dir, case, iid, cap_path))
            except (OmniError, OSError) as exc:
                errors.append({"item": iid, "stage": "import", "error_type": type(exc).__name__,
                               "reason": str(exc), "time": pd.Timestamp.now(tz="UTC")})
    instances = BENCH_INSTANCES.validate_frame(pd.DataFrame(rows, columns=BENCH_INSTANCES
                                                            .column_names))
    errs = ERRORS.validate_frame(pd.DataFrame(errors, columns=ERRORS.column_names))
    return instances, errs


def _sets(root: Path) -> list[Path]:
    if (root / "captions").is_dir():
        return [root]
    return sorted(p for p in _visible(root.iterdir()) if p.is_dir() and (p / "captions").is_dir())


def _visible(paths: Iterable[Path]) -> list[Path]:
    """``paths`` without hidden ones (``.DS_Store``, AppleDouble ``._x.png``, ``.ipynb_...``)."""
    return [p for p in paths if not p.name.startswith(".")]


def _instance(set_dir: Path, case: str, iid: str, cap_path: Path) -> dict:
    text = read_caption_text(cap_path)
    try:
        caption = parse_caption(text)
    except CaptionError as exc:
        raise CaptionError(f"{cap_path}: {exc}") from None
    images = _refs(set_dir / "imgs" / case, case, IMAGE_SUFFIXES, "identity image")
    audios = _refs(set_dir / "audios" / case, case, AUDIO_SUFFIXES, "timbre reference")
    subjects = caption.subjects
    if subjects and len(subjects) != len(images):
        raise CaptionError(f"{cap_path}: caption names {len(subjects)} subject(s) but "
                           f"{len(images)} identity image(s) were found")
    if len(audios) not in (0, len(images)):
        raise OmniError(f"{set_dir / 'audios' / case}: {len(audios)} timbre reference(s) for "
                        f"{len(images)} identity image(s)")
    source = set_dir / "videos" / f"{case}.mp4"
    driving = set_dir / "driving_audios" / f"{case}.wav"
    task = "rv2av" if source.is_file() else "ra2v" if driving.is_file() else "r2av"
    return {
        "instance_id": iid, "task": task, "split": "S" if len(images) == 1 else "M",
        "caption": text, "image_refs": [str(p) for p in images],
        "audio_refs": [str(p) for p in audios],
        "source_video": str(source) if source.is_file() else None,
        "driving_audio": str(driving) if driving.is_file() else None,
    }


def _refs(folder: Path, case: str, suffixes: tuple[str, ...], what: str) -> list[Path]:
    if not folder.is_dir():
        raise OmniError(f"{folder}: missing ({what} folder)")
    files = [p for p in _visible(folder.iterdir()) if p.suffix.lower() in suffixes]
    if not files:
        raise OmniError(f"{folder}: no {what}")
    named = [p for p in files if p.stem == case]
    if len(files) == 1 or named and len(files) == len(named):
        return named or files
    numbered = [p for p in files if re.fullmatch(r"\d+", p.stem)]
    if len(numbered) != len(files):
        raise OmniError(f"{folder}: several {what}s but not all named 0, 1, ...")
    return sorted(numbered, key=lambda p: int(p.stem))


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]
