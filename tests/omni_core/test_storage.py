"""omni_core.storage: local paths and s3:// URLs (a real S3 server on 127.0.0.1, moto)."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from pathlib import Path

import pytest

from omni_core.errors import OmniError
from omni_core.storage import (
    RunFolder,
    exists,
    file_names,
    is_remote,
    join,
    list_files,
    local_input,
    read_bytes,
    stat_key,
)


def _tree(root: Path) -> list[str]:
    """A folder with nested files, hidden files and a hidden folder; the visible rel paths."""
    for rel, data in {"a.mp4": b"aa", "sub/b.mp4": b"bbb", "sub/deeper/c.txt": b"c",
                      ".hidden.mp4": b"h", ".cache/d.mp4": b"d", "sub/.e.mp4": b"e"}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return ["a.mp4", "sub/b.mp4", "sub/deeper/c.txt"]


def test_urls_and_paths():
    assert is_remote("s3://b/k") and is_remote("gs://b") and is_remote("memory://x")
    assert not is_remote("/data/x") and not is_remote("rel/x") and not is_remote("file:///x")
    assert join("s3://b/run/", "clips/a.mp4") == "s3://b/run/clips/a.mp4"
    assert join("/data/run", "clips/a.mp4") == "/data/run/clips/a.mp4"
    assert join("s3://b/run", "") == "s3://b/run"


def test_local_listing_skips_and_counts_hidden_entries(tmp_path):
    visible = _tree(tmp_path)
    want = [str(tmp_path / r) for r in visible]
    for listing in (list_files(tmp_path), list_files(f"file://{tmp_path}")):
        assert listing.files == want and listing.problems == []
        assert listing.hidden == 3  # .hidden.mp4, the .cache folder (once), sub/.e.mp4
    assert list_files(tmp_path / "a.mp4").files == [str(tmp_path / "a.mp4")]
    with pytest.raises(OmniError, match="input not found"):
        list_files(tmp_path / "nope")


def test_local_listing_accounts_for_every_entry_and_opens_none(tmp_path):
    """A regular file or a symlink to one is an input; a pipe, a socket, a device, a broken
    symlink, a symlink loop, a symlink to a folder is a problem with its reason. A pipe is
    never opened (that would block the listing)."""
    import socket

    _tree(tmp_path)
    os.mkfifo(tmp_path / "pipe.mp4")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp_path / "sub" / "sock.mp4"))
    (tmp_path / "to_a.mp4").symlink_to("a.mp4")
    (tmp_path / "null.mp4").symlink_to("/dev/null")
    (tmp_path / "gone.mp4").symlink_to("nowhere.mp4")
    (tmp_path / "loop1.mp4").symlink_to("loop2.mp4")
    (tmp_path / "loop2.mp4").symlink_to("loop1.mp4")
    (tmp_path / "sub" / "up").symlink_to("..")  # a folder loop: never followed
    try:
        listing = list_files(tmp_path)
        single = list_files(tmp_path / "pipe.mp4")
    finally:
        sock.close()
    assert listing.files == [str(tmp_path / r) for r in
                             ("a.mp4", "sub/b.mp4", "sub/deeper/c.txt", "to_a.mp4")]
    assert listing.problems == sorted([
        (str(tmp_path / "gone.mp4"), "broken symlink: its target does not exist"),
        (str(tmp_path / "loop1.mp4"), "symlink loop"),
        (str(tmp_path / "loop2.mp4"), "symlink loop"),
        (str(tmp_path / "null.mp4"), "symlink to a device, not a regular file"),
        (str(tmp_path / "pipe.mp4"), "named pipe, not a regular file"),
        (str(tmp_path / "sub" / "sock.mp4"), "socket, not a regular file"),
        (str(tmp_path / "sub" / "up"), "symlink to a folder, not followed")])
    assert listing.hidden == 3 and listing.excluded == 0
    assert single.files == [] and single.problems == [
        (str(tmp_path / "pipe.mp4"), "named pipe, not a regular file")]


def test_a_folder_that_cannot_be_listed_is_a_problem(tmp_path):
    """Listed by an unprivileged process (root reads every folder): a folder it may not read
    is a problem, "permission denied"; the rest is listed."""
    root = Path(tempfile.mkdtemp(prefix="omni-perm-"))  # reachable by an unprivileged user
    try:
        root.chmod(0o755)
        _tree(root)
        (root / "locked").mkdir()
        (root / "locked" / "x.mp4").write_bytes(b"x")
        (root / "locked").chmod(0)
        listing = _list_unprivileged(root)
    finally:
        (root / "locked").chmod(0o755)
        shutil.rmtree(root)
    assert listing["files"] == [str(root / r) for r in ("a.mp4", "sub/b.mp4",
                                                        "sub/deeper/c.txt")]
    assert listing["problems"] == [[str(root / "locked"), "permission denied"]]


def _list_unprivileged(root: Path) -> dict:
    """list_files(root) in a forked child that drops root privileges (user nobody)."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            got = list_files(root)
            os.write(write, json.dumps({"files": got.files,
                                        "problems": got.problems}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


def test_listing_skips_and_counts_files_under_excluded_folders(tmp_path):
    """The run's own output inside its input folder (``--input corpus --out corpus/out``):
    its files are skipped and counted, however the folder is spelled."""
    visible = _tree(tmp_path)
    for rel in ("out/clips/v/c1.mp4", "out/clips/v/c2.mp4", "out/summary.json"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"o")
    (tmp_path / "sub" / "link_to_clip.mp4").symlink_to(tmp_path / "out/clips/v/c1.mp4")
    (tmp_path.parent / f"{tmp_path.name}-alias").symlink_to(tmp_path)
    want = [str(tmp_path / r) for r in visible]
    spellings = [tmp_path / "out", f"{tmp_path}/out/", f"file://{tmp_path}/out",
                 tmp_path.parent / f"{tmp_path.name}-alias" / "out",
                 os.path.relpath(tmp_path / "out")]
    for out in spellings:
        listing = list_files(tmp_path, exclude=[out, "s3://elsewhere/run"])
        assert listing.files == want, out
        assert listing.excluded == 4 and listing.problems == [], out  # 3 files + the link
    assert list_files(tmp_path / "out", exclude=[tmp_path / "out"]).files == []
    # without the exclusion the output is listed as inputs (what a rerun used to do)
    assert len(list_files(tmp_path).files) == len(want) + 4


def test_remote_listing_matches_the_local_one(s3, tmp_path):
    visible = _tree(tmp_path)
    bucket = s3.bucket()
    s3.upload(tmp_path, f"{bucket}/in")
    s3.upload(tmp_path / "a.mp4", f"{bucket}/in-other/a.mp4")  # same prefix, another folder
    want = [f"{bucket}/in/{r}" for r in visible]
    for listing in (list_files(f"{bucket}/in"), list_files(f"{bucket}/in/")):
        assert listing.files == want and listing.problems == [] and listing.hidden == 3
    assert list_files(f"{bucket}/in/sub/b.mp4").files == [f"{bucket}/in/sub/b.mp4"]
    assert exists(f"{bucket}/in/sub") and not exists(f"{bucket}/in/zzz")
    with pytest.raises(OmniError, match="input not found"):
        list_files(f"{bucket}/missing")
    with pytest.raises(OmniError, match="input not found"):
        list_files("s3://omni-no-such-bucket-xyz/videos")


def test_remote_listing_skips_and_counts_files_under_the_output(s3, tmp_path):
    visible = _tree(tmp_path)
    bucket = s3.bucket()
    s3.upload(tmp_path, f"{bucket}/in")
    for rel in ("out/clips/c1.mp4", "out/summary.json", "output-not/x.mp4"):
        s3.fs().pipe_file(f"{bucket}/in/{rel}".removeprefix("s3://"), b"o")
    want = sorted([f"{bucket}/in/{r}" for r in visible] + [f"{bucket}/in/output-not/x.mp4"])
    for out in (f"{bucket}/in/out", f"{bucket}/in/out/", tmp_path / "out"):
        listing = list_files(f"{bucket}/in", exclude=[out])
        remote = str(out).startswith("s3://")
        assert listing.files == (want if remote else
                                 sorted(want + [f"{bucket}/in/out/clips/c1.mp4",
                                                f"{bucket}/in/out/summary.json"])), out
        assert listing.excluded == (2 if remote else 0)


def test_storage_urls_with_credentials_are_refused_without_echoing_them(tmp_path):
    urls = ("s3://AKIAXXXX:PASSWORD123@bucket/in", "s3://bucket/in?X-Amz-Signature=PASSWORD123",
            "https://user:PASSWORD123@host/videos/a.mp4")
    calls = (list_files, RunFolder, lambda u: local_input(u, tmp_path), exists)
    for url in urls:
        for call in calls:
            with pytest.raises(OmniError, match="must not carry credentials") as info:
                call(url)
            assert "PASSWORD123" not in str(info.value) and "***" in str(info.value)


def test_local_input_is_the_path_itself(tmp_path):
    f = tmp_path / "v.mp4"
    f.write_bytes(b"x")
    assert local_input(str(f)) == f and local_input(f"file://{f}") == f
    st = f.stat()
    assert stat_key(str(f)) == [st.st_size, st.st_mtime_ns]


def test_remote_input_is_cached_and_fetched_again_when_it_changes(s3, tmp_path):
    bucket = s3.bucket()
    fs = s3.fs()
    url = f"{bucket}/videos/talk.mp4"
    fs.pipe_file(url.removeprefix("s3://"), b"first version")
    cache = tmp_path / "cache"
    one = local_input(url, cache)
    assert one.read_bytes() == b"first version" and one.name == "talk.mp4"
    assert cache in one.parents and not list(one.parent.glob(".*"))  # no temporary left
    key = stat_key(url)
    mtime = one.stat().st_mtime_ns
    assert local_input(url, cache) == one and one.stat().st_mtime_ns == mtime  # reused
    fs.pipe_file(url.removeprefix("s3://"), b"other version")  # same size, new ETag
    assert stat_key(url) != key and stat_key(url)[0] == key[0]
    two = local_input(url, cache)
    assert two != one and two.read_bytes() == b"other version"
    with pytest.raises(OmniError, match="input not found"):
        local_input(f"{bucket}/videos/none.mp4", cache)


def test_read_bytes_reads_the_object_without_a_cache_copy(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "omni"))
    bucket = s3.bucket()
    s3.fs().pipe_file(f"{bucket}/crops/a.png".removeprefix("s3://"), b"crop bytes")
    assert read_bytes(f"{bucket}/crops/a.png") == b"crop bytes"
    assert not (tmp_path / "omni").exists()  # nothing cached: read once, kept nowhere
    (tmp_path / "b.png").write_bytes(b"local")
    assert read_bytes(tmp_path / "b.png") == b"local"
    assert read_bytes(f"file://{tmp_path / 'b.png'}") == b"local"
    with pytest.raises(FileNotFoundError):
        read_bytes(f"{bucket}/crops/none.png")
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "none.png")


