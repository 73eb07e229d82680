"""The memory plan: its activations counted on the meta device match what torch's allocator
holds over a real CPU training step, and the strategies move the parts they should."""

from __future__ import annotations

from pathlib import Path

import pytest

from omni_model.memory import GIB, Strategy, measure_cpu_step, plan_memory

ROOT = Path(__file__).resolve().parents[2]
#: a debug-flavor sample large enough that activations dominate (about 0.1-0.3 GB)
SHAPE = {"frames": 17, "height": 256, "width": 256}


@pytest.mark.parametrize("lora_rank, checkpointing", [(None, False), (4, False), (None, True)])
def test_the_plan_matches_a_real_cpu_step_within_15_percent(lora_rank, checkpointing):
    measured = measure_cpu_step("debug", micro_batch=4, lora_rank=lora_rank,
                                checkpointing=checkpointing, **SHAPE)["peak_bytes"]
    plan = plan_memory("debug", Strategy(precision="fp32", micro_batch=4, lora_rank=lora_rank,
                                         checkpointing=checkpointing), **SHAPE)
    assert plan.parts["activations"] > 0.8 * plan.total  # the part being checked dominates
    assert abs(plan.total - measured) <= 0.15 * measured, (plan.total / 2**20, measured / 2**20)


def test_the_strategies_move_the_parts_they_should():
    base = plan_memory("small", Strategy())
    fsdp = plan_memory("small", Strategy(world=8, fsdp=True))
    for part in ("weights", "gradients", "optimizer", "EMA"):
        assert fsdp.parts[part] == pytest.approx(base.parts[part] / 8)
    # the trainer keeps blocks gathered through the step: the full weights are there at peak
    assert fsdp.parts["weights"] + fsdp.parts["gathered weights"] == pytest.approx(
        base.parts["weights"])
    ddp = plan_memory("small", Strategy(world=8))
    assert ddp.parts["DDP buckets"] == pytest.approx(base.parts["gradients"])
    lora = plan_memory("small", Strategy(lora_rank=16))
    assert lora.trainable < 0.05 * lora.params
    assert lora.parts["optimizer"] < 0.05 * base.parts["optimizer"]
    # a bf16 run keeps the frozen base's linear weights in bf16, with no autocast copy
    assert lora.parts["weights"] + lora.parts["autocast copies"] < 0.6 * (
        base.parts["weights"] + base.parts["autocast copies"])
    lora32 = plan_memory("small", Strategy(lora_rank=16, precision="fp32"))
    assert lora32.parts["weights"] == 4.0 * (lora32.params + lora32.trainable)
    ckpt = plan_memory("small", Strategy(checkpointing=True))
    assert ckpt.parts["activations"] < 0.25 * base.parts["activations"]
    sp = plan_memory("small", Strategy(world=4, sequence_parallel=4))
    assert sp.parts["activations"] == pytest.approx(base.parts["activations"] / 4)
    two = plan_memory("small", Strategy(micro_batch=2))
    assert two.parts["activations"] == pytest.approx(2 * base.parts["activations"], rel=0.01)
    fp32 = plan_memory("small", Strategy(precision="fp32"))
    assert "autocast copies" not in fp32.parts and fp32.parts["activations"] > \
        1.3 * base.parts["activations"]  # norms and modulation are float32 already
    assert base.fits(80) is (base.total <= 72 * GIB)


def test_the_released_shape_and_the_cli(capsys):
    from omni_cli.main import main

    plan = plan_memory("dreamid-omni", Strategy())
    assert (plan.video_tokens, plan.audio_tokens) == (28_160, 188)  # one identity
    assert 11.6e9 < plan.params < 11.7e9
    assert main(["train", "--plan", "--config", str(ROOT / "configs/train/dreamid-omni.yaml"),
                 "--set", "lora.enabled=true", "--set", "activation_checkpointing=true",
                 "--world", "1", "--gpu-gib", "80,141"]) == 0
    out = capsys.readouterr().out
    assert "LoRA r16" in out and "fits 80 GiB:" in out and "fits 141 GiB: yes" in out
