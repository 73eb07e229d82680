"""Training on dummy latents: a killed ``omni train`` resumes exactly, stages chain, Ray
Train with two gloo workers. (Learning on the corpus latents: test_pipeline.py.)"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omni_core.config import load_config
from omni_model.data import LatentDataset, write_dummy_latents
from omni_model.flavors import build_model, get_flavor
from omni_model.train import TrainConfig, checkpoints, run_training

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "debug.yaml"


@pytest.fixture(scope="module")
def latents(tmp_path_factory):
    return write_dummy_latents(tmp_path_factory.mktemp("lat") / "lat", n=8)


def _cfg(out: Path, latents: Path, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, CONFIG, [
        f"out={out}", f"stages.1.data={latents}", f"stages.2.data={latents}",
        f"stages.3.data={latents}", "progress=false", *extra])


def _curve(out: Path, stage: int = 1) -> list[float]:
    lines = (out / f"stage{stage}" / "metrics.jsonl").read_text().splitlines()
    return [json.loads(ln)["loss"] for ln in lines]


def test_a_killed_run_resumes_the_exact_loss_curve(tmp_path, latents):
    steps = ["stages.1.steps=16", "checkpoint_every=4", "keep_checkpoints=2"]
    run_training(_cfg(tmp_path / "whole", latents, *steps), 1)
    whole = _curve(tmp_path / "whole")
    assert len(whole) == 16
    log = json.loads((tmp_path / "whole" / "stage1" / "metrics.jsonl").read_text()
                     .splitlines()[-1])
    for key in ("loss_video", "loss_audio", "task_loss", "grad_norm", "tokens_per_s",
                "tflops", "data_share", "position"):
        assert key in log
    assert log["mfu"] is None and log["peak_mem_gib"] is None  # no accelerator here

    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "omni_cli.main", "train", "--config", str(CONFIG), "--stage",
           "1", "--set", f"out={out}", "--set", f"stages.1.data={latents}",
           "--set", "progress=false", *sum((["--set", s] for s in steps), [])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ,
                                                            "PYTHONUNBUFFERED": "1"})
    ck = out / "stage1" / "checkpoints" / "step-0000008" / "trainer.json"
    deadline = time.monotonic() + 120
    while not ck.exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert ck.exists(), "the run never reached its step-8 checkpoint"
    partial = _curve(out)
    assert 8 <= len(partial) < 16

    rc = subprocess.run([*cmd, "--resume"], cwd=ROOT, capture_output=True, text=True)
    assert rc.returncode == 0, rc.stderr[-2000:]
    assert "resumed from" in rc.stdout
    assert _curve(out) == whole  # bit for bit
    ours = load_file(str(checkpoints(_cfg(out, latents), 1)[-1] / "ema.safetensors"))
    ref = load_file(str(checkpoints(_cfg(tmp_path / "whole", latents), 1)[-1]
                        / "ema.safetensors"))
    assert all(torch.equal(ours[k], ref[k]) for k in ref)
    assert [p.name for p in checkpoints(_cfg(out, latents), 1)] == ["step-0000012",
                                                                     "step-0000016"]


def test_stages_chain_and_stage_3_trains_the_tasks_of_its_data(tmp_path, latents):
    cfg = _cfg(tmp_path / "run", latents, "stages.1.steps=4", "checkpoint_every=100")
    first = run_training(cfg, 1)
    stage1 = (tmp_path / "run" / "stage1" / "metrics.jsonl").read_text().splitlines()
    assert {t for ln in stage1 for t in json.loads(ln)["task_loss"]} == {"r2av"}
    # a stage-3 folder dealt 4:3:3 (one identity: one shape); global batch 4 = 2 micro-batches
    # of 2 a step, so 5 steps are one epoch of 10 micro-batches, 4 r2av, 3 rv2av, 3 ra2v
    mixed = write_dummy_latents(tmp_path / "mixed", n=20, identities=(1,),
                                tasks={"r2av": 4, "rv2av": 3, "ra2v": 3})
    cfg3 = _cfg(tmp_path / "run", latents, f"stages.3.data={mixed}", "stages.3.steps=5",
                "checkpoint_every=100", f"init={first['checkpoint']}", "init_weights=model")
    third = run_training(cfg3, 3)
    assert third["last"]["step"] == 5
    data = LatentDataset(mixed, cfg3.micro_batch, 16, seed=cfg3.seed)
    order = [data.load(rows).task for rows in data.epoch_batches(0)]
    assert Counter(order) == {"r2av": 4, "rv2av": 3, "ra2v": 3}
    logs = [json.loads(ln) for ln in
            (tmp_path / "run" / "stage3" / "metrics.jsonl").read_text().splitlines()]
    for i, log in enumerate(logs):  # each step logs the loss of its micro-batches' tasks
        assert set(log["task_loss"]) == set(order[2 * i: 2 * i + 2])
        assert all(math.isfinite(v) for v in log["task_loss"].values())
    with pytest.raises(Exception, match="no latent folder"):
        run_training(load_config(TrainConfig, CONFIG, [f"out={tmp_path}"]), 2)


def test_ray_train_with_two_gloo_workers(tmp_path, latents):
    from omni_core.ray_helpers import shutdown_ray

    cfg = _cfg(tmp_path / "ray", latents, "stages.1.steps=3", "checkpoint_every=3",
               "ray.workers=2", "ray.include_dashboard=false", "ray.num_cpus=2",
               "ray.cpus_per_worker=0.5")
    try:
        result = run_training(cfg, 1)
    finally:
        shutdown_ray()
    assert result["last"]["step"] == 3
    ck = checkpoints(cfg, 1)[-1]
    state = json.loads((ck / "trainer.json").read_text())
    assert state["world"] == 2 and state["step"] == 3
    # global batch 4 = 2 workers x micro-batch 2. 8 samples in two shape buckets make 4
    # micro-batches an epoch, 2 per worker: after 3 steps each worker is 1 into epoch 1
    assert state["position"] == {"epoch": 1, "step": 1}
    assert len(load_file(str(ck / "model.safetensors"))) == len(build_model(
        get_flavor("debug").args, "meta").state_dict())


def test_fsdp2_trains_like_ddp(tmp_path, latents):
    """FSDP2 (fully_shard per block, gloo on CPUs) follows the DDP run's loss curve and ends
    at the same weights, and its checkpoint is the full (unsharded) state dict."""
    from omni_core.ray_helpers import shutdown_ray

    base = ["stages.1.steps=3", "checkpoint_every=3", "ray.workers=2", "ema_decay=0",
            "ray.include_dashboard=false", "ray.num_cpus=2", "ray.cpus_per_worker=0.5"]
    runs = {}
    for mode in ("ddp", "fsdp"):
        cfg = _cfg(tmp_path / mode, latents, *base, f"fsdp={'true' if mode == 'fsdp' else 'false'}")
        try:
            run_training(cfg, 1)
        finally:
            shutdown_ray()
        runs[mode] = (_curve(tmp_path / mode),
                      load_file(str(checkpoints(cfg, 1)[-1] / "model.safetensors")))
    (ddp_curve, ddp_w), (fsdp_curve, fsdp_w) = runs["ddp"], runs["fsdp"]
    assert fsdp_curve == pytest.approx(ddp_curve, rel=1e-4)
    assert set(fsdp_w) == set(ddp_w)
    assert all(fsdp_w[k].shape == ddp_w[k].shape for k in ddp_w)
    assert all(torch.allclose(fsdp_w[k], ddp_w[k], atol=1e-5) for k in ddp_w)
