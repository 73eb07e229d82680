"""Latent shards and the micro-batch stream."""

from __future__ import annotations

import pytest
import torch

from omni_core.errors import OmniError
from omni_model.data import (
    LatentDataset,
    LatentSample,
    Position,
    ShardWriter,
    read_index,
    write_dummy_latents,
)


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_dummy_latents(tmp_path_factory.mktemp("lat") / "lat", n=12)


def test_folder_layout_and_index(latents):
    idx = read_index(latents)
    assert len(idx) == 12 and idx.sample_id.is_unique
    assert sorted(p.name for p in latents.glob("shard-*.safetensors")) == [
        "shard-00000.safetensors", "shard-00001.safetensors", "shard-00002.safetensors"]
    assert (latents / "null_text.safetensors").is_file() and (latents / "meta.json").is_file()
    assert set(idx.n_refs) == {1, 2}
    assert all(list(v) == [31] * k for v, k in zip(idx.voice_lengths, idx.n_refs, strict=True))
    assert not list(latents.glob(".*tmp"))  # no temporaries left behind


def test_batches_have_one_shape_and_a_seeded_order(latents):
    ds = LatentDataset(latents, micro_batch=2, text_len=16, seed=3)
    epoch0 = ds.epoch_batches(0)
    assert epoch0 == LatentDataset(latents, 2, 16, seed=3).epoch_batches(0)
    assert epoch0 != ds.epoch_batches(1) and epoch0 != LatentDataset(
        latents, 2, 16, seed=4).epoch_batches(0)
    for rows in epoch0:
        b = ds.load(rows)
        assert b.video.shape[0] == 2 and b.text.shape == (2, 16, 32)
        assert b.ref_images.shape[2] == len(b.voice_lengths)
        assert b.ref_voices.shape[1] == sum(b.voice_lengths)
        assert torch.all(b.text[:, 7:] == 0)  # zero padding past the caption
    # ranks split each round of micro-batches, without overlap
    r0 = LatentDataset(latents, 2, 16, seed=3, rank=0, world=2)
    r1 = LatentDataset(latents, 2, 16, seed=3, rank=1, world=2)
    a = [rows for rows in r0.epoch_batches(0)[0::2]]
    b = [rows for rows in r1.epoch_batches(0)[1::2]]
    assert not set(sum(a, [])) & set(sum(b, []))
    assert r0.steps_per_epoch() == len(epoch0) // 2


def test_iteration_resumes_at_a_position(latents):
    ds = LatentDataset(latents, micro_batch=2, text_len=16)
    it = ds.iterate(Position())
    seen = [next(it) for _ in range(9)]  # crosses an epoch boundary (6 per epoch)
    assert seen[5][0] == Position(0, 6) and seen[6][0] == Position(1, 1)
    again = ds.iterate(seen[3][0])
    for pos, batch in seen[4:]:
        p2, b2 = next(again)
        assert p2 == pos and b2.sample_ids == batch.sample_ids
        assert torch.equal(b2.video, batch.video)


def test_invalid_samples_and_folders_are_refused(tmp_path, latents):
    c, f, h, w = 8, 3, 8, 8
    good = {"sample_id": "x", "video": torch.zeros(c, f, h, w), "audio": torch.zeros(9, 4),
            "text": torch.zeros(3, 32), "ref_images": torch.zeros(c, 1, h, w),
            "ref_voices": torch.zeros(4, 4), "voice_lengths": (4,),
            "video_mask": torch.zeros(f, h, w), "audio_mask": torch.zeros(9)}
    LatentSample(**good)
    with pytest.raises(OmniError, match="1 identity images but 2 voices"):
        LatentSample(**{**good, "voice_lengths": (2, 2)})
    with pytest.raises(OmniError, match="video_mask"):
        LatentSample(**{**good, "video_mask": torch.zeros(f, h, w + 1)})
    writer = ShardWriter(tmp_path / "w")
    writer.add(LatentSample(**good))
    with pytest.raises(OmniError, match="duplicate sample id"):
        writer.add(LatentSample(**good))
    with pytest.raises(OmniError, match="no index.parquet"):
        LatentDataset(tmp_path / "w", 1, 16)  # not closed: not a latent folder yet
    with pytest.raises(OmniError, match="null text embeddings missing"):
        writer.close({}, {})
    with pytest.raises(OmniError, match="make no full round"):
        LatentDataset(latents, micro_batch=8, text_len=16, world=2).epoch_batches(0)


