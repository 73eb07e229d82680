"""Inputs and outputs as local paths or fsspec URLs (``s3://bucket/prefix``, ``gs://``, ...).

Curation reads its inputs from a folder or a bucket and writes its run to a folder or a bucket,
with the same code on one laptop and on a multi-node Ray cluster where nothing is shared
between nodes but the remote output:

- :func:`list_files`: the regular files under a folder URL (or the one file given), sorted,
  hidden path parts skipped;
- :func:`local_input`: a local file to decode: the path itself when it is local, else a
  download into a node-local cache keyed by the URL, the size and the ETag/mtime, so that a
  changed object is fetched again and an unchanged one never twice;
- :func:`stat_key`: (size, mtime or ETag) of an input, what a resumed run compares to decide
  whether an input changed;
- :class:`RunFolder`: the run's output. Work is written to a local path (:meth:`~RunFolder.local`:
  the output folder itself when it is local, else a node-local staging folder) and then
  :meth:`~RunFolder.publish`-ed (uploaded; nothing to do when local). Small files (parts, JSON)
  go straight through fsspec. It holds only strings, so it pickles to Ray actors on any node.

Plain paths and ``file://`` URLs never touch fsspec. Remote URLs need the filesystem's package
(``s3fs`` for ``s3://``, a dependency of the suite). Credentials come from the standard places
of each store (for S3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``,
``~/.aws``, instance roles); an S3-compatible endpoint (MinIO, Ceph, a test server) from the
standard ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. Nothing here prints or stores them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from .errors import OmniError

__all__ = ["RunFolder", "as_run_folder", "cache_root", "exists", "is_remote", "join",
           "list_files", "local_input", "stat_key"]

_LOCAL = ("", "file", "local")


def cache_root() -> Path:
    """Node-local cache: ``$OMNI_CACHE``, else ``$XDG_CACHE_HOME/omni``, else ``~/.cache/omni``."""
    env = os.environ.get("OMNI_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "omni"


def _protocol(url: str) -> str:
    head, sep, _ = url.partition("://")
    # "C:\\x" or a relative path with no scheme is local; a scheme is letters, digits, + - .
    if not sep or not head or not all(c.isalnum() or c in "+-." for c in head):
        return ""
    return head.lower()


def is_remote(url: str | os.PathLike[str]) -> bool:
    """True for a URL that fsspec must serve (not a plain path, not ``file://``)."""
    return _protocol(os.fspath(url)) not in _LOCAL


def _local_path(url: str | os.PathLike[str]) -> Path:
    s = os.fspath(url)
    if _protocol(s) in ("file", "local"):
        s = s.split("://", 1)[1]
    return Path(s)


def _options(protocol: str) -> dict[str, Any]:
    """Storage options: only an S3 endpoint from the standard variables (botocore reads them
    too; naming it here keys fsspec's instance cache by it). Never credentials."""
    if protocol in ("s3", "s3a"):
        ep = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        if ep:
            return {"client_kwargs": {"endpoint_url": ep}}
    return {}


def _fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a remote URL."""
    try:
        import fsspec
    except ImportError as exc:  # pragma: no cover - fsspec ships with the suite
        raise OmniError(f"{url}: remote URLs need fsspec") from exc
    protocol = _protocol(url)
    try:
        fs, path = fsspec.core.url_to_fs(url, **_options(protocol))
    except (ImportError, ValueError) as exc:
        raise OmniError(f"{url}: no filesystem for {protocol}:// ({_reason(exc)}); for s3:// "
                        "install s3fs") from exc
    return fs, path.rstrip("/")


def _url(fs: Any, path: str) -> str:
    return fs.unstrip_protocol(path)


def _reason(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def join(url: str | os.PathLike[str], rel: str) -> str:
    """``url``/``rel`` for a path or a URL (``rel`` uses ``/``; empty gives ``url``)."""
    base = os.fspath(url)
    if not rel:
        return base
    if is_remote(base):
        return base.rstrip("/") + "/" + rel.lstrip("/")
    return str(_local_path(base) / rel)


def resolve(base: str | os.PathLike[str], path: str) -> str:
    """A manifest's media ``path`` as a location: kept when it is already absolute (a URL or
    an absolute path: a file of another run), else joined to the run ``base`` it is relative
    to (:func:`join`)."""
    if is_remote(path) or _protocol(path) in ("file", "local") or Path(path).is_absolute():
        return path
    return join(base, path)


def _fresh_info(fs: Any, path: str) -> dict[str, Any]:
    fs.invalidate_cache(path)
    return fs.info(path)


def exists(url: str | os.PathLike[str]) -> bool:
    """Whether a file or folder exists at a path or URL (never a cached answer)."""
    s = os.fspath(url)
    if not is_remote(s):
        return _local_path(s).exists()
    fs, path = _fs(s)
    fs.invalidate_cache(path)
    return bool(fs.exists(path))


# --------------------------------------------------------------------------------------------
# inputs


def _hidden(rel_parts: tuple[str, ...] | list[str]) -> bool:
    return any(p.startswith(".") for p in rel_parts)


def list_files(url: str | os.PathLike[str]) -> list[str]:
    """Every regular file under a folder (sorted, hidden path parts skipped) or the one file
    given; local paths come back as paths, remote ones as URLs of the same scheme.

    Nothing is filtered by extension: a caller that wants every input accounted for (the
    curation DAG) turns a file that is not media into an error row.
    """
    s = os.fspath(url)
    if not is_remote(s):
        root = _local_path(s)
        if root.is_file():
            return [str(root)]
        if not root.is_dir():
            raise OmniError(f"input not found: {s}")
        return sorted(str(p) for p in root.rglob("*")
                      if p.is_file() and not _hidden(p.relative_to(root).parts))
    fs, path = _fs(s)
    try:
        fs.invalidate_cache(path)
        if fs.isfile(path):
            return [s]
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        found = {}
    except OSError as exc:
        raise OmniError(f"cannot list {s}: {_reason(exc)}") from exc
    files = []
    for name, info in found.items():
        if info.get("type") != "file" or name.endswith("/"):
            continue  # folder markers
        rel = name[len(path):].lstrip("/")
        if not rel or _hidden(rel.split("/")):
            continue
        files.append(_url(fs, name))
    if not files and not fs.exists(path):
        raise OmniError(f"input not found: {s}")
    return sorted(files)


def _version(info: dict[str, Any]) -> str | None:
    """What changes when a remote object is rewritten: its ETag, else its modification time."""
    for key in ("ETag", "etag", "md5Hash", "generation", "LastModified", "mtime",
                "last_modified", "updated", "created"):
        v = info.get(key)
        if v is not None and v != "":
            return str(v).strip('"')
    return None


def _stamp(info: dict[str, Any]) -> str:
    return f"{int(info.get('size') or 0)} {_version(info)}"


def _version_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.version")


def stat_key(url: str | os.PathLike[str]) -> list[Any]:
    """[size, mtime in ns] of a local file, [size, ETag or mtime] of a remote object: equal
    keys mean an unchanged input. Raises OSError (FileNotFoundError) when it is gone."""
    s = os.fspath(url)
    if not is_remote(s):
        st = os.stat(_local_path(s))
        return [st.st_size, st.st_mtime_ns]
    fs, path = _fs(s)
    info = _fresh_info(fs, path)
    return [int(info.get("size") or 0), _version(info)]


def local_input(url: str | os.PathLike[str], cache_dir: str | os.PathLike[str] | None = None
                ) -> Path:
    """A local file with the input's bytes: the path itself when local; for a remote URL a
    download into ``cache_dir`` (default ``cache_root()/inputs``) keyed by the URL, size and
    version, written atomically, reused while the object is unchanged."""
    s = os.fspath(url)
    if not is_remote(s):
        return _local_path(s)
    fs, path = _fs(s)
    try:
        info = _fresh_info(fs, path)
    except FileNotFoundError as exc:
        raise OmniError(f"input not found: {s}") from exc
    except OSError as exc:
        raise OmniError(f"cannot read {s}: {_reason(exc)}") from exc
    size, version = int(info.get("size") or 0), _version(info)
    key = hashlib.sha256(f"{s}\0{size}\0{version}".encode()).hexdigest()[:32]
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "inputs"
    name = path.rsplit("/", 1)[-1] or "object"
    dest = folder / key[:2] / key / name
    if dest.is_file() and dest.stat().st_size == size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{name}.{os.getpid()}.{os.urandom(4).hex()}.part")
    try:
        fs.get_file(path, str(tmp))
        os.replace(tmp, dest)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OmniError(f"cannot download {s}: {_reason(exc)}") from exc
    return dest


# --------------------------------------------------------------------------------------------
# the run's output


class RunFolder:
    """The output of a run: a local folder, or a remote URL staged through a local folder.

    ``rel`` paths are relative, with ``/``. For a local output :meth:`local` is ``out/rel``
    and :meth:`publish` does nothing. For a remote one :meth:`local` is ``staging/rel`` on this
    node (downloaded first when the remote has it and this node has not), :meth:`publish`
    uploads it, and :meth:`exists`, :meth:`read_text`, :meth:`write_text` ask the remote, so
    that every node (and a resumed run on another machine) sees the same run.

    ``staging`` defaults to ``cache_root()/runs/<hash of the URL>``, resolved on each node when
    first used. Only strings are kept: instances pickle (Ray actors) and compare by value.
    """

    def __init__(self, out: str | os.PathLike[str], staging: str | os.PathLike[str] | None = None
                 ) -> None:
        s = os.fspath(out)
        if is_remote(s):
            self.out = s.rstrip("/")
        else:
            self.out = str(_local_path(s).expanduser().resolve())
        self.staging = None if staging is None else os.fspath(staging)

    def __repr__(self) -> str:
        return f"RunFolder({self.out!r}, staging={self.staging!r})"

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, RunFolder) and other.out == self.out
                and other.staging == self.staging)

    def __hash__(self) -> int:
        return hash((self.out, self.staging))

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunFolder, (self.out, self.staging))

    @property
    def remote(self) -> bool:
        return is_remote(self.out)

    @property
    def root(self) -> Path:
        """The local folder of this node: the output itself, or its staging folder."""
        if not self.remote:
            return Path(self.out)
        if self.staging is not None:
            return Path(self.staging)
        digest = hashlib.sha256(self.out.encode()).hexdigest()[:16]
        return cache_root() / "runs" / digest

    def url(self, rel: str = "") -> str:
        """Where ``rel`` lives for good: a path for a local output, a URL for a remote one."""
        return join(self.out, rel)

    def _remote(self, rel: str) -> tuple[Any, str]:
        return _fs(self.url(rel))

    def local(self, rel: str, *, fetch: bool = True) -> Path:
        """A local path for ``rel``. Pass ``fetch=False`` for a file about to be written: its
        parent folder is made.

        For a remote output with ``fetch``, the staged copy is brought up to date first: it is
        downloaded when it is missing or is not the remote's current version (a clip recut by
        another node or another run), so a node never reads a stale copy. The version of a
        staged copy (what it was uploaded or downloaded as) is kept beside it in a hidden
        ``.<name>.version`` file. When the remote has no ``rel``, the path is returned as is.
        """
        path = self.root / rel
        if not fetch:
            path.parent.mkdir(parents=True, exist_ok=True)
            return path
        if not self.remote:
            return path
        fs, rpath = self._remote(rel)
        try:
            info = _fresh_info(fs, rpath)
        except FileNotFoundError:
            return path
        except OSError as exc:
            raise OmniError(f"cannot read {self.url(rel)}: {_reason(exc)}") from exc
        if info.get("type", "file") != "file":
            return path
        stamp = _stamp(info)
        mark = _version_file(path)
        if path.is_file() and mark.is_file() and mark.read_text() == stamp:
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.part")
        try:
            fs.get_file(rpath, str(tmp))
            os.replace(tmp, path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise OmniError(f"cannot download {self.url(rel)}: {_reason(exc)}") from exc
        mark.write_text(stamp)
        return path

    def publish(self, rel: str) -> str:
        """Make the written local file ``rel`` part of the output (upload it when remote);
        returns :meth:`url`."""
        if self.remote:
            fs, rpath = self._remote(rel)
            local = self.root / rel
            try:
                fs.put_file(str(local), rpath)
                _version_file(local).write_text(_stamp(_fresh_info(fs, rpath)))
            except OSError as exc:
                raise OmniError(f"cannot upload {self.url(rel)}: {_reason(exc)}") from exc
        return self.url(rel)

    def exists(self, rel: str) -> bool:
        """Whether the output has ``rel`` (a remote output is asked, not the staging copy)."""
        if not self.remote:
            return (self.root / rel).exists()
        fs, rpath = self._remote(rel)
        fs.invalidate_cache(rpath)
        return bool(fs.exists(rpath))

    def read_text(self, rel: str) -> str:
        """``rel``'s text (UTF-8); FileNotFoundError when the output does not have it."""
        if not self.remote:
            return (self.root / rel).read_text(encoding="utf-8")
        fs, rpath = self._remote(rel)
        fs.invalidate_cache(rpath)
        return fs.cat_file(rpath).decode("utf-8")

    def write_text(self, rel: str, text: str) -> str:
        """Write ``rel`` whole: atomically (temporary file + rename) when local, one PUT when
        remote (object stores never show half an object). Returns :meth:`url`."""
        if not self.remote:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        else:
            fs, rpath = self._remote(rel)
            try:
                fs.pipe_file(rpath, text.encode("utf-8"))
            except OSError as exc:
                raise OmniError(f"cannot write {self.url(rel)}: {_reason(exc)}") from exc
            fs.invalidate_cache(rpath)
        return self.url(rel)

    def list(self, rel: str) -> list[str]:
        """The files under folder ``rel`` of the output, as sorted ``rel`` paths ([] if none)."""
        if not self.remote:
            base = self.root / rel
            if not base.is_dir():
                return []
            return sorted(p.relative_to(self.root).as_posix()
                          for p in base.rglob("*") if p.is_file())
        fs, rpath = self._remote(rel)
        fs.invalidate_cache(rpath)
        try:
            names = fs.find(rpath)
        except FileNotFoundError:
            return []
        top = self._remote("")[1]
        return sorted(n[len(top):].lstrip("/") for n in names if not n.endswith("/"))

    def remove(self, rel: str) -> None:
        """Delete file or folder ``rel`` from the output (and its staged copy); missing is fine."""
        target = self.root / rel
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        elif target.exists():
            target.unlink(missing_ok=True)
        if self.remote:
            fs, rpath = self._remote(rel)
            fs.invalidate_cache(rpath)
            try:
                if fs.exists(rpath):
                    fs.rm(rpath, recursive=True)
            except FileNotFoundError:
                pass
            fs.invalidate_cache(rpath)


def as_run_folder(out: RunFolder | str | os.PathLike[str]) -> RunFolder:
    """``out`` itself when it is a :class:`RunFolder`, else the run folder of that path/URL."""
    return out if isinstance(out, RunFolder) else RunFolder(out)
