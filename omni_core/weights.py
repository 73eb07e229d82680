"""Pretrained-weights registry: where every checkpoint lives, how to get it, how to check it.

The suite uses many upstream checkpoints (Whisper, ArcFace, SyncNet, CLAP, ...). None of them
may be fetched implicitly: the build and test machines are offline, and a hub call at run time
turns a missing file into a hang. So every checkpoint is listed in one packaged manifest,
``omni_core/weights.yaml``, and this module is the only place that turns a manifest entry into a
local path:

* :func:`require` returns the local path or raises one :class:`~omni_core.errors.WeightsError`
  line naming the missing file, the manifest entry and ``omni weights fetch <name>``;
* :func:`status` (cheap: existence and size) and :func:`verify` (sha256) report what is there;
* :func:`fetch` downloads, resuming interrupted transfers, and is only ever called by the
  ``omni weights fetch`` command;
* :class:`PretrainedComponent` is the base class of every model wrapper: ``from_pretrained``
  loads the real checkpoint through :func:`require`, ``debug`` builds a tiny seeded random
  instance with the same code path for tests and the demo.

Layout on disk: ``<weights_root()>/<entry name>/<file path>``. A download goes to
``<file>.part`` first and is renamed into place only once its size and sha256 are right, so a
file under its final name is always complete.

Archives (``unpack: zip``) are extracted into the entry folder after they are verified. The
archive is then deleted (it would double the disk use) and replaced by a small JSON marker,
``.<archive name>.unpacked.json``, recording the archive's verified sha256 and size and the
size of every extracted member. :func:`status` and :func:`verify` read the marker instead of the
archive: the archive hash is compared with the manifest, and every member must still exist with
its recorded size. Member contents are not re-hashed; delete the folder and fetch again if they
were edited by hand.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import hashlib
import http.client
import importlib.resources
import json
import os
import re
import zipfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, ClassVar, Self
from urllib.error import HTTPError, URLError
from urllib.parse import urlsplit
from urllib.request import Request, build_opener

from omni_core.errors import WeightsError, first_line

__all__ = [
    "EntryStatus",
    "FetchResult",
    "FileState",
    "FileStatus",
    "FileVerify",
    "PretrainedComponent",
    "ProgressFn",
    "Registry",
    "VerifyReport",
    "VerifyState",
    "WeightFile",
    "WeightPaths",
    "WeightsEntry",
    "entry_dir",
    "fetch",
    "load_registry",
    "load_torch_checkpoint",
    "require",
    "status",
    "unrecorded",
    "verify",
    "weights_root",
]

MANIFEST_VERSION = 1
HASH_CHUNK = 8 * 1024 * 1024  # sha256 streaming chunk: big enough to be IO-bound, small in RAM
DOWNLOAD_CHUNK = 1024 * 1024
USER_AGENT = "dreamid-omni-suite-weights/1"
SUPPORTED_UNPACK = ("zip",)

#: ``progress(label, bytes_done, bytes_total_or_None)``; called after every downloaded chunk.
ProgressFn = Callable[[str, int, int | None], None]

_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_SHA256_RE = re.compile(r"^[0-9a-fA-F]{64}$")
_ENTRY_KEYS = ("name", "description", "homepage", "license", "used_by", "gated", "files")
_FILE_REQUIRED = ("path", "url", "sha256", "size")
_FILE_OPTIONAL = ("unpack",)


# --------------------------------------------------------------------------------------------
# where the weights live


def weights_root() -> Path:
    """The folder holding every entry's sub-folder.

    ``$OMNI_WEIGHTS`` wins so that a cluster can point all workers at one shared, read-only
    copy; otherwise the XDG cache (``$XDG_CACHE_HOME/omni/weights``, default
    ``~/.cache/omni/weights``) so that nothing is written inside the repository.
    """
    env = os.environ.get("OMNI_WEIGHTS")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "omni" / "weights"


def _root(root: str | os.PathLike[str] | None) -> Path:
    return weights_root() if root is None else Path(root)


# --------------------------------------------------------------------------------------------
# manifest model


@dataclass(frozen=True)
class WeightFile:
    """One downloadable file of an entry.

    ``sha256``/``size`` are ``None`` when upstream publishes no reference; such files are still
    fetched and checked for completeness, but :func:`verify` can only say "present".
    ``unpack`` names an archive format to extract into the entry folder after verification.
    """

    path: str
    url: str
    sha256: str | None = None
    size: int | None = None
    unpack: str | None = None

    @property
    def marker_name(self) -> str:
        """Name of the marker that replaces an unpacked archive (see the module docstring)."""
        p = PurePosixPath(self.path)
        return str(p.with_name(f".{p.name}.unpacked.json"))


@dataclass(frozen=True)
class WeightsEntry:
    """One manifest entry: a checkpoint (one or more files) in ``<root>/<name>/``."""

    name: str
    description: str
    homepage: str
    license: str
    used_by: tuple[str, ...]
    gated: bool
    files: tuple[WeightFile, ...]

    def file(self, path: str) -> WeightFile:
        """The manifest file with this relative path (``WeightsError`` if none)."""
        for f in self.files:
            if f.path == path:
                return f
        known = ", ".join(f.path for f in self.files)
        raise WeightsError(f"weights entry '{self.name}' has no file '{path}' (files: {known})")

    @property
    def total_size(self) -> int | None:
        """Sum of the file sizes, or ``None`` if any is unknown (for ``omni weights list``)."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)


