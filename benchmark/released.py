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

Sets are named by the number of people, ``oneip`` and ``twoip`` in the release; ours (and
``omni benchmark build``) add ``threeip`` (files ``0``, ``1``, ``2``) and beyond: any set
folder with a ``captions`` folder is read, and an instance is single-person (``S``) with one
identity image, multi-person (``M``) with more.

**Revisions.** A copy of IDBench-Omni is pinned to the revision it was taken at, found (in
this order) in

* a ``REVISION`` file at the benchmark root: the first line that is not blank or a ``#``
  comment is the revision (the release repository's commit id, or a tag); further
  ``key: value`` lines (``source: <url>``, ``date: ...``) are kept as they are;
* a git checkout of the release (``.git`` at the root: its ``HEAD`` commit, followed
  through a branch ref, ``packed-refs``, or a worktree's ``gitdir:`` file; no git program
  needed);
* a Hugging Face hub snapshot folder (``.../snapshots/<40-hex commit>/``);
* a benchmark made by ``omni benchmark build`` (its ``summary.json``: the build's result
  key, which changes with its inputs and options).

:func:`import_released` records it in the instances' provenance (``DataFrame.attrs
["provenance"]``; ``omni benchmark import`` writes it into the Parquet file, read back with
:func:`omni_core.manifests.manifest_provenance`), with a content digest of the layout's files
(hidden files excepted), so two results can be told apart when their benchmarks differ.
``revision=`` (``omni benchmark import --revision REV``) refuses a folder whose revision is
another one, or unknown.

A test case with a missing or unreadable file is not imported; it becomes an error row
(stage ``import``) so it is counted, never silently dropped. Hidden files and folders (names
starting with a dot) are not part of the layout and are ignored: the release itself ships
macOS ``.DS_Store`` files inside ``twoip/*/20/``, and a copy made on a macOS machine may carry
AppleDouble ``._<name>`` companions of every file.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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


def import_released(root: str | Path, revision: str | None = None
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(instances, errors) for every test case under ``root`` (a set folder or their parent).
    The instances carry their provenance in ``attrs["provenance"]`` (:func:`provenance`);
    ``revision`` pins the revision the folder must be."""
    root = Path(root)
    if not root.is_dir():
        raise OmniError(f"{root}: benchmark folder not found")
    rows, errors = [], []
    sets = _sets(root)
    if not sets:
        raise OmniError(f"{root}: no <set>/captions/ folder: not the released layout")
    prov = provenance(root, sets)
    if revision is not None:
        found = prov["revision"]
        if found is None:
            raise OmniError(f"{root}: no revision recorded (no REVISION file, git checkout or "
                            f"hub snapshot folder), so revision {revision} cannot be checked: "
                            "add a REVISION file with the release's commit id")
        if not _same_revision(found, revision):
            raise OmniError(f"{root} is revision {found} ({prov['revision_source']}), not the "
                            f"pinned {revision}")
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
    instances.attrs["provenance"] = prov
    return instances, errs


def provenance(root: str | Path, sets: list[Path] | None = None) -> dict[str, Any]:
    """Where a released-layout folder comes from: ``source`` (the folder), ``revision`` and
    ``revision_source`` (see the module docstring; None when unknown), ``revision_info`` (the
    REVISION file's ``key: value`` lines, or the git ref / hub repository), ``sets``,
    ``files`` and ``content_sha256`` (of the sets' visible files: names and bytes)."""
    root = Path(os.path.abspath(root))
    sets = _sets(root) if sets is None else [Path(os.path.abspath(s)) for s in sets]
    base = root if sets and sets[0] != root else root.parent
    rev, how, info = _revision(base.resolve())
    digest = hashlib.sha256()
    n = 0
    for set_dir in sets:
        for f in sorted(p for p in set_dir.rglob("*") if p.is_file()):
            rel = f.relative_to(base)
            if any(part.startswith(".") for part in rel.parts):
                continue
            digest.update(rel.as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(f.read_bytes()).digest())
            n += 1
    return {"kind": "built" if how == "omni benchmark build" else "released",
            "source": str(base), "revision": rev,
            "revision_source": how, "revision_info": info,
            "sets": [s.name for s in sets], "files": n, "content_sha256": digest.hexdigest()}


def _same_revision(found: str, pinned: str) -> bool:
    """Equal, or (commit ids) one an abbreviation of the other, at least 7 hex digits."""
    a, b = found.strip().lower(), pinned.strip().lower()
    if a == b:
        return True
    short, full = sorted((a, b), key=len)
    return bool(re.fullmatch(r"[0-9a-f]{7,40}", short)) and \
        bool(re.fullmatch(r"[0-9a-f]{40}", full)) and full.startswith(short)


def _revision(base: Path) -> tuple[str | None, str | None, dict[str, str]]:
    rev_file = base / "REVISION"
    if rev_file.is_file():
        rev, info = None, {}
        for line in rev_file.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if rev is None:
                rev = line
                continue
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        if rev is None:
            raise OmniError(f"{rev_file}: empty; its first line is the revision")
        return rev, "REVISION file", info
    git = _git_head(base / ".git")
    if git is not None:
        return git[0], "git", {"ref": git[1]} if git[1] else {}
    if base.parent.name == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", base.name):
        return base.name, "hub snapshot", {"repository": base.parent.parent.name}
    built = _build_summary(base)
    if built is not None:  # omni benchmark build: the build's result key
        prov = built.get("provenance") or {}
        return str(built.get("result_key")), "omni benchmark build", {
            "git_commit": str(prov.get("git_commit")), "date": str(prov.get("date"))}
    return None, None, {}


def _build_summary(base: Path) -> dict[str, Any] | None:
    import json

    try:
        data = json.loads((base / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("job") == "benchmark" else None


def _git_head(dot_git: Path) -> tuple[str, str | None] | None:
    """(commit, ref or None) of a checkout's HEAD, read from its files; None if not a
    checkout (or an unborn branch)."""
    if dot_git.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot_git.read_text(encoding="utf-8").strip()
        if not text.startswith("gitdir:"):
            return None
        target = Path(text.partition(":")[2].strip())
        dot_git = target if target.is_absolute() else (dot_git.parent / target).resolve()
    head = dot_git / "HEAD"
    if not head.is_file():
        return None
    text = head.read_text(encoding="utf-8").strip()
    if not text.startswith("ref:"):
        return (text, None) if re.fullmatch(r"[0-9a-f]{40}", text) else None
    ref = text.partition(":")[2].strip()
    common = dot_git
    if (dot_git / "commondir").is_file():  # a worktree's refs live in the main repository
        common = (dot_git / (dot_git / "commondir").read_text().strip()).resolve()
    for where in (dot_git, common):
        f = where / ref
        if f.is_file():
            return f.read_text(encoding="utf-8").strip(), ref
        packed = where / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref and re.fullmatch(r"[0-9a-f]{40}", sha):
                    return sha, ref
    return None


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
    numbered.sort(key=lambda p: int(p.stem))
    stems = [int(p.stem) for p in numbered]
    if stems != list(range(len(numbered))):  # <subK> is file K-1: a gap shifts every later one
        raise OmniError(f"{folder}: {what}s numbered {', '.join(map(str, stems))}, not "
                        f"0..{len(numbered) - 1} (one missing, or one number used twice)")
    return numbered


def _natural(p: Path):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]