def test_prefetch_keeps_order_and_reraises_errors(latents):
    import threading

    from omni_model.data import prefetch

    ds = LatentDataset(latents, micro_batch=2, text_len=16)
    plain = ds.iterate(Position())
    ahead = prefetch(ds.iterate(Position()), depth=2)
    for _ in range(8):
        (p1, b1), (p2, b2) = next(plain), next(ahead)
        assert p1 == p2 and b1.sample_ids == b2.sample_ids and torch.equal(b1.video, b2.video)
    ahead.close()  # stops and joins the reader thread, which was blocked on a full queue
    assert not [t for t in threading.enumerate() if t.name == "latent-prefetch"]

    def broken():
        yield 1
        raise OmniError("shard-00003 is truncated")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(OmniError, match="truncated"):
        next(it)
    assert list(prefetch(iter(range(5)), depth=0)) == list(range(5))


MIX = {"r2av": 4, "rv2av": 3, "ra2v": 3}


def test_micro_batches_hold_one_task_in_the_proportions_of_the_data(tmp_path):
    from collections import Counter

    folder = write_dummy_latents(tmp_path / "lat", n=40, tasks=MIX)
    idx = read_index(folder)
    assert Counter(idx.task) == {"r2av": 16, "rv2av": 12, "ra2v": 12}
    ds = LatentDataset(folder, micro_batch=2, text_len=16, seed=1)
    for epoch in (0, 1):
        batches = ds.epoch_batches(epoch)
        tasks = []
        for rows in batches:
            assert len(set(idx.task.iloc[rows])) == 1  # one task per micro-batch
            b = ds.load(rows)
            assert b.task == idx.task.iloc[rows[0]]
            assert b.task != "rv2av" or b.source_video is not None
            tasks.append(b.task)
        # every bucket (task x identity count) is even: all 40 samples are used, 4:3:3
        assert Counter(tasks) == {"r2av": 8, "rv2av": 6, "ra2v": 6}
    assert ds.epoch_batches(0) == LatentDataset(folder, 2, 16, seed=1).epoch_batches(0)
    assert ds.epoch_batches(0) != ds.epoch_batches(1)
    # a sequence is cycled through, a single task is every sample's
    assert list(read_index(write_dummy_latents(tmp_path / "seq", n=4, tasks=["ra2v", "r2av"]))
                .task) == ["ra2v", "r2av", "ra2v", "r2av"]
    assert set(read_index(write_dummy_latents(tmp_path / "one", n=2)).task) == {"r2av"}


def test_rv2av_without_a_source_video_is_refused_when_opened(tmp_path):
    folder = write_dummy_latents(tmp_path / "lat", n=4, tasks=["r2av", "rv2av"],
                                 with_source=False)
    with pytest.raises(OmniError, match=r"2 rv2av sample\(s\) without a source-video latent "
                       r"\(dummy-0001, dummy-0003\): run `omni latents` with source_video on"):
        LatentDataset(folder, 1, 16)
    # without rv2av samples no source is needed
    LatentDataset(write_dummy_latents(tmp_path / "ok", n=4, tasks=["r2av", "ra2v"],
                                      with_source=False), 1, 16)
    with pytest.raises(OmniError, match="unknown task"):
        write_dummy_latents(tmp_path / "bad", n=1, tasks="t2v")
    # a folder from before tasks were indexed: extract again (finished parts are reused)
    idx = read_index(folder)
    idx.drop(columns="task").to_parquet(folder / "index.parquet", index=False)
    with pytest.raises(OmniError, match="lacks task .*run it again"):
        LatentDataset(folder, 1, 16)
