"""omni_model.shard_cache: a bounded LRU cache of a remote latent set's shards (a real S3
server on 127.0.0.1, moto)."""

from __future__ import annotations

import pytest

from omni_core.errors import OmniError
from omni_model.shard_cache import ShardCache


@pytest.fixture(scope="module")
def shards(s3):
    """A bucket folder with five 1000-byte 'shards' (a..e); its URL."""
    url = f"{s3.bucket()}/lat"
    fs = s3.fs()
    for name in "abcde":
        fs.pipe_file(f"{url}/{name}".removeprefix("s3://"), name.encode() * 1000)
    return url


def _files(cache: ShardCache) -> set[str]:
    return {p.name for p in cache.folder.rglob("*") if p.is_file()}


def test_least_recently_used_shards_leave_first_and_the_count_bound_holds(shards, tmp_path):
    closed: list[str] = []
    cache = ShardCache(shards, tmp_path / "c", max_bytes=10**9, max_shards=2,
                       on_evict=closed.append)
    got = cache.hold(["a"])
    assert got["a"].read_bytes() == b"a" * 1000
    cache.hold(["b"])
    cache.hold(["a"])  # a is now the most recently used
    cache.hold(["c"])
    assert _files(cache) == {"a", "c"} and closed == ["b"]
    cache.hold(["d", "a"])  # c leaves, a stays (asked for again)
    assert _files(cache) == {"a", "d"} and closed == ["b", "c"]
    assert cache.stats.to_dict() == {"hits": 2, "fetched": 4, "fetched_bytes": 4000,
                                     "evicted": 2}
    assert not [p for p in cache.folder.rglob(".*")]  # no temporaries left


def test_the_byte_bound_holds_and_the_shards_of_one_read_are_kept(shards, tmp_path):
    cache = ShardCache(shards, tmp_path / "c", max_bytes=2500)
    for name in "abcdeab":
        cache.hold([name])
        assert len(_files(cache)) <= 2 and cache.used_bytes() <= 2500
    # the shards of one micro-batch stay together even past the bound (documented)
    assert set(cache.hold(["c", "d", "e"])) == {"c", "d", "e"}
    assert _files(cache) == {"c", "d", "e"}
    cache.hold(["a"])
    assert len(_files(cache)) == 2  # back within the bound at the next read


def test_an_earlier_runs_shards_are_reused_or_leave_first(shards, s3, tmp_path):
    first = ShardCache(shards, tmp_path / "c", max_bytes=10**9)
    first.hold(["a", "b"])
    # another run (a resumed one) over the same folder: a is reused, b leaves first
    again = ShardCache(shards, tmp_path / "c", max_bytes=10**9, max_shards=2)
    assert again.count() == 2
    again.hold(["a"])
    assert again.stats.hits == 1 and again.stats.fetched == 0
    again.hold(["c"])
    assert _files(again) == {"a", "c"} and again.stats.fetched == 1
    # a shard rewritten in place (same size, new ETag) is fetched again, not reused
    s3.fs().pipe_file(f"{shards}/a".removeprefix("s3://"), b"A" * 1000)
    third = ShardCache(shards, tmp_path / "c", max_bytes=10**9, max_shards=2)
    assert third.hold(["a"])["a"].read_bytes() == b"A" * 1000
    assert third.stats.fetched == 1 and len(_files(third)) == 2
    s3.fs().pipe_file(f"{shards}/a".removeprefix("s3://"), b"a" * 1000)


def test_a_missing_shard_and_a_bad_bound_are_clear_errors(shards, tmp_path):
    cache = ShardCache(shards, tmp_path / "c", max_bytes=10**9)
    with pytest.raises(OmniError, match="shard missing"):
        cache.hold(["nope"])
    with pytest.raises(OmniError, match="positive size bound"):
        ShardCache(shards, tmp_path / "d", max_bytes=0)