def test_default_cache_is_under_omni_cache(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "omni"))
    bucket = s3.bucket()
    s3.fs().pipe_file(f"{bucket}/x.bin".removeprefix("s3://"), b"123")
    path = local_input(f"{bucket}/x.bin")
    assert (tmp_path / "omni" / "inputs") in path.parents
    assert RunFolder(f"{bucket}/run").root.parent == tmp_path / "omni" / "runs"


def test_local_run_folder_is_the_folder_itself(tmp_path):
    out = RunFolder(tmp_path / "run")
    assert not out.remote and out.root == tmp_path / "run"
    assert out.local("clips/v/c.mp4") == tmp_path / "run" / "clips" / "v" / "c.mp4"
    assert not (tmp_path / "run" / "clips").exists()  # reading makes no folder
    p = out.local("clips/v/c.mp4", fetch=False)  # writing does
    assert p == tmp_path / "run" / "clips" / "v" / "c.mp4" and p.parent.is_dir()
    p.write_bytes(b"clip")
    assert out.publish("clips/v/c.mp4") == str(p) and out.exists("clips/v/c.mp4")
    out.write_text("_parts/k/x.json", '{"a": 1}')
    assert out.read_text("_parts/k/x.json") == '{"a": 1}'
    assert not [f for f in (tmp_path / "run" / "_parts" / "k").iterdir() if f.name != "x.json"]
    assert out.list("_parts") == ["_parts/k/x.json"] and out.list("nope") == []
    out.remove("_parts")
    assert not out.exists("_parts") and out.exists("clips/v/c.mp4")
    with pytest.raises(FileNotFoundError):
        out.read_text("missing.json")
    assert pickle.loads(pickle.dumps(out)) == out
    assert RunFolder(f"file://{tmp_path}/run") == out