@dataclass(frozen=True)
class Registry:
    """All manifest entries, by name, in manifest order."""

    entries: tuple[WeightsEntry, ...]
    source: str = "<memory>"
    _by_name: dict[str, WeightsEntry] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {e.name: e for e in self.entries})

    def __iter__(self) -> Iterator[WeightsEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def names(self) -> list[str]:
        return [e.name for e in self.entries]

    def get(self, name: str) -> WeightsEntry:
        """The entry called ``name``; an unknown name lists the closest known names."""
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3, cutoff=0.5)
            if close:
                hint = f"did you mean {', '.join(close)}?"
            else:
                hint = "run `omni weights list` for the known names"
            raise WeightsError(f"unknown weights entry '{name}' in {self.source}; {hint}") from None

    def used_by(self, component: str) -> list[WeightsEntry]:
        """Entries whose ``used_by`` lists ``component`` (e.g. ``evaluation.wer``)."""
        return [e for e in self.entries if component in e.used_by]

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> Registry:
        """Parse and strictly validate manifest YAML (``yaml.safe_load`` only)."""
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise WeightsError(f"weights manifest {source} is not valid YAML: {exc}") from exc
        return cls.from_data(data, source)

    @classmethod
    def from_data(cls, data: Any, source: str = "<data>") -> Registry:
        """Validate an already-parsed manifest.

        Validation is strict (unknown keys are errors, not ignored) because a typo such as
        ``sha265:`` would otherwise silently disable the hash check.
        """

        def fail(where: str, msg: str) -> WeightsError:
            return WeightsError(f"weights manifest {source}: {where}: {msg}")

        if not isinstance(data, dict):
            raise fail("top level", "must be a mapping with keys 'version' and 'entries'")
        _check_keys(data, ("version", "entries"), (), "top level", fail)
        if data["version"] != MANIFEST_VERSION:
            raise fail(
                "top level", f"key 'version' must be {MANIFEST_VERSION}, got {data['version']!r}"
            )
        raw_entries = data["entries"]
        if not isinstance(raw_entries, list):
            raise fail("top level", "key 'entries' must be a list")
        entries: list[WeightsEntry] = []
        seen: set[str] = set()
        for i, raw in enumerate(raw_entries):
            entry = _parse_entry(raw, i, fail)
            if entry.name in seen:
                raise fail(f"entry '{entry.name}'", "key 'name' is a duplicate")
            seen.add(entry.name)
            entries.append(entry)
        return cls(tuple(entries), source)


def _check_keys(
    raw: dict[Any, Any],
    required: tuple[str, ...],
    optional: tuple[str, ...],
    where: str,
    fail: Callable[[str, str], WeightsError],
) -> None:
    for key in raw:
        if key not in required and key not in optional:
            allowed = ", ".join(required + optional)
            raise fail(where, f"unknown key '{key}' (allowed: {allowed})")
    for key in required:
        if key not in raw:
            raise fail(where, f"missing key '{key}'")


