"""Sampling: benchmark instances -> ``<instance_id>.mp4`` with audio, for ``omni eval``.

``omni generate --instances BENCH.parquet --out PRED [--checkpoint CK] --flavor F``: for each
instance of a ``bench_instances`` manifest, the caption's prompt text, identity images and
voices (and, per task, the source video or the driving audio) are encoded as in training
(:mod:`omni_model.latents`); noise of the flavor's geometry, drawn from a generator seeded by
(seed, instance id), is integrated by the flow solver (UniPC order 2 by default, Euler
selectable; 50 steps, shift 5) with per-stream multi-condition guidance; the latents are
decoded by the video VAE and the audio VAE + vocoder and written as an mp4.

Guidance (:class:`~omni_model.solvers.Guidance`, per stream; video 3.0 / 1.5, audio 4.0 /
2.0 by default) in one of two forms, batched into one forward pass per step:

* ``paper``: ``v(0,0) + w_T (v(T,0) - v(0,0)) + w_S (v(T,S) - v(T,0))`` -- three branches:
  negative prompt without references, the caption without references, the caption with
  references (paper.md);
* ``release``: the released inference's four passes, ``v_neg + w_T (v_pos - v_neg) + w_S
  (v_pos - v_pos without this stream's references)``, the negative branch keeping the
  references.

"Without references" zeroes the reference latents in place (their RoPE slots stay), the form
the condition dropout trains. Reference latents are re-inserted clean at every step and cut
off before decoding. RA2V's output keeps the driving audio as its sound track.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from omni_core.errors import OmniError
from omni_core.jobs import JobSummary, ResultStore, Stage, StagePlan, WorkItem

from .latents import AUDIO_NEGATIVE, VIDEO_NEGATIVE, Fit, _fit_length, voice_latents
from .model import OmniDiT, assemble
from .solvers import DEFAULT_GUIDANCE, Guidance, make_solver


@dataclass
class GenerateConfig:
    flavor: str = "debug"
    weights: str = "debug"  # encoders: debug | random | a weights folder
    #: release file, training checkpoint folder, weights entry (``dreamid-omni``) or None
    #: (random init)
    checkpoint: str | None = None
    checkpoint_weights: str = "ema"  # from a checkpoint folder: "ema" or "model"
    solver: str = "unipc"
    steps: int = 50
    shift: float = 5.0
    guidance: str = "paper"  # paper | release
    video_guidance: Guidance = field(default_factory=lambda: DEFAULT_GUIDANCE["video"])
    audio_guidance: Guidance = field(default_factory=lambda: DEFAULT_GUIDANCE["audio"])
    video_negative: str = VIDEO_NEGATIVE
    audio_negative: str = AUDIO_NEGATIVE
    voice_seconds: float = 1.0
    seed: int = 100
    device: str = "cpu"
    dtype: str = "float32"  # bfloat16 on a GPU


def load_model(cfg: GenerateConfig) -> OmniDiT:
    """The flavor's model with the configured weights (a seeded random init without any)."""
    from .adapter import checkpoint_state
    from .flavors import build_model, get_flavor

    args = get_flavor(cfg.flavor).args
    dtype = getattr(torch, cfg.dtype)
    if cfg.checkpoint is None:
        model = build_model(args, "cpu", seed=cfg.seed)
    else:
        model = build_model(args, "meta")
        root = None if cfg.weights in ("debug", "random") else cfg.weights
        sd, _ = checkpoint_state(cfg.checkpoint, model.state_dict(), cfg.checkpoint_weights,
                                 root)
        model.load_state_dict(sd, strict=True, assign=True)
    return model.to(device=cfg.device, dtype=dtype).eval()


@dataclass
class Conditions:
    """Everything one instance is conditioned on, in latent space (batch of 1)."""

    text: torch.Tensor  # (1, Lt, D)
    video_negative: torch.Tensor
    audio_negative: torch.Tensor
    ref_images: torch.Tensor  # (1, C, K, h, w)
    ref_voices: torch.Tensor  # (1, sum L, C)
    voice_lengths: tuple[int, ...]
    source_video: torch.Tensor | None = None  # (1, C, F, h, w)
    driving_audio: torch.Tensor | None = None  # (1, La, C)
    driving_wave: np.ndarray | None = None