def test_remote_run_folder_stages_publishes_and_fetches(s3, tmp_path):
    bucket = s3.bucket()
    fs = s3.fs()
    node_a = RunFolder(f"{bucket}/run/", staging=tmp_path / "a")
    assert node_a.remote and node_a.out == f"{bucket}/run" and node_a.root == tmp_path / "a"
    p = node_a.local("clips/v/c.mp4", fetch=False)
    assert p == tmp_path / "a" / "clips" / "v" / "c.mp4"
    p.write_bytes(b"the clip")
    assert not node_a.exists("clips/v/c.mp4")  # written, not published yet
    assert node_a.publish("clips/v/c.mp4") == f"{bucket}/run/clips/v/c.mp4"
    assert fs.cat_file(f"{bucket}/run/clips/v/c.mp4".removeprefix("s3://")) == b"the clip"
    node_a.write_text("captions/v/c.json", '{"caption": "é"}')
    assert fs.cat_file(f"{bucket}/run/captions/v/c.json".removeprefix("s3://")).decode() \
        == '{"caption": "é"}'
    # another node (its own staging folder) sees what node A published
    node_b = pickle.loads(pickle.dumps(RunFolder(f"{bucket}/run", staging=tmp_path / "b")))
    assert node_b.exists("clips/v/c.mp4") and not node_b.exists("clips/v/d.mp4")
    got = node_b.local("clips/v/c.mp4")
    assert got == tmp_path / "b" / "clips" / "v" / "c.mp4" and got.read_bytes() == b"the clip"
    assert node_b.read_text("captions/v/c.json") == '{"caption": "é"}'
    assert not node_b.local("clips/v/none.mp4").exists()  # nothing to fetch: a path to write
    # node A recuts the clip (same size, other bytes): node B's staged copy is refreshed
    mine = node_a.local("clips/v/c.mp4", fetch=False)
    mine.write_bytes(b"new clip")
    node_a.publish("clips/v/c.mp4")
    assert node_b.local("clips/v/c.mp4").read_bytes() == b"new clip"
    inode = mine.stat().st_ino
    assert node_a.local("clips/v/c.mp4") == mine and mine.stat().st_ino == inode  # no download
    assert node_b.list("") == ["captions/v/c.json", "clips/v/c.mp4"]  # no .version files
    node_b.remove("clips")
    assert not node_a.exists("clips/v/c.mp4") and node_a.exists("captions/v/c.json")
    with pytest.raises(FileNotFoundError):
        node_b.read_text("missing.json")


