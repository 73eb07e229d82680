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
    from omni_model.data import prefetch

    ds = LatentDataset(latents, micro_batch=2, text_len=16)
    plain = ds.iterate(Position())
    ahead = prefetch(ds.iterate(Position()), depth=2)
    for _ in range(8):
        (p1, b1), (p2, b2) = next(plain), next(ahead)
        assert p1 == p2 and b1.sample_ids == b2.sample_ids and torch.equal(b1.video, b2.video)
    ahead.close()  # stops the reader thread

    def broken():
        yield 1
        raise OmniError("shard-00003 is truncated")

    it = prefetch(broken())
    assert next(it) == 1
    with pytest.raises(OmniError, match="truncated"):
        next(it)
    assert list(prefetch(iter(range(5)), depth=0)) == list(range(5))
