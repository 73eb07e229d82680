"""Latent sets in object storage (a real S3 server on 127.0.0.1, moto): written to an
``s3://`` URL by ``ShardWriter`` and ``omni latents``, streamed by ``LatentDataset`` through a
bounded per-rank cache, trained on by one process (with an exact resume) and by two gloo
workers, with the same results as from a local folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from omni_core.config import load_config
from omni_core.errors import OmniError
from omni_core.ray_helpers import shutdown_ray
from omni_model.data import LatentDataset, Position, read_index, write_dummy_latents
from omni_model.train import TrainConfig, run_training

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "debug.yaml"
FILES = ("index.parquet", "meta.json", "null_text.safetensors")


@pytest.fixture(scope="module")
def sets(s3, tmp_path_factory):
    """The same dummy latent set (8 samples, 2 a shard: 4 shards) in a local folder and at
    an s3:// URL written there directly; (local folder, URL, staging folder of the write)."""
    root = tmp_path_factory.mktemp("remote_lat")
    local = write_dummy_latents(root / "local", n=8, shard_size=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMNI_CACHE", str(root / "writer-node"))
        url = write_dummy_latents(f"{s3.bucket()}/lat", n=8, shard_size=2)
    return local, url, root / "writer-node"


def _cache_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")]


def test_a_latent_set_written_to_s3_is_the_local_one_and_leaves_nothing_staged(sets, s3):
    local, url, staging = sets
    assert isinstance(url, str) and url.startswith("s3://")
    fs = s3.fs()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.removeprefix("s3://")))
    assert names == sorted([*FILES, *(f"shard-{i:05d}.safetensors" for i in range(4))])
    for name in names:  # byte for byte what the local writer made
        assert fs.cat_file(f"{url}/{name}".removeprefix("s3://")) == (local / name).read_bytes()
    assert not _cache_files(staging)  # every staged file was uploaded and dropped
    pd.testing.assert_frame_equal(read_index(url), read_index(local))


def test_the_dataset_over_the_url_yields_the_local_batches_within_its_bound(sets, tmp_path):
    local, url, _ = sets
    here = LatentDataset(local, micro_batch=2, text_len=16, seed=5)
    there = LatentDataset(url, micro_batch=2, text_len=16, seed=5, cache_dir=tmp_path / "c",
                          cache_shards=2)
    assert there.remote and there.cache is not None and here.cache is None
    assert there.epoch_batches(0) == here.epoch_batches(0)
    assert torch.equal(there.null("empty", 2), here.null("empty", 2))
    a, b = here.iterate(Position()), there.iterate(Position())
    most = 0
    for _ in range(3 * here.steps_per_epoch()):  # three epochs: shards leave and come back
        (pa, ba), (pb, bb) = next(a), next(b)
        assert pa == pb and ba.sample_ids == bb.sample_ids and ba.task == bb.task
        for name, t in vars(ba).items():
            if isinstance(t, torch.Tensor):
                assert torch.equal(t, getattr(bb, name)), name
        held = _cache_files(tmp_path / "c")
        most = max(most, len(held))
        assert len(held) <= 2
    assert most == 2 and there.cache.stats.evicted > 0
    assert len(there._open) <= 2  # no handle kept on an evicted shard


def test_each_rank_fetches_only_the_shards_of_its_micro_batches(s3, tmp_path):
    url = write_dummy_latents(f"{s3.bucket()}/one-a-shard", n=8, shard_size=1)
    seen = []
    for rank in (0, 1):
        ds = LatentDataset(url, 2, 16, seed=1, rank=rank, world=2,
                           cache_dir=tmp_path / f"rank-{rank}")
        it = ds.iterate(Position())
        for _ in range(ds.steps_per_epoch()):
            next(it)
        mine = {ds.index.shard[i] for rows in ds.epoch_batches(0)[rank::2] for i in rows}
        held = {p.name for p in _cache_files(tmp_path / f"rank-{rank}")}
        assert held == mine and ds.cache.stats.fetched == len(mine) == 4
        seen.append(held)
    assert not seen[0] & seen[1]  # nothing is fetched by both ranks


def test_an_incomplete_latent_set_is_refused_when_opened(sets, s3, tmp_path):
    local, _, _ = sets
    bucket = s3.bucket()
    s3.upload(local, f"{bucket}/lat")
    s3.fs().rm(f"{bucket}/lat/shard-00002.safetensors".removeprefix("s3://"))
    with pytest.raises(OmniError, match="1 shard.*missing.*shard-00002"):
        LatentDataset(f"{bucket}/lat", 2, 16, cache_dir=tmp_path / "c")
    with pytest.raises(OmniError, match="no index.parquet"):
        LatentDataset(f"{bucket}/nothing", 2, 16, cache_dir=tmp_path / "c")


def _cfg(out: Path, data: str | Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, CONFIG, [f"out={out}", f"stages.1.data={data}",
                                             "progress=false", *extra])


