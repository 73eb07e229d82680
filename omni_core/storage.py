"""Inputs and outputs as local paths or fsspec URLs (``s3://bucket/prefix``, ``gs://``, ...).

Curation reads its inputs from a folder or a bucket and writes its run to a folder or a bucket,
with the same code on one laptop and on a multi-node Ray cluster where nothing is shared
between nodes but the remote output:

- :func:`list_files`: every entry under a folder URL (or the one entry given) accounted for
  in a :class:`Listing`: the regular files (the inputs, sorted), the entries that cannot be
  inputs and why, the hidden entries and the files under excluded folders (the run's own
  output) that were skipped;
- :func:`local_input`: a local file to decode: the path itself when it is local, else a
  download into a node-local cache keyed by the URL, the size and the ETag/mtime, so that a
  changed object is fetched again and an unchanged one never twice;
- :func:`stat_key`: (size, mtime or ETag) of an input, what a resumed run compares to decide
  whether an input changed;
- :func:`read_bytes`: the bytes of a small file (an index, a JSON), read without a local copy;
- :func:`file_names`: the names of the files directly in one folder (one listing, not a walk);
- :class:`RunFolder`: the run's output. Work is written to a local path (:meth:`~RunFolder.local`:
  the output folder itself when it is local, else a node-local staging folder) and then
  :meth:`~RunFolder.publish`-ed (uploaded; nothing to do when local). Small files (parts, JSON)
  go straight through fsspec. It holds only strings, so it pickles to Ray actors on any node.

Plain paths and ``file://`` URLs never touch fsspec. Remote URLs need the filesystem's package
(``s3fs`` for ``s3://``, a dependency of the suite). Credentials come from the standard places
of each store (for S3: ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_PROFILE``,
``~/.aws``, instance roles); an S3-compatible endpoint (MinIO, Ceph, a test server) from the
standard ``AWS_ENDPOINT_URL_S3`` or ``AWS_ENDPOINT_URL``. Nothing here prints or stores them,
and a URL that carries credentials itself (``s3://KEY:SECRET@bucket``, a signed query) is
refused: the run would record them with every path.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OmniError
from .urls import redact_url

__all__ = ["Listing", "RunFolder", "as_run_folder", "cache_root", "exists", "is_remote", "join",
           "file_names", "list_files", "local_input", "read_bytes", "stat_key"]

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


def _no_credentials(url: str) -> None:
    """Refuse a remote URL that carries credentials (user-info, a signed query)."""
    shown = redact_url(url)
    if shown != url:
        raise OmniError(f"{shown}: a storage URL must not carry credentials (the run records "
                        "its paths); give them the store's standard way (for S3: "
                        "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or AWS_PROFILE)")


def _fs(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a remote URL."""
    _no_credentials(url)
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


@dataclass
class Listing:
    """Every entry under an input folder, accounted for (:func:`list_files`)."""

    #: the inputs: regular files, and symlinks to regular files (sorted paths or URLs)
    files: list[str] = field(default_factory=list)
    #: (entry, reason) of each entry that cannot be an input: a named pipe, a socket, a
    #: device, a broken symlink, a symlink loop, a symlink to a folder, a folder that cannot
    #: be listed (sorted)
    problems: list[tuple[str, str]] = field(default_factory=list)
    #: hidden entries (names starting with ``.``) skipped; a hidden folder counts once
    hidden: int = 0
    #: files under an excluded folder (the run's own output) skipped
    excluded: int = 0
    #: each input's :func:`stat_key` as listed (a resume compares it: no request per input)
    stats: dict[str, list[Any]] = field(default_factory=dict)


