"""Training throughput of the dual-stream model.

:func:`run` (any machine): the debug flavor's optimizer steps on the CPU, eager against
``torch.compile``, in tokens per second (both streams' tokens; one sample with one identity
per micro-batch of 2).

:func:`run_real_size` (a GPU): bf16 training steps of the release's blocks (width 3072,
FFN 14336, 24 heads) at the release's per-sample sequence (121 frames at 704x1280 with one
identity: 28,160 video + 188 audio tokens), with as many blocks as fit (``layers``, default
4 per stream), activation checkpointing off, SDPA attention (flash kernel in bf16), AdamW.
Reports step time, tokens/s, TFLOP/s from :func:`omni_model.flavors.forward_flops` (3 x
forward) and MFU against ``peak_tflops`` (989: H100 SXM dense bf16).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

import torch

from omni_model.flavors import Geometry, build_model, forward_flops, get_flavor
from omni_model.model import ModelArgs, OmniDiT


def _batch(args: ModelArgs, g: Geometry, batch: int, device: str, dtype: torch.dtype,
           n_refs: int = 1) -> tuple[Any, ...]:
    f, (h, w) = g.latent_frames, g.latent_size
    gen = torch.Generator().manual_seed(0)
    video = torch.randn(batch, args.video_channels, f + n_refs, h, w, generator=gen)
    audio = torch.randn(batch, g.audio_latents + n_refs * g.voice_latents, args.audio_channels,
                        generator=gen)
    text = torch.randn(batch, args.text_len, args.text_dim, generator=gen)
    t = torch.full((batch,), 500.0)
    return tuple(x.to(device, dtype) if x.is_floating_point() and x.dim() > 1 else x.to(device)
                 for x in (video, audio, t, text, text))


def _time_steps(model: OmniDiT, fwd: Any, inputs: tuple[Any, ...], steps: int, warmup: int,
                voices: tuple[int, ...], autocast: Any, cuda: bool) -> float:
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

    def step() -> None:
        with autocast:
            v, a = fwd(*inputs, n_image_refs=1, voice_lengths=voices)
        (v.float().square().mean() + a.float().square().mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def run(repeat: int = 1, steps: int = 5, batch: int = 2,
        modes: tuple[str, ...] = ("eager", "compiled")) -> dict[str, Any]:
    import contextlib

    fl = get_flavor("debug")
    g = fl.geometry
    lv, la = g.tokens(1)
    out: dict[str, Any] = {"flavor": "debug", "batch": batch, "tokens_per_sample": lv + la}
    for mode in modes:
        model = build_model(fl.args, seed=0)
        with torch.no_grad():  # a non-zero head, as after some training
            for p in model.parameters():
                p.add_(0.01)
        fwd = torch.compile(model) if mode == "compiled" else model
        inputs = _batch(fl.args, g, batch, "cpu", torch.float32)
        best = min(_time_steps(model, fwd, inputs, steps, 2, (g.voice_latents,),
                               contextlib.nullcontext(), False) for _ in range(repeat))
        out[mode] = {"step_s": round(best, 4),
                     "tokens_per_s": round(batch * (lv + la) / best, 1)}
    if "compiled" in out and "eager" in out:
        out["compiled_over_eager"] = round(out["compiled"]["tokens_per_s"]
                                           / out["eager"]["tokens_per_s"], 2)
    return out


def markdown(r: dict[str, Any]) -> str:
    return "\n".join([
        "## Training throughput, debug flavor (CPU)", "",
        f"Micro-batch {r['batch']} x {r['tokens_per_sample']} tokens (video + audio, one "
        f"identity): eager {r['eager']['tokens_per_s']} tokens/s ({r['eager']['step_s']} s "
        f"per step); torch.compile {r['compiled']['tokens_per_s']} tokens/s "
        f"({r['compiled']['step_s']} s); compiled / eager = {r['compiled_over_eager']}", ""])


def run_real_size(layers: int = 4, steps: int = 5, peak_tflops: float = 989.0,
                  compile: bool = False) -> dict[str, Any]:
    import torch.nn.functional  # noqa: F401  (SDPA)

    fl = get_flavor("dreamid-omni")
    args = replace(fl.args, layers=layers)
    g = fl.geometry
    lv, la = g.tokens(1)
    model = build_model(args, "cuda", seed=0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.001)
    fwd = torch.compile(model) if compile else model
    inputs = _batch(args, g, 1, "cuda", torch.float32)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16)
    torch.cuda.reset_peak_memory_stats()
    step_s = _time_steps(model, fwd, inputs, steps, 2, (g.voice_latents,), autocast, True)
    flops = 3 * forward_flops(args, lv, la)
    tflops = flops / step_s / 1e12
    return {"device": torch.cuda.get_device_name(), "layers_per_stream": layers,
            "dim": args.dim, "ffn": args.ffn_dim, "heads": args.heads,
            "video_tokens": lv, "audio_tokens": la, "text_tokens": args.text_len,
            "step_s": round(step_s, 4), "tokens_per_s": round((lv + la) / step_s, 1),
            "tflops": round(tflops, 1), "mfu": round(tflops / peak_tflops, 4),
            "peak_tflops": peak_tflops, "compile": compile,
            "peak_memory_gib": round(torch.cuda.max_memory_allocated() / 2**30, 1)}


def markdown_real_size(r: dict[str, Any]) -> str:
    return "\n".join([
        f"## Training throughput, release block shapes ({r['device']})", "",
        f"bf16 autocast, SDPA, AdamW; {r['layers_per_stream']} blocks per stream of width "
        f"{r['dim']}, FFN {r['ffn']}, {r['heads']} heads; one sample of {r['video_tokens']} "
        f"video + {r['audio_tokens']} audio tokens (+{r['text_tokens']} text); compile "
        f"{r['compile']}: {r['step_s']} s per step, {r['tokens_per_s']} tokens/s, "
        f"{r['tflops']} TFLOP/s, MFU {100 * r['mfu']:.1f} % of {r['peak_tflops']}; peak "
        f"memory {r['peak_memory_gib']} GiB", ""])