def _curve(out: Path) -> list[float]:
    lines = (out / "stage1" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def test_training_from_the_url_resumes_exactly_on_another_node(sets, tmp_path):
    """In one process: 6 steps from the URL give the local run's curve; a run stopped at its
    step-4 checkpoint and resumed with an empty cache (another node) continues it exactly."""
    local, url, _ = sets
    steps = ["stages.1.steps=6", "checkpoint_every=4", "data_cache.max_shards=2"]
    run_training(_cfg(tmp_path / "local", local, *steps), 1)
    whole = run_training(_cfg(tmp_path / "whole", url, *steps,
                              f"data_cache.folder={tmp_path / 'node1'}"), 1)
    assert _curve(tmp_path / "whole") == _curve(tmp_path / "local")
    assert whole["data_cache"]["fetched"] > 0 and whole["data_cache"]["evicted"] > 0
    part = ["stages.1.steps=4", "checkpoint_every=4", "data_cache.max_shards=2",
            f"data_cache.folder={tmp_path / 'node2'}"]
    run_training(_cfg(tmp_path / "resumed", url, *part), 1)
    more = [*steps, f"data_cache.folder={tmp_path / 'node3'}"]
    run_training(_cfg(tmp_path / "resumed", url, *more), 1, resume=True)
    assert _curve(tmp_path / "resumed") == _curve(tmp_path / "whole")


@pytest.mark.timeout(600)  # two Ray Train runs: minutes on 2 CPUs
def test_two_gloo_workers_train_from_the_url_as_from_the_folder(sets, tmp_path):
    """Ray Train, two workers (DDP, gloo): the loss curve from the URL, each rank streaming
    through a cache of two shards, is the local folder's."""
    local, url, _ = sets
    base = ["stages.1.steps=3", "checkpoint_every=3", "ray.workers=2",
            "ray.include_dashboard=false", "ray.num_cpus=2", "ray.cpus_per_worker=0.5"]
    curves = {}
    for name, data, extra in (
            ("local", local, []),
            ("s3", url, ["data_cache.max_shards=2", f"data_cache.folder={tmp_path / 'cache'}"])):
        try:
            result = run_training(_cfg(tmp_path / name, data, *base, *extra), 1)
        finally:
            shutdown_ray()
        assert result["last"]["step"] == 3
        curves[name] = _curve(tmp_path / name)
    assert curves["s3"] == curves["local"] and len(curves["s3"]) == 3
    assert result["data_cache"]["fetched"] > 0  # rank 0's
    for rank in (0, 1):  # each rank its own cache, within its bound
        held = _cache_files(tmp_path / "cache" / f"rank-{rank}")
        assert 0 < len(held) <= 2


@pytest.mark.timeout(900)  # with the session's curation run when alone: minutes on 2 CPUs
def test_omni_latents_into_s3_gives_the_local_latents(inpair_offline_run, s3, tmp_path,
                                                      monkeypatch):
    """``omni latents --out s3://...`` from a curation run: the index read from the bucket
    and every shard, byte for byte, are the local run's; the driver's node keeps no part or
    shard; a rerun from a node with nothing staged finds every part in the bucket."""
    from omni_model.latents import LatentsConfig, extract_latents

    cfg = LatentsConfig(storage_dtype="float32", shard_size=4)
    url = f"{s3.bucket()}/lat"
    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "node1"))
    try:
        here = extract_latents(inpair_offline_run, tmp_path / "local", cfg, progress=False)
        there = extract_latents(inpair_offline_run, url, cfg, progress=False)
    finally:
        shutdown_ray()
    assert there.out == url and there.items["failed"] == 0
    assert there.details["written"] == here.details["written"] == 6
    pd.testing.assert_frame_equal(read_index(url), read_index(tmp_path / "local"))
    fs = s3.fs()
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.removeprefix("s3://")))
    shards = [n for n in names if n.startswith("shard-")]
    assert shards == ["shard-00000.safetensors", "shard-00001.safetensors"]
    assert {*FILES, "summary.json", "errors.parquet"} <= set(names)
    for name in [*shards, "null_text.safetensors", "meta.json"]:
        assert fs.cat_file(f"{url}/{name}".removeprefix("s3://")) == \
            (tmp_path / "local" / name).read_bytes(), name
    staged = [p for p in (tmp_path / "node1").rglob("*.safetensors")]
    assert not staged  # parts and shards went to the bucket, not kept on the node

    monkeypatch.setenv("OMNI_CACHE", str(tmp_path / "node2"))
    try:
        again = extract_latents(inpair_offline_run, url, cfg, progress=False)
    finally:
        shutdown_ray()
    assert again.items["skipped"] == 6 and again.details["written"] == 6
    for name in shards:
        assert fs.cat_file(f"{url}/{name}".removeprefix("s3://")) == \
            (tmp_path / "local" / name).read_bytes()