def _is_str(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _parse_entry(raw: Any, index: int, fail: Callable[[str, str], WeightsError]) -> WeightsEntry:
    where = f"entry #{index + 1}"
    if not isinstance(raw, dict):
        raise fail(where, "must be a mapping")
    if _is_str(raw.get("name")):
        where = f"entry '{raw['name']}'"
    _check_keys(raw, _ENTRY_KEYS, (), where, fail)
    name = raw["name"]
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise fail(where, f"key 'name' must match [a-z0-9][a-z0-9._-]*, got {name!r}")
    for key in ("description", "homepage", "license"):
        if not _is_str(raw[key]):
            raise fail(where, f"key '{key}' must be a non-empty string")
    if urlsplit(raw["homepage"]).scheme not in ("http", "https"):
        raise fail(where, f"key 'homepage' must be an http(s) URL, got {raw['homepage']!r}")
    used_by = raw["used_by"]
    if not isinstance(used_by, list) or not all(_is_str(u) for u in used_by):
        raise fail(where, "key 'used_by' must be a list of strings")
    if not isinstance(raw["gated"], bool):
        raise fail(where, f"key 'gated' must be true or false, got {raw['gated']!r}")
    raw_files = raw["files"]
    if not isinstance(raw_files, list) or not raw_files:
        raise fail(where, "key 'files' must be a non-empty list")
    files: list[WeightFile] = []
    paths: set[str] = set()
    for j, raw_file in enumerate(raw_files):
        wf = _parse_file(raw_file, f"{where} file #{j + 1}", fail)
        if wf.path in paths:
            raise fail(f"{where} file '{wf.path}'", "key 'path' is a duplicate")
        paths.add(wf.path)
        files.append(wf)
    return WeightsEntry(
        name=name,
        description=raw["description"].strip(),
        homepage=raw["homepage"],
        license=raw["license"],
        used_by=tuple(used_by),
        gated=raw["gated"],
        files=tuple(files),
    )


def _parse_file(raw: Any, where: str, fail: Callable[[str, str], WeightsError]) -> WeightFile:
    if not isinstance(raw, dict):
        raise fail(where, "must be a mapping")
    if _is_str(raw.get("path")):
        where = f"{where.rsplit(' file ', 1)[0]} file '{raw['path']}'"
    _check_keys(raw, _FILE_REQUIRED, _FILE_OPTIONAL, where, fail)
    path = raw["path"]
    if not _is_str(path) or not _safe_relpath(path):
        raise fail(where, f"key 'path' must be a relative path without '..', got {path!r}")
    url = raw["url"]
    if not _is_str(url) or urlsplit(url).scheme not in ("http", "https"):
        raise fail(where, f"key 'url' must be an http(s) URL, got {url!r}")
    sha = raw["sha256"]
    if sha is not None and not (isinstance(sha, str) and _SHA256_RE.match(sha)):
        raise fail(where, f"key 'sha256' must be 64 hex characters or null, got {sha!r}")
    size = raw["size"]
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise fail(where, f"key 'size' must be a byte count or null, got {size!r}")
    unpack = raw.get("unpack")
    if unpack is not None and unpack not in SUPPORTED_UNPACK:
        raise fail(
            where, f"key 'unpack' must be one of {', '.join(SUPPORTED_UNPACK)}, got {unpack!r}"
        )
    return WeightFile(
        path=str(PurePosixPath(path)),
        url=url,
        sha256=sha.lower() if sha else None,
        size=size,
        unpack=unpack,
    )


def _safe_relpath(path: str) -> bool:
    """True for a relative POSIX path that stays inside its folder (also on Windows)."""
    if "\\" in path or PureWindowsPath(path).drive:
        return False
    p = PurePosixPath(path)
    return not p.is_absolute() and ".." not in p.parts and p.parts not in ((), (".",))


@functools.lru_cache(maxsize=1)
def _default_registry() -> Registry:
    resource = importlib.resources.files("omni_core").joinpath("weights.yaml")
    try:
        text = resource.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise WeightsError(f"the packaged weights manifest is missing: {resource}") from None
    return Registry.from_yaml(text, source="omni_core/weights.yaml")


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """The packaged manifest (parsed once, cached) or the manifest at ``path`` (not cached)."""
    if path is None:
        return _default_registry()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise WeightsError(f"cannot read weights manifest {p}: {exc.strerror or exc}") from exc
    return Registry.from_yaml(text, source=str(p))


def _entry(entry: WeightsEntry | str, registry: Registry | None) -> WeightsEntry:
    if isinstance(entry, WeightsEntry):
        return entry
    return (registry or load_registry()).get(entry)


def entry_dir(entry: WeightsEntry | str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/<entry name>``: the folder that holds the entry's files."""
    name = entry.name if isinstance(entry, WeightsEntry) else entry
    return _root(root) / name


# --------------------------------------------------------------------------------------------
# status (cheap) and verify (hashing)


class FileState(StrEnum):
    PRESENT = "present"
    MISSING = "missing"
    PARTIAL = "partial"  # only a .part exists: `omni weights fetch` resumes it
    SIZE_MISMATCH = "size-mismatch"
    STALE = "stale"  # unpacked from an archive whose hash is not the manifest's any more


@dataclass(frozen=True)
class FileStatus:
    file: WeightFile
    path: Path
    state: FileState
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state is FileState.PRESENT


@dataclass(frozen=True)
class EntryStatus:
    entry: WeightsEntry
    folder: Path
    files: tuple[FileStatus, ...]

    @property
    def ok(self) -> bool:
        """Every file is present with the right size (or unpacked)."""
        return all(f.ok for f in self.files)

    def summary(self) -> str:
        bad = [
            f"{f.file.path}: {f.state}{f' ({f.detail})' if f.detail else ''}"
            for f in self.files
            if not f.ok
        ]
        return f"{self.entry.name}: " + ("ok" if not bad else "; ".join(bad))


def _read_marker(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("members"), dict):
        return None
    return data


def _unpacked_problem(folder: Path, marker: dict[str, Any]) -> str | None:
    for member, size in marker["members"].items():
        p = folder / member
        if not p.is_file():
            return f"unpacked member {member} is missing"
        if isinstance(size, int) and p.stat().st_size != size:
            return f"unpacked member {member} has {p.stat().st_size} bytes, expected {size}"
    return None


def _file_status(folder: Path, wf: WeightFile) -> FileStatus:
    path = folder / wf.path
    if wf.unpack:
        marker = _read_marker(folder / wf.marker_name)
        if marker is not None and not path.exists():
            if wf.sha256 and marker.get("sha256") != wf.sha256:
                return FileStatus(
                    wf, folder, FileState.STALE, "unpacked from an archive with another sha256"
                )
            problem = _unpacked_problem(folder, marker)
            if problem:
                return FileStatus(wf, folder, FileState.MISSING, problem)
            return FileStatus(wf, folder, FileState.PRESENT, "unpacked")
    if path.is_file():
        have = path.stat().st_size
        if wf.size is not None and have != wf.size:
            return FileStatus(
                wf, path, FileState.SIZE_MISMATCH, f"{have} bytes, expected {wf.size}"
            )
        detail = "archive not unpacked yet" if wf.unpack else ""
        state = FileState.PARTIAL if wf.unpack else FileState.PRESENT
        return FileStatus(wf, path, state, detail)
    part = _part_path(path)
    if part.is_file():
        total = f" of {wf.size}" if wf.size is not None else ""
        return FileStatus(
            wf, path, FileState.PARTIAL, f"{part.stat().st_size}{total} bytes downloaded"
        )
    return FileStatus(wf, path, FileState.MISSING)


def status(
    entry: WeightsEntry | str,
    root: str | os.PathLike[str] | None = None,
    *,
    registry: Registry | None = None,
) -> EntryStatus:
    """What is on disk for ``entry``, without hashing: existence and size only.

    Cheap enough to run on every ``omni weights list`` and before every model load.
    """
    e = _entry(entry, registry)
    folder = entry_dir(e, root)
    return EntryStatus(e, folder, tuple(_file_status(folder, wf) for wf in e.files))


class VerifyState(StrEnum):
    OK = "ok"
    MISMATCH = "mismatch"
    MISSING = "missing"
    UNKNOWN_HASH = "unknown-hash"


@dataclass(frozen=True)
class FileVerify:
    file: WeightFile
    path: Path
    state: VerifyState
    expected: str | None = None
    actual: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state in (VerifyState.OK, VerifyState.UNKNOWN_HASH)


@dataclass(frozen=True)
class VerifyReport:
    entry: WeightsEntry
    folder: Path
    files: tuple[FileVerify, ...]

    @property
    def ok(self) -> bool:
        """No file is missing or corrupt (files without a reference hash count as ok)."""
        return all(f.ok for f in self.files)

    def summary(self) -> str:
        parts = [
            f"{f.file.path}: {f.state}{f' ({f.detail})' if f.detail else ''}" for f in self.files
        ]
        return f"{self.entry.name}: " + "; ".join(parts)


def _sha256_file(path: Path, hasher: Any = None) -> Any:
    h = hasher if hasher is not None else hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h


def _verify_file(folder: Path, wf: WeightFile) -> FileVerify:
    st = _file_status(folder, wf)
    archive_waiting = wf.unpack is not None and st.path != folder and st.path.is_file()
    if st.state in (FileState.MISSING, FileState.PARTIAL) and not archive_waiting:
        return FileVerify(wf, st.path, VerifyState.MISSING, wf.sha256, None, st.detail)
    if st.state is FileState.SIZE_MISMATCH:
        return FileVerify(wf, st.path, VerifyState.MISMATCH, wf.sha256, None, st.detail)
    if wf.unpack and st.path == folder:  # unpacked: trust the marker, not re-hash members
        marker = _read_marker(folder / wf.marker_name) or {}
        actual = marker.get("sha256")
        if st.state is FileState.STALE:
            return FileVerify(
                wf,
                folder,
                VerifyState.MISMATCH,
                wf.sha256,
                actual,
                "unpacked from another archive version",
            )
        if wf.sha256 is None:
            return FileVerify(
                wf, folder, VerifyState.UNKNOWN_HASH, None, actual, "unpacked, no reference hash"
            )
        return FileVerify(wf, folder, VerifyState.OK, wf.sha256, actual, "unpacked")
    actual = _sha256_file(st.path).hexdigest()
    if wf.sha256 is None:
        return FileVerify(
            wf, st.path, VerifyState.UNKNOWN_HASH, None, actual, "present, no reference hash"
        )
    if actual != wf.sha256:
        return FileVerify(
            wf,
            st.path,
            VerifyState.MISMATCH,
            wf.sha256,
            actual,
            f"sha256 {actual}, expected {wf.sha256}",
        )
    return FileVerify(wf, st.path, VerifyState.OK, wf.sha256, actual)


def verify(
    entry: WeightsEntry | str,
    root: str | os.PathLike[str] | None = None,
    *,
    registry: Registry | None = None,
) -> VerifyReport:
    """Hash every file of ``entry`` (streaming, 8 MiB chunks) against the manifest.

    Slow for multi-GB checkpoints, hence separate from :func:`status`; run it after copying
    files by hand. Unpacked archives are checked through their marker (module docstring).
    """
    e = _entry(entry, registry)
    folder = entry_dir(e, root)
    return VerifyReport(e, folder, tuple(_verify_file(folder, wf) for wf in e.files))


# --------------------------------------------------------------------------------------------
# require: the one way model code gets a path


def require(
    name: str,
    file_path: str | None = None,
    root: str | os.PathLike[str] | None = None,
    *,
    registry: Registry | None = None,
) -> Path:
    """Local path of entry ``name``'s folder (all files must be there) or of one file in it.

    ``file_path`` may be a manifest file or a file extracted from an unpacked archive. Never
    downloads: a missing file raises one ``WeightsError`` line that names the file, the entry
    and the command that fetches it, so an offline run fails fast instead of hanging on a hub.
    """
    e = _entry(name, registry)
    folder = entry_dir(e, root)
    path = _require(e, folder, file_path, root)
    _record_use(e, folder, path, file_path)
    return path


def _require(e: WeightsEntry, folder: Path, file_path: str | None,
             root: str | os.PathLike[str] | None) -> Path:
    def missing(path: Path, why: str = "", url: str | None = None) -> WeightsError:
        src = f" (source: {url})" if url else ""
        reason = f" {why}" if why else ""
        return WeightsError(
            f"missing pretrained weights: {path}{reason} (weights manifest entry '{e.name}'). "
            f"Get it with `omni weights fetch {e.name}`, or, when offline, copy the files "
            f"into {folder}/ by hand{src}."
        )

    if file_path is None:
        for st in status(e, root).files:
            if not st.ok:
                why = f"[{st.state}{': ' + st.detail if st.detail else ''}]"
                raise missing(folder / st.file.path, why, st.file.url)
        return folder
    if not _safe_relpath(file_path):
        raise WeightsError(f"weights file path must be relative, without '..': {file_path!r}")
    rel = str(PurePosixPath(file_path))
    manifest_file = next((f for f in e.files if f.path == rel), None)
    if manifest_file is not None:
        st = _file_status(folder, manifest_file)
        if manifest_file.unpack:
            if st.ok:
                return folder
        elif st.ok:
            return st.path
        why = f"[{st.state}{': ' + st.detail if st.detail else ''}]"
        raise missing(folder / rel, why, manifest_file.url)
    path = folder / rel
    if path.is_file() or path.is_dir():
        return path
    archives = [f.url for f in e.files if f.unpack]
    raise missing(path, "", archives[0] if len(archives) == 1 else None)


#: every checkpoint file :func:`require` handed out in this process (path -> its record), so
#: that a job's provenance names the weights it really loaded (omni_core.jobs)
_USED: dict[str, dict[str, Any]] = {}


_RECORDING = [True]


@contextlib.contextmanager
def unrecorded() -> Iterator[None]:
    """Resolve files without booking them as used (a job's pre-flight check on the driver:
    the workers that load the files book them)."""
    _RECORDING.append(False)
    try:
        yield
    finally:
        _RECORDING.pop()


def _record_use(e: WeightsEntry, folder: Path, path: Path, file_path: str | None) -> None:
    if not _RECORDING[-1]:
        return
    if file_path is None:  # the whole entry: each of its manifest files
        for f in e.files:
            _note(e.name, f.path, folder / f.path, f.sha256)
        return
    rel = str(PurePosixPath(file_path))
    manifest_file = next((f for f in e.files if f.path == rel), None)
    _note(e.name, rel, folder / rel if path == folder else path,
          manifest_file.sha256 if manifest_file is not None else None)


def _note(entry: str, rel: str, path: Path, sha256: str | None) -> None:
    _USED[str(path)] = {"entry": entry, "file": rel, "path": str(path), "sha256": sha256}


def used_checkpoints() -> list[dict[str, Any]]:
    """The checkpoint files loaded in this process through :func:`require`, each with its
    entry, file, path, size and mtime now, and the manifest's sha256 where it lists one
    (hashing a multi-GB file at every run would cost minutes; size + mtime identify it)."""
    out = []
    for path, rec in sorted(_USED.items()):
        try:
            st = os.stat(path)
            size, mtime = (st.st_size, st.st_mtime) if os.path.isfile(path) else (None,
                                                                                st.st_mtime)
        except OSError:
            size = mtime = None
        out.append({**rec, "size": size, "mtime": mtime})
    return out


# --------------------------------------------------------------------------------------------
# fetch


@dataclass(frozen=True)
class FetchResult:
    file: WeightFile
    path: Path
    action: str  # "present", "downloaded", "resumed", "unpacked"


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _is_huggingface(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host == "huggingface.co" or host.endswith(".huggingface.co")


def _hf_token() -> str | None:
    token = os.environ.get("HF_TOKEN", "").strip()
    return token or None


def _content_range_start(value: str | None) -> int | None:
    m = re.match(r"\s*bytes\s+(\d+)-", value or "")
    return int(m.group(1)) if m else None


def _http_error(exc: HTTPError, entry: WeightsEntry, wf: WeightFile) -> WeightsError:
    label = f"{entry.name}/{wf.path}"
    if exc.code in (401, 403):
        if entry.gated:
            return WeightsError(
                f"access to {wf.url} was refused (HTTP {exc.code}) for {label}: accept the "
                f"model's terms at {entry.homepage} with your Hugging Face account and set "
                f"HF_TOKEN to a read token of that account"
            )
        return WeightsError(f"access to {wf.url} was refused (HTTP {exc.code}) for {label}")
    if exc.code == 404:
        return WeightsError(
            f"{wf.url} was not found (HTTP 404) for {label}; the weights manifest entry may be "
            f"out of date, see {entry.homepage}"
        )
    return WeightsError(f"download of {label} from {wf.url} failed: HTTP {exc.code} {exc.reason}")


def _download(
    entry: WeightsEntry,
    wf: WeightFile,
    part: Path,
    *,
    timeout: float,
    progress: ProgressFn | None,
) -> tuple[str, bool]:
    """Download ``wf`` into ``part``, resuming what is there. Returns (sha256, resumed).

    Interruptions keep the ``.part`` (the next call resumes with ``Range: bytes=N-``). The
    hash is computed as bytes arrive (after re-hashing the resumed prefix) to read data once.
    """
    label = f"{entry.name}/{wf.path}"
    offset = part.stat().st_size if part.is_file() else 0
    if wf.size is not None and offset > wf.size:
        part.unlink()
        offset = 0
    hasher = hashlib.sha256()
    if offset:
        _sha256_file(part, hasher)
        if wf.size is not None and offset == wf.size:  # complete, only the rename was missed
            return hasher.hexdigest(), True

    request = Request(wf.url, headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
    token = _hf_token()
    if token and _is_huggingface(wf.url):
        # unredirected: the signed CDN URL that huggingface.co redirects to must not see it
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    again = f"run `omni weights fetch {entry.name}` again to resume"
    try:
        response = build_opener().open(request, timeout=timeout)
    except HTTPError as exc:
        exc.close()
        if exc.code == 416 and offset:  # the range starts at the end: the .part is complete
            return hasher.hexdigest(), True
        raise _http_error(exc, entry, wf) from None
    except (URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        raise WeightsError(
            f"cannot download {label} from {wf.url}: {reason}. Offline? Copy the file to "
            f"{part.with_name(part.name.removesuffix('.part'))} by hand"
        ) from exc

    with response:
        resumed = False
        if response.status == 206 and offset:
            start = _content_range_start(response.headers.get("Content-Range"))
            if start is not None and start != offset:
                part.unlink(missing_ok=True)
                raise WeightsError(
                    f"server sent bytes from {start} instead of {offset} for {label}; the "
                    f"partial download was deleted, {again}"
                )
            mode, resumed = "ab", True
        else:  # 200: the server ignored the range (or there was none): start from zero
            mode, offset, hasher = "wb", 0, hashlib.sha256()
        length_header = response.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else wf.size
        done = offset
        with part.open(mode) as fh:
            try:
                while chunk := response.read(DOWNLOAD_CHUNK):
                    fh.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    if progress is not None:
                        progress(label, done, total)
            except (OSError, http.client.HTTPException) as exc:
                raise WeightsError(
                    f"download of {label} interrupted after {done} bytes ({exc!r}); {again}"
                ) from exc
            finally:
                fh.flush()
                os.fsync(fh.fileno())
        # http.client returns b"" (no error) when the peer closes early: check the length
        if length is not None and done - offset < length:
            raise WeightsError(
                f"download of {label} interrupted after {done} of {total} bytes "
                f"(connection closed); {again}"
            )
    return hasher.hexdigest(), resumed


def _check_download(entry: WeightsEntry, wf: WeightFile, part: Path, sha: str) -> None:
    label = f"{entry.name}/{wf.path}"
    size = part.stat().st_size
    if wf.size is not None and size != wf.size:
        if size < wf.size:
            raise WeightsError(
                f"download of {label} stopped at {size} of {wf.size} bytes; run "
                f"`omni weights fetch {entry.name}` again to resume"
            )
        part.unlink()
        raise WeightsError(
            f"download of {label} has {size} bytes, expected {wf.size}; it was deleted. "
            f"The weights manifest entry may be out of date, see {entry.homepage}"
        )
    if wf.sha256 is not None and sha != wf.sha256:
        part.unlink()
        raise WeightsError(
            f"sha256 mismatch for {label}: expected {wf.sha256}, got {sha}; the download was "
            f"deleted. Run `omni weights fetch {entry.name}` again, or update the manifest "
            f"if upstream changed the file"
        )


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or PureWindowsPath(name).drive:
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "'..' component"
    if (info.external_attr >> 16) & 0o170000 == 0o120000:
        return "symbolic link"
    return None


def _unpack_zip(entry: WeightsEntry, wf: WeightFile, archive: Path, folder: Path, sha: str) -> None:
    """Extract a verified zip into ``folder``; write the marker; delete the archive.

    Every member name is checked before anything is written, so a hostile archive leaves no
    file behind. Members are written to ``.part`` names and renamed, and the marker is written
    last: an interrupted unpack is redone by the next fetch (the archive is still there).
    """
    label = f"{entry.name}/{wf.path}"
    base = folder.resolve()
    members: dict[str, int] = {}
    try:
        with zipfile.ZipFile(archive) as zf:
            infos = zf.infolist()
            for info in infos:
                problem = _zip_member_problem(info)
                if problem:
                    archive.unlink(missing_ok=True)
                    raise WeightsError(
                        f"archive {label} has an unsafe member {info.filename!r} ({problem}); "
                        f"nothing was extracted and the archive was deleted"
                    )
            for info in infos:
                target = folder / PurePosixPath(info.filename)
                if not target.resolve().is_relative_to(base):
                    raise WeightsError(f"archive {label} member {info.filename!r} escapes {folder}")
                if info.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = _part_path(target)
                with zf.open(info) as src, tmp.open("wb") as dst:
                    while chunk := src.read(HASH_CHUNK):
                        dst.write(chunk)
                os.replace(tmp, target)
                members[str(PurePosixPath(info.filename))] = info.file_size
    except zipfile.BadZipFile as exc:
        archive.unlink(missing_ok=True)
        raise WeightsError(f"archive {label} is not a valid zip ({exc}); it was deleted") from exc
    marker = folder / wf.marker_name
    tmp_marker = _part_path(marker)
    tmp_marker.write_text(
        json.dumps(
            {"archive": wf.path, "sha256": sha, "size": archive.stat().st_size, "members": members},
            indent=1,
            sort_keys=True,
        ),
        encoding="utf-8",
    )
    os.replace(tmp_marker, marker)
    archive.unlink()


def fetch(
    entry: WeightsEntry | str,
    root: str | os.PathLike[str] | None = None,
    *,
    force: bool = False,
    progress: ProgressFn | None = None,
    timeout: float = 30,
    registry: Registry | None = None,
) -> list[FetchResult]:
    """Download the missing files of ``entry`` into ``<root>/<name>/``; idempotent, resumable.

    Only the ``omni weights fetch`` command calls this: model code uses :func:`require`, which
    never touches the network. Each file is downloaded to ``<file>.part`` (resumed with an HTTP
    Range request if a ``.part`` is there), checked for size and sha256, and renamed into place
    atomically. Files already present with the right size are skipped unless ``force``.
    ``timeout`` bounds every socket operation, so a dead server fails instead of hanging.
    """
    e = _entry(entry, registry)
    folder = entry_dir(e, root)
    results: list[FetchResult] = []
    for wf in e.files:
        dest = folder / wf.path
        part = _part_path(dest)
        st = _file_status(folder, wf)
        if st.ok and not force:
            results.append(FetchResult(wf, st.path, "present"))
            continue
        if e.gated and _hf_token() is None:
            raise WeightsError(
                f"weights entry '{e.name}' is gated: accept its terms at {e.homepage} with "
                f"your Hugging Face account, then set HF_TOKEN to a read token and run "
                f"`omni weights fetch {e.name}` again"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        if force:
            part.unlink(missing_ok=True)
        if wf.unpack and dest.is_file() and not force and st.state is FileState.PARTIAL:
            sha, resumed = _sha256_file(dest).hexdigest(), False  # downloaded, not unpacked
            _check_download(e, wf, dest, sha)
        else:
            sha, resumed = _download(e, wf, part, timeout=timeout, progress=progress)
            _check_download(e, wf, part, sha)
            os.replace(part, dest)
        if wf.unpack:
            _unpack_zip(e, wf, dest, folder, sha)
            results.append(FetchResult(wf, folder, "unpacked"))
        else:
            results.append(FetchResult(wf, dest, "resumed" if resumed else "downloaded"))
    return results


# --------------------------------------------------------------------------------------------
# loading checkpoints and the wrapper base class


def load_torch_checkpoint(
    path: str | os.PathLike[str], map_location: str = "cpu"
) -> dict[str, Any]:
    """Load a state dict the safe way: safetensors, or ``torch.load(weights_only=True)``
    (:func:`safe_torch_load`).

    Every wrapper goes through here so that no checkpoint can execute pickled code.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    if p.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            return dict(load_file(str(p), device=map_location))
        except Exception as exc:  # safetensors' errors have no common base class
            raise WeightsError(f"cannot read checkpoint {p}: {first_line(exc)}") from exc
    obj = safe_torch_load(p, map_location)
    if not isinstance(obj, dict):
        raise WeightsError(f"checkpoint {p} holds a {type(obj).__name__}, not a state dict")
    return obj


def safe_torch_load(source: Any, map_location: str = "cpu", *, mmap: bool = False,
                    name: str | None = None) -> Any:
    """``torch.load(source, weights_only=True)``: the one way the suite unpickles a checkpoint.

    A file that pickles objects a weights-only load refuses is one :class:`WeightsError` in
    our words -- what was refused and how to convert the file -- never torch's suggestion to
    retry with the safety off (that would run whatever code the pickle holds). Any other
    failure is one line quoting torch's first. ``name`` names a file-like ``source``. Call it
    inside ``torch.serialization.safe_globals`` to allow more classes.
    """
    import pickle

    import torch

    what = name or str(source)
    try:
        return torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" not in text:
            raise WeightsError(f"cannot read checkpoint {what}: {first_line(exc)}") from exc
        advice = "convert it to .safetensors or re-save it as a plain state dict of tensors"
        m = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if m:
            raise WeightsError(f"cannot load {what} safely (weights only): it pickles "
                               f"{m.group(1)}, which a safe load refuses; {advice}") from exc
        detail = text.partition("WeightsUnpickler error:")[2].strip().split("\n")[0]
        raise WeightsError(f"cannot load {what} safely (weights only): a safe load refuses it"
                           f" ({detail or 'not plain tensors'}); if it is a checkpoint, "
                           f"{advice}") from exc
    except Exception as exc:  # zip, mmap and I/O errors have no common base class
        raise WeightsError(f"cannot read checkpoint {what}: {first_line(exc)}") from exc


def load_state_dict_strict(
    module: Any,
    state: Mapping[str, Any],
    source: str,
    *,
    ignore: Callable[[str], bool] | None = None,
    cast: bool = False,
    assign: bool = False,
) -> None:
    """``module.load_state_dict`` that accepts nothing but an exact fit.

    Every key of the module must be present with the same shape and no other key may be
    left over; otherwise one :class:`WeightsError` names ``source`` and lists the missing,
    unexpected and mis-shaped keys (a few of each). ``ignore(key)`` drops keys on both sides
    (e.g. BatchNorm's ``num_batches_tracked``, absent from old checkpoints); ``cast`` converts
    values to the module's dtypes (fp16 archives into fp32 modules); ``assign`` is passed on
    (modules built on the meta device).
    """
    import torch

    skip = ignore or (lambda _key: False)
    own = {k: v for k, v in module.state_dict().items() if not skip(k)}
    given = {k: v for k, v in state.items() if not skip(k)}
    missing = sorted(set(own) - set(given))
    unexpected = sorted(set(given) - set(own))
    shapes = []
    for k in sorted(set(own) & set(given)):
        got = given[k]
        if not isinstance(got, torch.Tensor):
            shapes.append(f"{k} is a {type(got).__name__}, not a tensor")
        elif tuple(got.shape) != tuple(own[k].shape):
            shapes.append(f"{k} has shape {tuple(got.shape)}, expected {tuple(own[k].shape)}")
    if missing or unexpected or shapes:

        def few(items: list[str]) -> str:
            return ", ".join(items[:4]) + (f" (+{len(items) - 4} more)" if len(items) > 4 else "")

        parts = [f"{name} [{few(keys)}]" for name, keys in
                 (("missing", missing), ("unexpected", unexpected), ("shape", shapes)) if keys]
        raise WeightsError(f"{source} does not fit {type(module).__name__}: " + "; ".join(parts))
    if cast:
        given = {k: v.to(own[k].dtype) for k, v in given.items()}
    module.load_state_dict(given, strict=ignore is None, assign=assign)


class WeightPaths(Mapping[str, Path]):
    """The local files a wrapper's ``_load`` reads, by name (see
    :meth:`PretrainedComponent.from_pretrained`). A deferred file is resolved through
    :func:`require` when it is first looked up; iterating over the names resolves nothing.
    """

    def __init__(self) -> None:
        self._paths: dict[str, Path] = {}
        self._deferred: dict[str, Callable[[], Path]] = {}

    def __setitem__(self, key: str, path: Path) -> None:
        self._deferred.pop(key, None)
        self._paths[key] = path

    def defer(self, key: str, resolve: Callable[[], Path]) -> None:
        """Register ``key``, whose path ``resolve()`` gives (or raises) on first lookup."""
        self._paths.pop(key, None)
        self._deferred[key] = resolve

    def __getitem__(self, key: str) -> Path:
        if key in self._deferred:
            self._paths[key] = self._deferred.pop(key)()
        return self._paths[key]

    def __contains__(self, key: object) -> bool:
        return key in self._paths or key in self._deferred

    def __iter__(self) -> Iterator[str]:
        return iter([*self._paths, *self._deferred])

    def __len__(self) -> int:
        return len(self._paths) + len(self._deferred)


def _needed_files(name: str, files: tuple[str, ...], root: str | os.PathLike[str] | None,
                  registry: Registry | None, deferred: bool) -> list[str]:
    """The files of entry ``name`` a wrapper reads: ``files``, or every manifest file (the
    whole entry checked first, unless ``deferred``: one error naming the first missing file)."""
    if files:
        return list(files)
    if not deferred:
        require(name, None, root, registry=registry)
    return [f.path for f in _entry(name, registry).files]


class PretrainedComponent(ABC):
    """Base of every model wrapper (ArcFace, Whisper, SyncNet, CLAP, ...).

    Two constructors share one architecture and code path:

    * :meth:`from_pretrained` resolves the real upstream checkpoint through :func:`require`
      (so a missing file is one clear error, never a download) and calls :meth:`_load`;
    * :meth:`debug` builds a tiny, seeded, random-initialised instance offline through
      :meth:`_build_debug`, for tests and the demo. :meth:`describe` says which one it is so
      that every report can print "scores are not meaningful" next to debug numbers.

    Subclasses set ``weights_entry`` (``None`` for components without a checkpoint) and,
    optionally, ``weights_files``: the files ``_load`` needs, relative to the entry folder
    (files inside an unpacked archive included). Empty means every file of the entry.
    A wrapper that also reads other entries (a tokenizer, a head, a vocoder) declares them in
    ``extra_weights`` instead of resolving them itself, so that they come from the same
    weights root and manifest and a missing file is the same one-line error.
    The class does not inherit ``torch.nn.Module`` so that ONNX-backed wrappers can use it;
    torch wrappers inherit both.
    """

    weights_entry: ClassVar[str | None] = None
    weights_files: ClassVar[tuple[str, ...]] = ()
    #: Further entries ``_load`` reads: entry name -> the files it needs (empty: every file of
    #: the entry). They reach ``_load`` in ``paths`` under ``"<entry>/<file>"``.
    extra_weights: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    #: Entries of ``extra_weights`` that ``_load`` needs only for some checkpoints (a fallback):
    #: checked when ``_load`` first looks one of their files up, so a checkpoint that does not
    #: need them loads without them being there.
    optional_weights: ClassVar[frozenset[str]] = frozenset()

    is_debug: bool = False
    debug_seed: int | None = None
    weights_path: Path | None = None
    #: ``"pretrained"``, ``"debug"`` (tiny, random) or ``"random"`` (real size, random)
    variant: str = "pretrained"

    @classmethod
    def from_pretrained(
        cls,
        root: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        *,
        registry: Registry | None = None,
        **kw: Any,
    ) -> Self:
        """Load the real checkpoint from the local weights folder (never from the network).

        ``paths`` given to :meth:`_load` (a :class:`WeightPaths`) maps each needed file
        (``weights_files``, or every manifest file) to its local path, and each file of an
        ``extra_weights`` entry under ``"<entry>/<file>"``; an unpacked archive maps to the
        entry folder. The extra entries are checked first, then the main one; those in
        ``optional_weights`` only when ``_load`` looks them up.
        """
        paths, folder = cls.weight_paths(root, registry=registry, **kw)
        return cls._load(paths, device, **kw).mark_pretrained(folder)

    @classmethod
    def weight_paths(cls, root: str | os.PathLike[str] | None = None, *,
                     registry: Registry | None = None, **kw: Any
                     ) -> tuple[Mapping[str, Path], Path | None]:
        """Every file :meth:`from_pretrained` reads, resolved through :func:`require` (the
        one-line error for the first missing one), and the folder of the main entry; loads
        nothing. A wrapper that finds its files its own way overrides this, not
        :meth:`from_pretrained`."""
        paths = WeightPaths()
        for name, files in cls.extra_weights.items():
            for rel in _needed_files(name, files, root, registry, name in cls.optional_weights):
                key = f"{name}/{rel}"
                if name in cls.optional_weights:
                    paths.defer(key, functools.partial(require, name, rel, root,
                                                       registry=registry))
                else:
                    paths[key] = require(name, rel, root, registry=registry)
        folder: Path | None = None
        if cls.weights_entry is not None:
            name = cls.weights_entry
            folder = entry_dir(name, root)
            for rel in _needed_files(name, cls.weights_files, root, registry, False):
                paths[rel] = require(name, rel, root, registry=registry)
        return paths, folder

    @classmethod
    def check_weights(cls, weights: str | os.PathLike[str] = "debug", *,
                      registry: Registry | None = None, **kw: Any) -> None:
        """Raise the :class:`WeightsError` that :meth:`for_weights` would raise for a missing
        or broken checkpoint, in milliseconds and loading nothing: the pre-flight a job runs
        before it starts any worker (``Stage.preflight``). The files are not booked as used
        (the workers that load them do that)."""
        kind = str(weights)
        if kind in ("debug", "random"):
            return
        with unrecorded():
            cls.weight_paths(kind, registry=registry, **kw)

    @classmethod
    def for_weights(cls, weights: str | os.PathLike[str] = "debug", device: str = "cpu", *,
              seed: int = 0, **kw: Any) -> Self:
        """The instance a ``weights`` setting asks for: ``"debug"`` (the tiny random twin),
        ``"random"`` (the released architecture with seeded random weights) or a weights
        folder (the real checkpoint, :meth:`from_pretrained`). The one place every config's
        ``weights`` value is read."""
        kind = str(weights)
        if kind == "debug":
            return cls.debug(seed=seed, device=device, **kw)
        if kind == "random":
            return cls.random(seed=seed, device=device, **kw)
        return cls.from_pretrained(root=kind, device=device, **kw)

    def mark_pretrained(self, folder: Path | None) -> Self:
        """Record that this instance holds real weights from ``folder``; for subclasses whose
        ``from_pretrained`` finds its files its own way."""
        self.is_debug = False
        self.debug_seed = None
        self.weights_path = folder
        self.variant = "pretrained"
        return self

    @classmethod
    def debug(cls, seed: int = 0, device: str = "cpu", **kw: Any) -> Self:
        """A tiny random instance, identical for identical seeds, built without any file.

        The torch, numpy and ``random`` global generators are seeded inside a fork and
        restored afterwards, so building a debug model never changes the caller's RNG stream.
        """
        import random

        import numpy as np
        import torch

        dev = torch.device(device)
        cuda = [dev.index or 0] if dev.type == "cuda" else []
        np_state = np.random.get_state()
        py_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=cuda):
                torch.manual_seed(seed)
                np.random.seed(seed % 2**32)
                random.seed(seed)
                obj = cls._build_debug(seed, device, **kw)
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)
        obj.is_debug = True
        obj.debug_seed = seed
        obj.weights_path = None
        obj.variant = "debug"
        return obj

    @classmethod
    def random(cls, seed: int = 0, device: str = "cpu", **kw: Any) -> Self:
        """The released architecture at full size with seeded random weights, built offline.

        For throughput and memory measurements on real shapes (a GPU benchmark without the
        checkpoints): the debug code path with :meth:`_real_size`'s arguments, so every
        layer, width and vocabulary is the upstream one. Scores are not meaningful.
        """
        obj = cls.debug(seed, device, **{**cls._real_size(), **kw})
        obj.variant = "random"
        return obj

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        """Keyword arguments that make :meth:`_build_debug` build the released architecture."""
        raise NotImplementedError(f"{cls.__name__} has no real-size random build")

    def describe(self) -> str:
        """One line for logs and reports: where the weights came from."""
        if self.variant == "random":
            return (f"random weights at real size (seed {self.debug_seed}): scores are not "
                    f"meaningful")
        if self.is_debug:
            return f"debug weights (seed {self.debug_seed}): scores are not meaningful"
        if self.weights_entry is None:
            return f"{type(self).__name__} (no pretrained weights needed)"
        return f"{self.weights_entry} from {self.weights_path}"

    @classmethod
    @abstractmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        """Build the component from the real checkpoint files in ``paths``."""

    @classmethod
    @abstractmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """Build a tiny random instance (global RNGs are already seeded with ``seed``)."""
