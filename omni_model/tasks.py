"""Training tasks, condition dropout, and the model inputs of one micro-batch.

The three tasks of paper.md differ only in the structural inputs added onto the target:

* ``r2av``: none;
* ``rv2av``: the latents of the target video with the subject region masked (``V_src``);
* ``ra2v``: the target audio's latents as the driving audio (``A_dri``).

Each sample's task comes from the data: the curation's ``samples`` row (``task``), carried
into the latent index by ``omni latents``; a micro-batch holds samples of one task
(:class:`~omni_model.data.LatentDataset`, ``Batch.task``). Stage 1 (in-pair) and stage 2
(cross-pair) samples are R2AV; stage 3's sample table deals R2AV : RV2AV : RA2V = 4 : 3 : 3,
so its micro-batches come in that ratio. Stage 1 masks the loss where the references were
cut from the target (``1 - M``); stages 2 and 3 take the full loss.

Condition dropout trains the branches the three-term guidance needs: the text replaced by the
empty prompt's embedding, the identity images and/or the voices replaced by zeros (at the same
positions, so Syn-RoPE slots are unchanged -- the release's guidance drops references the same
way). Draws are per sample and seeded by the step, so a resumed run drops the same conditions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from omni_core.tasks import TASKS

from .data import Batch
from .model import assemble

__all__ = ["TASKS", "Dropout", "ModelInputs", "StreamWeights", "build_inputs"]


@dataclass
class Dropout:
    """Per-sample probabilities (``train.dropout``): ``text`` (caption -> empty prompt),
    ``identity`` (image references -> zeros), ``timbre`` (voices -> zeros), ``all`` (all
    three at once: the unconditional branch)."""

    text: float = 0.1
    identity: float = 0.1
    timbre: float = 0.1
    all: float = 0.05


@dataclass
class StreamWeights:
    """Loss weight of each stream (``l_v``, ``l_a``), and per task (``ra2v`` drives the audio
    with the target itself, so its audio loss can be turned down)."""

    video: float = 1.0
    audio: float = 1.0
    per_task: dict[str, dict[str, float]] = field(default_factory=dict)

    def of(self, task: str) -> tuple[float, float]:
        t = self.per_task.get(task, {})
        return t.get("video", self.video), t.get("audio", self.audio)


@dataclass
class ModelInputs:
    """What one training step feeds the model and the loss."""

    task: str
    video: torch.Tensor  # assembled: [z_v ; refs] + [V_src ; 0]
    audio: torch.Tensor
    text_video: torch.Tensor
    text_audio: torch.Tensor
    n_image_refs: int
    voice_lengths: tuple[int, ...]
    target_video: torch.Tensor  # velocity targets of the target part
    target_audio: torch.Tensor
    loss_mask_video: torch.Tensor | None  # 1 = no loss; broadcasts over channels
    loss_mask_audio: torch.Tensor | None
    dropped: dict[str, torch.Tensor]  # per-sample booleans: text, identity, timbre


def build_inputs(batch: Batch, sigma: torch.Tensor, noise_v: torch.Tensor,
                 noise_a: torch.Tensor, *, task: str, masked_loss: bool, dropout: Dropout,
                 null_text: torch.Tensor, generator: torch.Generator) -> ModelInputs:
    """Noisy targets, structural inputs and references of ``task``, with condition dropout.

    ``sigma`` ``(B,)``; ``noise_*`` shaped like the targets; ``null_text`` ``(B, Lt, D)`` (the
    empty prompt). All random draws come from ``generator``.
    """
    from .flow import interpolate, velocity

    b = batch.size
    u = torch.rand(4, b, generator=generator)
    drop_all = u[3] < dropout.all
    drop = {"text": (u[0] < dropout.text) | drop_all,
            "identity": (u[1] < dropout.identity) | drop_all,
            "timbre": (u[2] < dropout.timbre) | drop_all}

    def keep(x: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        m = (~dropped).to(x.dtype).reshape(-1, *([1] * (x.dim() - 1)))
        return x * m

    zv = interpolate(batch.video, noise_v, sigma)
    za = interpolate(batch.audio, noise_a, sigma)
    src_v = src_a = None
    if task == "rv2av":
        if batch.source_video is None:
            raise ValueError("rv2av needs source-video latents in every sample of the batch")
        src_v = batch.source_video
    elif task == "ra2v":
        src_a = batch.audio
    elif task != "r2av":
        raise ValueError(f"unknown task {task!r}")
    video = assemble(zv, keep(batch.ref_images, drop["identity"]), src_v, time_dim=2)
    audio = assemble(za, keep(batch.ref_voices, drop["timbre"]), src_a, time_dim=1)
    text_drop = drop["text"].reshape(-1, 1, 1)
    text = torch.where(text_drop, null_text.to(batch.text.dtype), batch.text)
    mv = ma = None
    if masked_loss:
        mv = batch.video_mask[:, None]  # (B, 1, F, H, W)
        ma = batch.audio_mask[:, :, None]  # (B, L, 1)
    return ModelInputs(
        task=task, video=video, audio=audio, text_video=text, text_audio=text,
        n_image_refs=batch.ref_images.shape[2], voice_lengths=batch.voice_lengths,
        target_video=velocity(batch.video, noise_v), target_audio=velocity(batch.audio, noise_a),
        loss_mask_video=mv, loss_mask_audio=ma, dropped=drop)