def test_read_bytes_file_names_and_unstage(s3, tmp_path):
    """Small files are read whole from a path or a URL; the files of one folder are listed
    without its subfolders; a published file's staged copy can be dropped (a job writing
    more than a node holds) while the output keeps it."""
    bucket = s3.bucket()
    out = RunFolder(f"{bucket}/run", staging=tmp_path / "s")
    p = out.local("shards/a.bin", fetch=False)
    p.write_bytes(b"shard a")
    out.publish("shards/a.bin")
    assert read_bytes(out.url("shards/a.bin")) == b"shard a"
    out.unstage("shards/a.bin")
    assert not p.exists() and not list(p.parent.iterdir())  # nor its .version mark
    assert out.exists("shards/a.bin") and out.local("shards/a.bin").read_bytes() == b"shard a"
    with pytest.raises(FileNotFoundError):
        read_bytes(f"{bucket}/run/none.bin")
    out.write_text("top.json", "{}")
    # the files directly in a folder, not those of its subfolders
    assert file_names(out.url()) == {"top.json"}
    assert file_names(out.url("shards")) == {"a.bin"}
    assert file_names(f"{bucket}/nothing") == set()
    here = RunFolder(tmp_path / "here")
    f = here.local("a.bin", fetch=False)
    f.write_bytes(b"local")
    here.unstage("a.bin")  # a local output's file is the output: kept
    (tmp_path / "here" / "sub").mkdir()
    assert file_names(tmp_path / "here") == {"a.bin"} and file_names(tmp_path / "no") == set()
    assert read_bytes(f) == b"local" and read_bytes(f"file://{f}") == b"local"
    with pytest.raises(FileNotFoundError):
        read_bytes(tmp_path / "none.bin")


def test_credentials_are_never_printed(s3, tmp_path, capsys):
    from conftest import FAKE_AWS

    secret, key_id = FAKE_AWS["AWS_SECRET_ACCESS_KEY"], FAKE_AWS["AWS_ACCESS_KEY_ID"]
    bucket = s3.bucket()
    out = RunFolder(f"{bucket}/run", staging=tmp_path / "s")
    texts = [repr(out), pickle.dumps(out).decode("latin-1"), json.dumps(out.__dict__)]
    for call in (lambda: list_files("s3://omni-no-such-bucket-xyz/x"),
                 lambda: local_input("s3://omni-no-such-bucket-xyz/x.mp4", tmp_path),
                 lambda: RunFolder("s3://omni-no-such-bucket-xyz/run").publish("nothing.txt"),
                 lambda: stat_key("s3://omni-no-such-bucket-xyz/x.mp4")):
        with pytest.raises((OmniError, OSError)) as info:
            call()
        texts.append(str(info.value))
        texts.append(repr(info.value))
    captured = capsys.readouterr()
    texts += [captured.out, captured.err]
    for text in texts:
        assert secret not in text and key_id not in text, text


def test_resolve_keeps_absolute_locations_and_joins_relative_ones(tmp_path):
    from omni_core.storage import resolve

    assert resolve("s3://b/run", "clips/a.mp4") == "s3://b/run/clips/a.mp4"
    assert resolve("s3://b/run", "s3://c/other/x.wav") == "s3://c/other/x.wav"
    assert resolve("s3://b/run", "/abs/x.png") == "/abs/x.png"
    assert resolve(tmp_path, "clips/a.mp4") == str(tmp_path / "clips" / "a.mp4")
    assert resolve(tmp_path, "s3://c/x.wav") == "s3://c/x.wav"
    assert resolve(tmp_path, "file:///abs/y.png") == "file:///abs/y.png"