class Generator:
    """The model, the encoders and the decoders of one run."""

    def __init__(self, cfg: GenerateConfig, model: OmniDiT | None = None) -> None:
        from .audio_vae import AudioVAE
        from .flavors import get_flavor
        from .text_encoder import TextEncoder
        from .video_vae import VideoVAE

        self.cfg = cfg
        self.flavor = get_flavor(cfg.flavor)
        self.model = model if model is not None else load_model(cfg)
        self.video_vae = VideoVAE.for_weights(cfg.weights, cfg.device)
        self.audio_vae = AudioVAE.for_weights(cfg.weights, cfg.device)
        self.text = TextEncoder.for_weights(cfg.weights, cfg.device, text_len=512)
        neg = self.text.encode([cfg.video_negative, cfg.audio_negative])
        self._neg = [self._pad(t) for t in neg]

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        from .data import pad_text

        return pad_text(t, self.flavor.args.text_len)[None]

    # conditions ----------------------------------------------------------------------------
    @torch.no_grad()
    def conditions(self, inst: dict[str, Any], root: Path) -> Conditions:
        from omni_core.captions import parse_caption
        from omni_core.media import load_audio, probe, read_frames, read_image

        g = self.flavor.geometry
        dev = self.cfg.device
        text = self._pad(self.text.encode([parse_caption(inst["caption"]).prompt_text()])[0])
        refs = [self.video_vae.encode_image(read_image(root / p), g.height, g.width).float()
                for p in inst["image_refs"]]
        voices = [voice_latents(self.audio_vae, load_audio(root / p, g.sample_rate), g,
                                self.cfg.voice_seconds, dev) for p in inst["audio_refs"]]
        if len(refs) != len(voices):
            raise OmniError(f"{len(refs)} identity images but {len(voices)} voices")
        cond = Conditions(text=text, video_negative=self._neg[0], audio_negative=self._neg[1],
                          ref_images=torch.cat(refs, 1)[None].cpu(),
                          ref_voices=torch.cat(voices, 0)[None],
                          voice_lengths=tuple(v.shape[0] for v in voices))
        n_audio = int(round(g.frames / g.fps * g.sample_rate))
        if inst.get("task") == "rv2av":
            if not inst.get("source_video"):
                raise OmniError("rv2av instance without a source video")
            src = root / inst["source_video"]
            info = probe(src)
            fit = Fit.cover(int(info.width), int(info.height), g.width, g.height)
            n = min(g.frames, int(info.n_frames or 0))
            frames = fit.frames(read_frames(src, list(range(n))))
            if n < g.frames:  # hold the last frame
                frames = np.concatenate([frames, np.repeat(frames[-1:], g.frames - n, 0)])
            x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
            cond.source_video = self.video_vae.encode(x[None].to(dev)).float().cpu()
        if inst.get("task") == "ra2v":
            if not inst.get("driving_audio"):
                raise OmniError("ra2v instance without a driving audio")
            w = load_audio(root / inst["driving_audio"], g.sample_rate)[:n_audio]
            w = np.pad(w, (0, n_audio - len(w)))
            cond.driving_wave = w
            lat = self.audio_vae.encode(torch.from_numpy(w)[None].to(dev))[0].float().cpu()
            cond.driving_audio = _fit_length(lat, g.audio_latents)[None]
        return cond

    # sampling ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, cond: Conditions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Video latents ``(1, C, F, h, w)`` and audio latents ``(1, La, C)`` (target only)."""
        a, g = self.flavor.args, self.flavor.geometry
        dev, dtype = self.cfg.device, getattr(torch, self.cfg.dtype)
        gen = torch.Generator().manual_seed(seed)
        h, w = g.latent_size
        xv = torch.randn(1, a.video_channels, g.latent_frames, h, w, generator=gen)
        xa = torch.randn(1, g.audio_latents, a.audio_channels, generator=gen)
        sv = make_solver(self.cfg.solver, self.cfg.steps, self.cfg.shift)
        sa = make_solver(self.cfg.solver, self.cfg.steps, self.cfg.shift)
        branches = self._branches(cond)
        nb = len(branches)
        text_v = torch.cat([b[0] for b in branches]).to(dev, dtype)
        text_a = torch.cat([b[1] for b in branches]).to(dev, dtype)
        refs_v = torch.cat([cond.ref_images * b[2] for b in branches]).to(dev, dtype)
        refs_a = torch.cat([cond.ref_voices * b[3] for b in branches]).to(dev, dtype)
        src_v = None if cond.source_video is None else cond.source_video.to(dev, dtype)
        src_a = None if cond.driving_audio is None else cond.driving_audio.to(dev, dtype)
        f, la = g.latent_frames, g.audio_latents
        for t in sv.timesteps:
            vin = assemble(xv.to(dev, dtype).expand(nb, -1, -1, -1, -1), refs_v,
                           None if src_v is None else src_v.expand(nb, -1, -1, -1, -1),
                           time_dim=2)
            ain = assemble(xa.to(dev, dtype).expand(nb, -1, -1), refs_a,
                           None if src_a is None else src_a.expand(nb, -1, -1), time_dim=1)
            pv, pa = self.model(vin, ain, t.expand(nb).to(dev), text_v, text_a,
                                n_image_refs=cond.ref_images.shape[2],
                                voice_lengths=cond.voice_lengths)
            vv = self._guide(pv[:, :, :f].float().cpu(), "video")
            va = self._guide(pa[:, :la].float().cpu(), "audio")
            xv = sv.step(vv, xv)
            xa = sa.step(va, xa)
        return xv, xa

    def _branches(self, c: Conditions) -> list[tuple[torch.Tensor, torch.Tensor, float, float]]:
        """(video text, audio text, keep images, keep voices) of each guidance branch."""
        if self.cfg.guidance == "paper":
            return [(c.video_negative, c.audio_negative, 0.0, 0.0), (c.text, c.text, 0.0, 0.0),
                    (c.text, c.text, 1.0, 1.0)]
        if self.cfg.guidance == "release":
            return [(c.text, c.text, 1.0, 1.0), (c.video_negative, c.audio_negative, 1.0, 1.0),
                    (c.text, c.text, 0.0, 1.0), (c.text, c.text, 1.0, 0.0)]
        raise OmniError(f"unknown guidance {self.cfg.guidance!r} (paper or release)")

    def _guide(self, out: torch.Tensor, stream: str) -> torch.Tensor:
        g = self.cfg.video_guidance if stream == "video" else self.cfg.audio_guidance
        if self.cfg.guidance == "paper":
            return g.combine(out[0:1], out[1:2], out[2:3])
        pos, neg = out[0:1], out[1:2]
        refneg = out[2:3] if stream == "video" else out[3:4]
        return neg + g.text * (pos - neg) + g.ref * (pos - refneg)

    # decoding ------------------------------------------------------------------------------
    @torch.no_grad()
    def write(self, path: Path, video: torch.Tensor, audio: torch.Tensor,
              cond: Conditions) -> Path:
        from omni_core.media import write_mp4

        g = self.flavor.geometry
        dev = self.cfg.device
        frames = self.video_vae.decode(video.to(dev)).float().cpu()[0]  # (3, T, H, W)
        frames = ((frames.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        frames = frames.permute(1, 2, 3, 0).numpy()[: g.frames]
        if cond.driving_wave is not None:
            wave = cond.driving_wave
        else:
            wave = self.audio_vae.to_wave(audio.to(dev)).float().cpu()[0].numpy()
        n = int(round(len(frames) / g.fps * g.sample_rate))
        wave = np.clip(np.pad(wave[:n], (0, max(0, n - len(wave)))), -1.0, 1.0)
        return write_mp4(path, frames, g.fps, wave.astype(np.float32), g.sample_rate)


JOB = "generate"


class GenerateStage(Stage):
    """Samples each instance into ``OUT/<instance_id>.mp4``; the model, encoders and decoders
    are loaded once (setup)."""

    name = "generate"

    @classmethod
    def preflight(cls, config: GenerateConfig, root: str) -> None:
        from .latents import Encoders

        Encoders.check(config.weights)

    def setup(self, config: GenerateConfig, root: str) -> None:
        self.cfg = config
        self.root = Path(root)
        self.store = ResultStore(self.out, JOB)
        self.gen = Generator(config)

    def process(self, item: WorkItem) -> None:
        iid = item.item
        cond = self.gen.conditions(item.data, self.root)
        v, a = self.gen.sample(cond, instance_seed(self.cfg.seed, iid))
        dest = self.out.root / f"{iid}.mp4"
        tmp = dest.with_name(f".{iid}.tmp.mp4")
        self.gen.write(tmp, v, a, cond)
        os.replace(tmp, dest)
        self.store.put("videos", iid, self.job.key, {"file": dest.name}, outputs=[dest.name])


def result_identity(cfg: GenerateConfig) -> dict[str, Any]:
    """What a generated video depends on: the sampler settings (not the device), the
    identity of the checkpoint (path, size and mtime of its files) and of the encoders'
    weights, and the stage's code version."""
    from omni_core.config import to_dict
    from omni_core.jobs import file_identity, weights_mode

    from .adapter import resolve_checkpoint

    settings = {k: v for k, v in to_dict(cfg).items() if k != "device"}
    ckpt: Any = "random init (seed)"
    if cfg.checkpoint is not None:
        root = None if cfg.weights in ("debug", "random") else cfg.weights
        ckpt = file_identity(resolve_checkpoint(cfg.checkpoint, root))
    return {"settings": settings, "checkpoint": ckpt, "weights": weights_mode(cfg.weights),
            "version": {GenerateStage.name: GenerateStage.version}}


def generate(instances: str | os.PathLike[str], out: str | os.PathLike[str],
             cfg: GenerateConfig, progress: bool = True) -> JobSummary:
    """Every instance of a ``bench_instances`` manifest -> ``OUT/<instance_id>.mp4``.

    A video is kept by a rerun only when it was made with the same result key (checkpoint,
    sampler settings, encoders, code version) and not replaced since; otherwise it is
    generated again (a folder then never mixes two models' videos). Failures are error rows
    (``OUT/errors.parquet``); ``OUT/summary.json`` says what made the folder.
    """
    from omni_core.config import to_dict
    from omni_core.jobs import (
        JobContext,
        collect_setup,
        result_key,
        run_in_process,
        summarize_items,
    )
    from omni_core.manifests import read_manifest
    from omni_core.storage import RunFolder

    t0 = time.perf_counter()
    path = Path(instances)
    table = read_manifest(path, "bench_instances")
    root = path.parent if path.is_file() else path
    folder = RunFolder(Path(out).resolve())
    folder.root.mkdir(parents=True, exist_ok=True)
    identity = result_identity(cfg)
    key = result_key(identity)
    store = ResultStore(folder, JOB)
    rows = table.to_dict("records")
    todo = [WorkItem(str(r["instance_id"]), r) for r in rows
            if not store.done("videos", str(r["instance_id"]), key)]
    job = JobContext(JOB, folder, key)
    items = run_in_process(job, todo, [StagePlan(GenerateStage, params={
        "config": cfg, "root": str(root)}, unit="videos")], progress=progress) if todo else []
    setup = collect_setup(job)
    written = sum(1 for i in items if i.failed is None)
    return summarize_items(
        job, items, [GenerateStage], setup, total=len(rows), skipped=len(rows) - len(todo),
        counts={"videos": written}, wall_s=time.perf_counter() - t0,
        details={"written": written, "instances": str(path),
                 "checkpoint": identity["checkpoint"]},
        config=to_dict(cfg), weights=cfg.weights, inputs=[str(path)],
        checkpoints=[identity["checkpoint"]] if cfg.checkpoint else [],
        notes=[f"{written} videos written, checkpoint "
               f"{cfg.checkpoint or 'none (random init)'}"])


def instance_seed(seed: int, instance_id: str) -> int:
    """The sampling seed of one instance: a hash of the run's seed and the instance id (the
    same video whatever else is generated, and in any order)."""
    import hashlib

    digest = hashlib.sha256(f"{seed}/{instance_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1
