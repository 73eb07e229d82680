"""Flavors of the dual-stream model: ``debug``, ``small`` and ``dreamid-omni``.

Each flavor is a :class:`~omni_model.model.ModelArgs` plus the clip geometry it is meant for
(:class:`Geometry`). :func:`param_count` counts parameters exactly (on the meta device, no
memory); :func:`forward_flops` counts the matrix-multiply FLOPs of one forward pass over one
sample, so a trainer can report TFLOP/s and MFU (training = 3 x forward: the backward pass
costs twice the forward).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import ModelArgs, OmniDiT


@dataclass(frozen=True)
class Geometry:
    """One clip in latent space, and how it was made: ``frames`` at ``fps`` of ``height x
    width`` pixels, audio at ``sample_rate``; the video VAE strides (time, space) and the audio
    VAE's samples per latent. Derived sizes check themselves on construction."""

    frames: int = 121
    fps: float = 24.0
    height: int = 704
    width: int = 1280
    sample_rate: int = 16000
    video_stride: tuple[int, int] = (4, 16)  # Wan2.2 VAE: 4 in time, 16 in space
    audio_hop: int = 512  # MMAudio 16 kHz VAE: 256-sample mel hop x 2
    patch: tuple[int, int, int] = (1, 2, 2)
    voice_latents: int = 31  # one voice reference: 1 s of speech

    def __post_init__(self) -> None:
        st, ss = self.video_stride
        if (self.frames - 1) % st:
            raise ValueError(f"frames {self.frames} must be 1 + a multiple of {st}")
        if self.height % (ss * self.patch[1]) or self.width % (ss * self.patch[2]):
            raise ValueError(f"{self.height}x{self.width} is not a multiple of "
                             f"{ss * self.patch[1]}x{ss * self.patch[2]}")

    @property
    def latent_frames(self) -> int:
        return 1 + (self.frames - 1) // self.video_stride[0]

    @property
    def latent_size(self) -> tuple[int, int]:
        s = self.video_stride[1]
        return self.height // s, self.width // s

    @property
    def tokens_per_frame(self) -> int:
        h, w = self.latent_size
        return (h // self.patch[1]) * (w // self.patch[2])

    @property
    def audio_latents(self) -> int:
        """Audio latents of the clip: ``int(duration * rate / hop)`` (157 for 121 frames)."""
        return int(self.frames / self.fps * self.sample_rate / self.audio_hop)

    @property
    def audio_rope_scale(self) -> float:
        return self.latent_frames / self.audio_latents

    def tokens(self, n_refs: int = 0) -> tuple[int, int]:
        """(video tokens, audio tokens) of a sample with ``n_refs`` identities."""
        return ((self.latent_frames + n_refs) * self.tokens_per_frame,
                self.audio_latents + n_refs * self.voice_latents)


@dataclass(frozen=True)
class Flavor:
    name: str
    args: ModelArgs
    geometry: Geometry
    description: str


FLAVORS: dict[str, Flavor] = {}


def register(f: Flavor) -> Flavor:
    FLAVORS[f.name] = f
    return f


register(Flavor(
    "debug",
    ModelArgs(dim=64, ffn_dim=128, heads=2, layers=2, video_channels=8, text_dim=32,
              text_len=16, freq_dim=32, audio_rope_scale=3 / 35),
    # 9 frames at 8 fps (3 latent frames, 1.125 s: 35 audio latents at 16 kHz, 1 s voices)
    # of 64x64 pixels through the debug video VAE (8 latent channels, stride 8 in space):
    # the causal video VAE runs frame by frame, so the clip is kept short for CPUs
    Geometry(frames=9, fps=8.0, height=64, width=64, video_stride=(4, 8)),
    "tiny, random: trains on a CPU in seconds (tests, demo)"))
register(Flavor(
    "small",
    ModelArgs(dim=1024, ffn_dim=4096, heads=8, layers=24),
    Geometry(height=512, width=992),
    "about 1B: one GPU, training from scratch on the release's latents and text encoder"))
register(Flavor(
    "dreamid-omni",
    ModelArgs(),
    Geometry(),
    "the release: width 3072, FFN 14336, 24 heads, 30 blocks per stream (~11.7B); loads "
    "the DreamID-Omni and Ovi checkpoints (omni_model.adapter)"))


def get_flavor(name: str) -> Flavor:
    try:
        return FLAVORS[name]
    except KeyError:
        raise KeyError(f"unknown flavor {name!r}; choose one of {', '.join(FLAVORS)}") from None


def build_model(args: ModelArgs, device: str | torch.device = "cpu",
                seed: int | None = 0) -> OmniDiT:
    """A model of ``args``: on ``meta`` without memory (for counting, or to load a checkpoint
    with ``assign=True``), else initialised with :meth:`OmniDiT.init_weights`."""
    with torch.device(device):
        model = OmniDiT(args)
    if torch.device(device).type != "meta":
        model.init_weights(seed)
    return model


def param_count(args: ModelArgs) -> dict[str, int]:
    """Exact parameter counts: per stream, the fusion projections alone, and the total."""
    model = build_model(args, "meta")
    out = {"video": sum(p.numel() for p in model.video_model.parameters()),
           "audio": sum(p.numel() for p in model.audio_model.parameters())}
    out["fusion"] = sum(p.numel() for n, p in model.named_parameters() if "fusion" in n)
    out["total"] = out["video"] + out["audio"]
    return out


def forward_flops(args: ModelArgs, video_tokens: int, audio_tokens: int,
                  text_tokens: int | None = None) -> int:
    """Matrix-multiply FLOPs (2 per multiply-add) of one forward pass over one sample:
    linear layers, the attention products (``QK^T`` and ``AV``: 4 L_q L_k d per attention),
    the embeddings and heads. Norms, RoPE, activations and the timestep MLP are left out
    (they are per-token elementwise work, or per sample)."""
    d, f, n = args.dim, args.ffn_dim, args.layers
    lt = args.text_len if text_tokens is None else text_tokens
    total = 0
    for mine, other in ((video_tokens, audio_tokens), (audio_tokens, video_tokens)):
        per_block = (
            2 * mine * 4 * d * d  # self q, k, v, o
            + 4 * mine * mine * d  # self attention
            + 2 * mine * 2 * d * d  # cross q, o
            + 2 * lt * 2 * d * d  # text k, v
            + 4 * mine * lt * d  # text attention
            + 2 * other * 2 * d * d  # fusion k, v over the other stream
            + 4 * mine * other * d  # fusion attention
            + 2 * mine * 2 * d * f)  # FFN
        total += n * per_block + 2 * lt * (args.text_dim * d + d * d)  # + text embedding
    pv = args.video_channels * args.patch[0] * args.patch[1] * args.patch[2]
    total += 2 * video_tokens * pv * d * 2  # patch embedding + head
    k = args.audio_kernel
    total += 2 * audio_tokens * (args.audio_channels * d * k + 3 * d * args.audio_hidden * k
                                 + d * args.audio_channels)
    return total


def train_flops_per_token(args: ModelArgs, geometry: Geometry, n_refs: int = 1) -> float:
    """Training FLOPs (3 x forward) per token of a sample of ``geometry`` with ``n_refs``
    identities, tokens of both streams counted."""
    lv, la = geometry.tokens(n_refs)
    return 3 * forward_flops(args, lv, la) / (lv + la)