def list_files(url: str | os.PathLike[str], *,
               exclude: Iterable[str | os.PathLike[str]] = ()) -> Listing:
    """Every entry under a folder (or the one entry given), accounted for: local paths come
    back as paths, remote ones as URLs of the same scheme.

    - a regular file is an input, whatever its name: a caller that accounts for every input
      (the curation DAG) turns one that is not media into an error row; so is a symlink to a
      regular file (the symlink's path is the input);
    - a named pipe, a socket, a device, a broken symlink, a symlink loop, a folder that cannot
      be listed is a problem with its reason. Nothing is opened (a pipe would block). A
      symlink to a folder is a problem too: folder symlinks are never followed, so a listing
      cannot loop or list a folder twice;
    - a hidden entry (``.name``) is skipped and counted (a hidden folder once, unread);
    - so is every file under a folder of ``exclude`` (paths or URLs: the run's own output and
      its staging folder, so that a rerun never lists what the run wrote). Local folders are
      compared by real path, remote ones by URL.

    ``OmniError`` when the input does not exist or cannot be listed at all.
    """
    s = os.fspath(url)
    exclude = [os.fspath(x) for x in exclude]
    listing = (_list_remote(s, [x for x in exclude if _protocol(x) == _protocol(s)])
               if is_remote(s) else
               _list_local(s, [os.path.realpath(_local_path(x)) for x in exclude
                               if not is_remote(x)]))
    listing.files.sort()
    listing.problems.sort()
    return listing


def _under(path: str, folders: list[str], sep: str) -> bool:
    return any(path == f or path.startswith(f.rstrip(sep) + sep) for f in folders)


def _list_local(s: str, excluded: list[str]) -> Listing:
    root = _local_path(s)
    if not os.path.lexists(root):
        raise OmniError(f"input not found: {s}")
    listing = Listing()
    if not root.is_dir():  # one entry given
        _account(listing, str(root), root.is_symlink(), excluded)
        return listing
    folders = [(str(root), os.path.realpath(root))]  # (path as listed, real path)
    while folders:
        path, real = folders.pop()
        if _under(real, excluded, os.sep):
            listing.excluded += sum(len(files) for _, _, files in os.walk(real))
            continue
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError as exc:
            if path == str(root):
                raise OmniError(f"cannot list {s}: {_os_reason(exc, False)}") from None
            listing.problems.append((path, _os_reason(exc, False)))
            continue
        for e in entries:
            if e.name.startswith("."):
                listing.hidden += 1
            elif e.is_dir(follow_symlinks=False):
                folders.append((e.path, os.path.join(real, e.name)))
            else:
                _account(listing, e.path, e.is_symlink(), excluded)
    return listing


def _account(listing: Listing, path: str, link: bool, excluded: list[str]) -> None:
    """One entry that is not a folder to walk: an input, a problem, or excluded."""
    try:
        st = os.stat(path)  # follows a symlink; opens nothing
    except OSError as exc:
        listing.problems.append((path, _os_reason(exc, link)))
        return
    if link and _under(os.path.realpath(path), excluded, os.sep):
        listing.excluded += 1
    elif stat.S_ISREG(st.st_mode):
        listing.files.append(path)
        listing.stats[path] = [st.st_size, st.st_mtime_ns]
    elif stat.S_ISDIR(st.st_mode):
        listing.problems.append((path, "symlink to a folder, not followed"))
    else:
        kind = ("named pipe" if stat.S_ISFIFO(st.st_mode) else
                "socket" if stat.S_ISSOCK(st.st_mode) else
                "device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else
                "special file")
        listing.problems.append((path, f"{'symlink to a ' if link else ''}{kind}, not a "
                                       "regular file"))


def _os_reason(exc: OSError, link: bool) -> str:
    if exc.errno == errno.ELOOP:
        return "symlink loop"
    if exc.errno == errno.ENOENT:
        return "broken symlink: its target does not exist" if link else "gone while listed"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return exc.strerror or _reason(exc)


def _list_remote(s: str, exclude: list[str]) -> Listing:
    fs, path = _fs(s)
    excluded = [_fs(x)[1] for x in exclude]
    try:
        fs.invalidate_cache(path)
        if fs.isfile(path):
            info = fs.info(path)
            return Listing(files=[s], stats={s: [int(info.get("size") or 0), _version(info)]})
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        found = {}
    except OSError as exc:
        raise OmniError(f"cannot list {s}: {_reason(exc)}") from exc
    listing = Listing()
    hidden: set[str] = set()
    for name, info in found.items():
        kind = info.get("type")
        if kind == "directory" or name.endswith("/"):
            continue  # folders, folder markers
        rel = name[len(path):].lstrip("/")
        parts = rel.split("/")
        if not rel:
            continue
        if _under(name, excluded, "/"):
            listing.excluded += 1
        elif any(p.startswith(".") for p in parts):
            first = next(i for i, p in enumerate(parts) if p.startswith("."))
            hidden.add("/".join(parts[:first + 1]))
        elif kind == "file":
            url = _url(fs, name)
            listing.files.append(url)
            listing.stats[url] = [int(info.get("size") or 0), _version(info)]
        else:
            listing.problems.append((_url(fs, name), f"{kind}, not a regular file"))
    listing.hidden = len(hidden)
    if not found and not fs.exists(path):
        raise OmniError(f"input not found: {s}")
    return listing


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


