"""Ulysses sequence parallelism: with the tokens split over 2 or 4 gloo ranks, the model's
outputs and its gradients averaged over the ranks equal the single-rank ones; a
two-worker sequence-parallel training run follows the single-worker loss curve."""

from __future__ import annotations

import json
import os
import socket
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from omni_model.flavors import build_model, get_flavor

ROOT = Path(__file__).resolve().parents[2]
#: the debug flavor with 4 heads (head dim 16), so that 4 ranks divide them
ARGS = replace(get_flavor("debug").args, heads=4)


#: (video frames, height, width in patches; audio latents): token counts that divide 2 and 4
#: (64 + 40), and ones that divide neither (45 + 41: padded, the padding masked)
SHAPES = {"even": ((4, 4, 4), 40), "odd": ((5, 3, 3), 41)}


def _inputs(shape="even"):
    g = torch.Generator().manual_seed(3)
    pt, ph, pw = ARGS.patch
    (f, h, w), la = SHAPES[shape]
    video = torch.randn(2, ARGS.video_channels, f * pt, h * ph, w * pw, generator=g)
    audio = torch.randn(2, la, ARGS.audio_channels, generator=g)  # 8 of them a voice
    text = torch.randn(2, ARGS.text_len, ARGS.text_dim, generator=g)
    return video, audio, torch.tensor([300.0, 700.0]), text, text * 0.5


def _model(checkpointing=False):
    model = build_model(ARGS, seed=1)
    model.gradient_checkpointing = checkpointing
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():  # a non-zero head, or every gradient upstream of it would be 0
        for s in (model.video_model, model.audio_model):
            s.head.head.weight.copy_(torch.randn(s.head.head.weight.shape, generator=g) * 0.1)
    return model


def _step(model, shape="even"):
    v, a, t, tv, ta = _inputs(shape)
    pv, pa = model(v, a, t, tv, ta, n_image_refs=1, voice_lengths=(8,))
    loss = pv.square().mean() + 0.5 * pa.square().mean()
    loss.backward()
    return pv.detach(), pa.detach(), {n: p.grad.detach().clone()
                                      for n, p in model.named_parameters()}


def _worker(rank, world, port, out, shape, checkpointing):
    from omni_model.sequence_parallel import sequence_parallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        model = _model(checkpointing)
        with sequence_parallel():
            pv, pa, grads = _step(model, shape)
        for g in grads.values():  # what DDP does: the average over the ranks
            dist.all_reduce(g)
            g /= world
        if rank == 0:
            torch.save({"pv": pv, "pa": pa, "grads": grads}, out)
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("world, shape, checkpointing", [
    (2, "even", False), (4, "even", False), (2, "odd", False), (4, "odd", False),
    (2, "odd", True)])
def test_split_tokens_give_the_single_rank_outputs_and_gradients(world, shape, checkpointing,
                                                                 tmp_path):
    ref_v, ref_a, ref_g = _step(_model(), shape)
    out = tmp_path / "sp.pt"
    mp.spawn(_worker, args=(world, _free_port(), str(out), shape, checkpointing),
             nprocs=world, join=True)
    got = torch.load(out)
    torch.testing.assert_close(got["pv"], ref_v, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["pa"], ref_a, rtol=1e-5, atol=1e-6)
    assert set(got["grads"]) == set(ref_g)
    for name, g in ref_g.items():
        torch.testing.assert_close(got["grads"][name], g, rtol=1e-4, atol=1e-6, msg=name)
    assert any(g.abs().sum() > 0 for n, g in ref_g.items() if "blocks" in n)


def test_a_two_worker_sequence_parallel_run_follows_the_single_worker_curve(tmp_path):
    from omni_core.config import load_config
    from omni_model.data import write_dummy_latents
    from omni_model.train import TrainConfig, run_training

    # samples of one and two identities: 35 + 31 or 35 + 62 audio tokens (97: padded to 98)
    lat = write_dummy_latents(tmp_path / "lat", n=8)

    def curve(out, *extra):
        cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
            f"out={out}", f"stages.1.data={lat}", "stages.1.steps=6", "checkpoint_every=100",
            "progress=false", "ray.include_dashboard=false", *extra])
        run_training(cfg, 1)
        return [json.loads(line)["loss"] for line in
                (out / "stage1" / "metrics.jsonl").read_text().splitlines()]

    single = curve(tmp_path / "one")
    sp = curve(tmp_path / "sp", "ray.workers=2", "sequence_parallel=2")
    sp_fsdp = curve(tmp_path / "sp_fsdp", "ray.workers=2", "sequence_parallel=2", "fsdp=true")
    assert len(sp) == len(sp_fsdp) == len(single) == 6
    for a, b, c in zip(sp, sp_fsdp, single, strict=True):
        assert a == pytest.approx(c, rel=1e-4) and b == pytest.approx(c, rel=1e-4)
