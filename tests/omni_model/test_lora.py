"""LoRA fine-tuning: the adapted model starts as its base, only adapters train and are saved,
the merge gives the same outputs, a resume is exact, checkpoints load as base + adapters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from omni_core.config import load_config
from omni_core.errors import OmniError
from omni_model.adapter import checkpoint_state, merge_checkpoint
from omni_model.data import write_dummy_latents
from omni_model.flavors import build_model, get_flavor
from omni_model.lora import LoRAConfig, LoRALinear, adapter_state, apply_lora, merge_lora
from omni_model.train import TrainConfig, checkpoints, run_training

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "debug.yaml"
ARGS = get_flavor("debug").args


def _pretrained(seed: int = 0) -> torch.nn.Module:
    """The debug model with a non-zero output head (a random init predicts 0 everywhere,
    which would make every adapter invisible)."""
    model = build_model(ARGS, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for stream in (model.video_model, model.audio_model):
            w = stream.head.head.weight
            w.copy_(torch.randn(w.shape, generator=g) * 0.05)
    return model


def _inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    pt, ph, pw = ARGS.patch
    video = torch.randn(1, ARGS.video_channels, 2 * pt, 4 * ph, 4 * pw, generator=g)
    audio = torch.randn(1, 12, ARGS.audio_channels, generator=g)
    text = torch.randn(1, ARGS.text_len, ARGS.text_dim, generator=g)
    return video, audio, torch.tensor([500.0]), text, text


def test_the_adapted_model_starts_as_its_base_and_only_adapters_train():
    model = _pretrained()
    x = _inputs()
    before = [t.clone() for t in model(*x)]
    base = {k: v.clone() for k, v in model.state_dict().items()}
    names = apply_lora(model, LoRAConfig(enabled=True, rank=4, alpha=8.0))
    per_block = 4 + 6 + 2  # self q k v o, cross q k v o k_fusion v_fusion, ffn in and out
    assert len(names) == 2 * ARGS.layers * per_block
    after = model(*x)
    assert all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # B = 0
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith((".lora_a", ".lora_b")) for n in trainable)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        v, a = model(*x)
        (v.square().mean() + a.square().mean()).backward()
        opt.step()
        opt.zero_grad()
    state = model.state_dict()
    for k, v in base.items():  # the frozen base: bit for bit
        wrapped = k.rsplit(".", 1)
        key = k if k in state else f"{wrapped[0]}.base.{wrapped[1]}"
        assert torch.equal(state[key], v), k
    assert any(v.abs().sum() > 0 for k, v in adapter_state(model).items()
               if k.endswith("lora_b"))


def test_merged_weights_give_the_adapted_outputs():
    model = _pretrained()
    apply_lora(model, LoRAConfig(enabled=True, rank=8, alpha=16.0, streams=["video"],
                                 blocks=[0], targets=["self_attn.*", "ffn.*"]))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.normal_(0, 0.05)
    x = _inputs(3)
    with torch.no_grad():
        adapted = model(*x)
        assert merge_lora(model) == 6
        merged = model(*x)
    assert not any(isinstance(m, LoRALinear) for m in model.modules())
    for a, b in zip(adapted, merged, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert set(model.state_dict()) == set(build_model(ARGS, "meta").state_dict())
    with pytest.raises(OmniError, match="match no projection"):
        apply_lora(_pretrained(), LoRAConfig(enabled=True, targets=["nothing.*"]))
    with pytest.raises(ValueError, match="lora.rank"):
        LoRAConfig(rank=0)


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory):
    """A full-weight base (8 steps), then LoRA stage-2 runs from it: 8 steps straight, and 4
    steps then resumed to 8."""
    root = tmp_path_factory.mktemp("lora")
    lat = write_dummy_latents(root / "lat", n=8)

    def cfg(out, *extra):
        return load_config(TrainConfig, CONFIG, [
            f"out={out}", f"stages.1.data={lat}", f"stages.2.data={lat}", "progress=false",
            "checkpoint_every=4", "keep_checkpoints=3", *extra])

    base = run_training(cfg(root / "base", "stages.1.steps=8"), 1)["checkpoint"]
    lora = ["lora.enabled=true", "lora.rank=4", "lora.alpha=8", f"init={base}",
            "init_weights=model"]
    whole = run_training(cfg(root / "whole", "stages.2.steps=8", *lora), 2)
    run_training(cfg(root / "cut", "stages.2.steps=4", *lora), 2)
    resumed = run_training(cfg(root / "cut", "stages.2.steps=8", *lora), 2, resume=True)
    return {"root": root, "lat": lat, "base": base, "whole": whole, "resumed": resumed,
            "cfg": cfg, "lora": lora}


def _curve(out: Path, stage: int) -> list[float]:
    return [json.loads(line)["loss"] for line in
            (out / f"stage{stage}" / "metrics.jsonl").read_text().splitlines()]


def test_a_lora_checkpoint_holds_the_adapters_only_and_resumes_exactly(lora_runs):
    root = lora_runs["root"]
    ck = Path(lora_runs["whole"]["checkpoint"])
    assert sorted(p.name for p in ck.iterdir()) == ["adapters.safetensors", "ema.safetensors",
                                                    "optimizer.pt", "trainer.json"]
    adapters = load_file(str(ck / "adapters.safetensors"))
    assert adapters and all(k.endswith((".lora_a", ".lora_b")) for k in adapters)
    full = Path(lora_runs["base"]) / "model.safetensors"
    ratio = (ck / "adapters.safetensors").stat().st_size / full.stat().st_size
    trainable = sum(v.numel() for v in adapters.values())
    total = sum(v.numel() for v in load_file(str(full)).values())
    # the file is the adapters' share of the parameters (plus its header of names)
    assert trainable / total < ratio < 1.2 * trainable / total and ratio < 0.05
    # 4 steps, killed, resumed to 8: the same curve and the same adapters, bit for bit
    assert _curve(root / "cut", 2) == _curve(root / "whole", 2)
    again = load_file(str(Path(lora_runs["resumed"]["checkpoint"]) / "adapters.safetensors"))
    assert all(torch.equal(again[k], adapters[k]) for k in adapters)


def test_a_lora_checkpoint_loads_as_base_plus_adapters_and_merges(lora_runs, tmp_path):
    ck = lora_runs["whole"]["checkpoint"]
    template = build_model(ARGS, "meta").state_dict()
    merged, what = checkpoint_state(ck, template, "model")
    assert "LoRA" in what and set(merged) == set(template)
    # by hand: the base, the adapters, no merge
    model = build_model(ARGS, "meta")
    model.load_state_dict(load_file(str(Path(lora_runs["base"]) / "model.safetensors")),
                          assign=True)
    apply_lora(model, LoRAConfig(enabled=True, rank=4, alpha=8.0))
    model.load_state_dict(load_file(str(Path(ck) / "adapters.safetensors")), strict=False)
    plain = build_model(ARGS, "meta")
    plain.load_state_dict(merged, assign=True)
    x = _inputs(5)
    with torch.no_grad():
        for a, b in zip(model(*x), plain(*x), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    # the base did not move: the merged weights minus the adapters' update are the base's
    base = load_file(str(Path(lora_runs["base"]) / "model.safetensors"))
    untouched = [k for k in base if "blocks" not in k]
    assert all(torch.equal(merged[k], base[k]) for k in untouched)
    # omni train --merge: a plain checkpoint folder with the same weights (EMA by default)
    from omni_cli.main import main

    assert main(["train", "--merge", ck, "--out", str(tmp_path / "merged")]) == 0
    written = load_file(str(tmp_path / "merged" / "model.safetensors"))
    ema, _ = checkpoint_state(ck, template, "ema")
    assert all(torch.equal(written[k], ema[k]) for k in ema)
    again, what = checkpoint_state(str(tmp_path / "merged"), template, "ema")
    assert "LoRA" not in what and all(torch.equal(again[k], ema[k]) for k in ema)
    assert merge_checkpoint(ck, tmp_path / "m2", "model").joinpath("model.safetensors").is_file()
    # omni generate's loader takes the LoRA checkpoint as it is: base + EMA adapters
    from omni_model.generate import GenerateConfig, load_model

    loaded = load_model(GenerateConfig(checkpoint=ck)).state_dict()
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)


def test_lora_stages_chain_and_refuse_a_mismatched_resume(lora_runs):
    cfg = lora_runs["cfg"]
    root = lora_runs["root"]
    # stage 3 from the LoRA stage-2 checkpoint: its base is stage 2's merged weights
    third = run_training(cfg(root / "chain", f"stages.3.data={lora_runs['lat']}",
                             "stages.3.steps=2", "lora.enabled=true",
                             f"init={lora_runs['whole']['checkpoint']}"), 3)
    assert third["last"]["step"] == 2
    assert (Path(third["checkpoint"]) / "adapters.safetensors").is_file()
    with pytest.raises(OmniError, match="holds LoRA adapters"):
        run_training(cfg(root / "whole", "stages.2.steps=12",
                         f"init={lora_runs['base']}", "init_weights=model"), 2, resume=True)
    assert [p.name for p in checkpoints(cfg(root / "whole", *lora_runs["lora"]), 2)] == [
        "step-0000004", "step-0000008"]


def test_a_bf16_frozen_base_runs_under_autocast_and_is_refused_without():
    from omni_model.lora import frozen_linear_to

    model = _pretrained()
    apply_lora(model, LoRAConfig(enabled=True, rank=4, alpha=8.0))
    x = _inputs(7)
    with torch.no_grad():
        ref = model(*x)
    cast = frozen_linear_to(model, torch.bfloat16)
    frozen = [p for m in model.modules() if isinstance(m, torch.nn.Linear)
              for p in m.parameters(recurse=False) if not p.requires_grad]
    assert cast == sum(p.numel() for p in frozen) and all(p.dtype == torch.bfloat16
                                                          for p in frozen)
    assert all(p.dtype == torch.float32 for n, p in model.named_parameters() if "lora" in n)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(*x)
        (out[0].float().square().mean() + out[1].float().square().mean()).backward()
    for a, b in zip(ref, out, strict=True):
        assert (b.float() - a).abs().max() < 0.05 * a.abs().max() + 1e-3
    grads = [p.grad for n, p in model.named_parameters() if "lora" in n]
    assert grads and all(g is not None and g.dtype == torch.float32 for g in grads)
    latents = write_dummy_latents(Path(__import__("tempfile").mkdtemp()) / "lat", n=4)
    cfg = load_config(TrainConfig, CONFIG, [f"stages.1.data={latents}", "progress=false",
                                             "lora.enabled=true", "lora.base_dtype=bfloat16",
                                             f"out={latents.parent / 'out'}"])
    with pytest.raises(OmniError, match="base_dtype bfloat16 needs bf16 autocast on a GPU"):
        run_training(cfg, 1)
