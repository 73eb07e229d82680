"""Per-task model inputs, condition dropout and per-task loss weights."""

from __future__ import annotations

import pytest
import torch

from omni_model.data import LatentDataset, Position, write_dummy_latents
from omni_model.flow import interpolate
from omni_model.tasks import Dropout, StreamWeights, build_inputs

KEEP_ALL = Dropout(0.0, 0.0, 0.0, 0.0)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    folder = write_dummy_latents(tmp_path_factory.mktemp("lat") / "lat", n=4, identities=(2,))
    ds = LatentDataset(folder, micro_batch=2, text_len=16)
    _, b = next(ds.iterate(Position()))
    return b, ds.null("empty", 2)


def _inputs(batch, task, dropout=KEEP_ALL, masked=False, seed=0):
    b, null = batch
    g = torch.Generator().manual_seed(seed)
    sigma = torch.tensor([0.3, 0.8])
    nv, na = torch.randn(b.video.shape, generator=g), torch.randn(b.audio.shape, generator=g)
    return build_inputs(b, sigma, nv, na, task=task, masked_loss=masked, dropout=dropout,
                        null_text=null, generator=g), sigma, nv, na


def test_each_task_adds_its_structural_input_onto_the_target_only(batch):
    b, _ = batch
    f, la = b.video.shape[2], b.audio.shape[1]
    r2av, sigma, nv, na = _inputs(batch, "r2av")
    zv, za = interpolate(b.video, nv, sigma), interpolate(b.audio, na, sigma)
    assert torch.equal(r2av.video[:, :, :f], zv) and torch.equal(r2av.video[:, :, f:],
                                                                  b.ref_images)
    assert torch.equal(r2av.audio[:, :la], za) and torch.equal(r2av.audio[:, la:], b.ref_voices)
    assert torch.equal(r2av.target_video, nv - b.video)
    rv2av, *_ = _inputs(batch, "rv2av")
    assert torch.equal(rv2av.video[:, :, :f], zv + b.source_video)
    assert torch.equal(rv2av.audio, r2av.audio)
    ra2v, *_ = _inputs(batch, "ra2v")
    assert torch.equal(ra2v.audio[:, :la], za + b.audio)
    assert torch.equal(ra2v.video, r2av.video)
    assert r2av.loss_mask_video is None
    masked, *_ = _inputs(batch, "r2av", masked=True)
    assert masked.loss_mask_video.shape == (2, 1, *b.video.shape[2:])
    assert torch.equal(masked.loss_mask_video[:, 0], b.video_mask)
    with pytest.raises(ValueError, match="unknown task"):
        _inputs(batch, "t2v")


def test_dropout_zeroes_references_in_place_and_swaps_the_text(batch):
    b, null = batch
    f, la = b.video.shape[2], b.audio.shape[1]
    drop_refs, *_ = _inputs(batch, "r2av", Dropout(0.0, 1.0, 1.0, 0.0))
    assert drop_refs.video.shape == _inputs(batch, "r2av")[0].video.shape  # slots kept
    assert torch.all(drop_refs.video[:, :, f:] == 0) and torch.all(drop_refs.audio[:, la:] == 0)
    assert torch.equal(drop_refs.text_video, b.text)
    everything, *_ = _inputs(batch, "r2av", Dropout(0.0, 0.0, 0.0, 1.0))
    assert torch.equal(everything.text_video, null) and torch.equal(everything.text_audio, null)
    assert torch.all(everything.video[:, :, f:] == 0)
    assert all(bool(v.all()) for v in everything.dropped.values())
    # the same seed draws the same conditions (a resumed run drops what the first one did)
    half = Dropout(0.5, 0.5, 0.5, 0.0)
    x, *_ = _inputs(batch, "r2av", half, seed=5)
    y, *_ = _inputs(batch, "r2av", half, seed=5)
    assert all(torch.equal(x.dropped[k], y.dropped[k]) for k in x.dropped)


def test_stream_weights_per_task():
    w = StreamWeights(1.0, 0.5, per_task={"ra2v": {"audio": 0.0}})
    assert w.of("r2av") == (1.0, 0.5) and w.of("ra2v") == (1.0, 0.0)