def file_names(url: str | os.PathLike[str]) -> set[str]:
    """The names of the files directly in a folder (path or URL), without walking its
    subfolders: what a reader that knows the layout needs to check that its files are there
    (an empty set for a folder that does not exist)."""
    s = os.fspath(url)
    if not is_remote(s):
        try:
            with os.scandir(_local_path(s)) as it:
                return {e.name for e in it if e.is_file()}
        except (FileNotFoundError, NotADirectoryError):
            return set()
    fs, path = _fs(s)
    try:
        fs.invalidate_cache(path)
        found = fs.ls(path, detail=True)
    except FileNotFoundError:
        return set()
    except OSError as exc:
        raise OmniError(f"cannot list {s}: {_reason(exc)}") from exc
    return {e["name"].rstrip("/").rsplit("/", 1)[-1] for e in found
            if e.get("type") == "file"}


def read_bytes(url: str | os.PathLike[str]) -> bytes:
    """The bytes of a small file at a path or URL (a crop, a JSON, an index), read whole into
    memory: one GET when remote, no metadata request and no cache copy (:func:`local_input`
    asks for the object's size and version first). FileNotFoundError when there is none;
    ``OmniError`` when it cannot be read."""
    s = os.fspath(url)
    if not is_remote(s):
        path = _local_path(s)
        if not path.is_file():
            raise FileNotFoundError(errno.ENOENT, "no such file", s)
        return path.read_bytes()
    fs, path = _fs(s)
    try:
        fs.invalidate_cache(path)
        return fs.cat_file(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise OmniError(f"cannot read {s}: {_reason(exc)}") from exc


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
            _no_credentials(s)
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

    def unstage(self, rel: str) -> None:
        """Drop this node's staged copy of the published file ``rel`` of a remote output, so
        that a job writing more than a node's disk holds (latent shards) keeps only what it
        is working on; the output keeps it. Nothing to do for a local output (the file *is*
        the output)."""
        if self.remote:
            local = self.root / rel
            local.unlink(missing_ok=True)
            _version_file(local).unlink(missing_ok=True)

    def exists(self, rel: str) -> bool:
        """Whether the output has ``rel`` (a remote output is asked, not the staging copy)."""
        if not self.remote:
            return (self.root / rel).exists()
        fs, rpath = self._remote(rel)
        fs.invalidate_cache(rpath)
        return bool(fs.exists(rpath))

    def read_text(self, rel: str) -> str:
        """``rel``'s text (UTF-8); FileNotFoundError when the output does not have it."""
        return self.read_bytes(rel).decode("utf-8")

    def write_text(self, rel: str, text: str) -> str:
        """Write ``rel`` whole: atomically (temporary file + rename) when local, one PUT when
        remote (object stores never show half an object). Returns :meth:`url`."""
        return self.write_bytes(rel, text.encode("utf-8"))

    def read_bytes(self, rel: str) -> bytes:
        """``rel``'s bytes; FileNotFoundError when the output does not have it (a remote
        output: one GET)."""
        if not self.remote:
            return (self.root / rel).read_bytes()
        fs, rpath = self._remote(rel)
        fs.invalidate_cache(rpath)
        return fs.cat_file(rpath)

    def write_bytes(self, rel: str, data: bytes) -> str:
        """Write ``rel`` whole, atomically when local, one PUT when remote. Returns
        :meth:`url`."""
        if not self.remote:
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            fs, rpath = self._remote(rel)
            try:
                fs.pipe_file(rpath, data)
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
