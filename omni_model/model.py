"""The Symmetric Conditional dual-stream DiT (paper.md, "Symmetric conditional DiT").

Two streams of Wan-style DiT blocks of equal width -- video over patchified Wan2.2-VAE latents,
audio over MMAudio-VAE latents -- run side by side and exchange information in every block:

* self-attention with RMSNorm on q and k and RoPE (3-D for video, scaled 1-D for audio);
* cross-attention whose query attends to the text tokens (no RoPE) and, through its own key /
  value projections, to the other stream (with RoPE on both sides): the two attention outputs
  are summed before the shared output projection;
* a GELU FFN; adaLN shift / scale / gate from the timestep embedding around self-attention and
  FFN.

Per block the order is: audio self-attention, video self-attention, audio cross-attention (text
+ video), audio FFN, video cross-attention (text + audio as it was after its self-attention),
video FFN; both directions of the exchange see the other stream after self-attention.

Symmetric conditioning happens in latent space, before the patch embedding:
``X_v = [z_v ; E_v(I)] + [E_v(V_src) ; 0]`` and ``X_a = [z_a ; E_a(A)] + [E_a(A_dri) ; 0]``:
reference latents (one latent frame per identity image, a slice of latents per voice) follow
the target along time, and Syn-RoPE (:mod:`omni_model.rope`) puts reference ``k`` of both
streams in the same far-away slot. See :func:`assemble` (and :mod:`omni_model.tasks` for the
per-task inputs). With neither a source video nor a driving audio the added term is zero and
the model is the R2AV model.

Module names follow the released checkpoints (``video_model.blocks.0.self_attn.q.weight``,
...), so :mod:`omni_model.adapter` has little to rename. The model holds no RoPE buffers:
angles are computed from positions on each call.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from . import sequence_parallel
from .rope import RopeSpec, apply_rope, audio_positions, rotation, video_positions


@dataclass(frozen=True)
class ModelArgs:
    """Architecture of one flavor (see :mod:`omni_model.flavors`)."""

    dim: int = 3072
    ffn_dim: int = 14336
    heads: int = 24
    layers: int = 30  # blocks per stream
    video_channels: int = 48  # Wan2.2 VAE z_dim
    audio_channels: int = 20  # MMAudio 16 kHz VAE latent channels
    patch: tuple[int, int, int] = (1, 2, 2)  # video (time, height, width)
    audio_kernel: int = 7  # the audio embedding's Conv1d / ConvMLP kernel
    text_dim: int = 4096  # umT5-xxl
    text_len: int = 512
    freq_dim: int = 256  # sinusoidal timestep embedding
    eps: float = 1e-6
    rope_theta: float = 10000.0
    ref_slot: float = 150.0  # Syn-RoPE M
    #: audio RoPE scale = video latent frames / audio latents (31 / 157; the release passes
    #: it as a bfloat16 tensor, 0.197265625)
    audio_rope_scale: float = 0.197265625

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} is not a multiple of heads {self.heads}")
        if self.head_dim % 2:
            raise ValueError(f"head dim {self.head_dim} must be even")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads

    @property
    def audio_hidden(self) -> int:
        """Hidden width of the audio embedding's SwiGLU ConvMLP (8192 at dim 3072)."""
        return 256 * math.ceil(int(2 * (4 * self.dim) / 3) / 256)

    @property
    def rope(self) -> RopeSpec:
        return RopeSpec(self.head_dim, self.rope_theta)

    @property
    def audio_ref_offset(self) -> int:
        """Audio latents between voice slots: ``int(M / scale)`` (760 in the release), so that
        voice ``k`` starts at video time ~``M (k + 1)``, the slot of image ``k``."""
        return int(self.ref_slot / self.audio_rope_scale)


# --------------------------------------------------------------------------------------------
# layers


class RMSNorm(nn.Module):
    """RMSNorm normalising in float32; the result, scaled by the weight, has ``x``'s dtype
    (the weight is cast to it: a float32 weight under autocast, a bf16 one for bf16
    sampling)."""

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) \
            * self.weight.type_as(x)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 (the affine weight and bias too) whatever the input's
    and the parameters' dtypes; the result has ``x``'s dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).type_as(x)


class ChannelLastConv1d(nn.Conv1d):
    """Conv1d over ``(B, L, C)`` sequences."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvMLP(nn.Module):
    """SwiGLU with Conv1d projections over ``(B, L, C)``: ``w2(silu(w1 x) * w3 x)``."""

    def __init__(self, dim: int, hidden: int, kernel: int) -> None:
        super().__init__()
        pad = kernel // 2
        self.w1 = ChannelLastConv1d(dim, hidden, kernel, padding=pad, bias=False)
        self.w2 = ChannelLastConv1d(hidden, dim, kernel, padding=pad, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden, kernel, padding=pad, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *,
              kv_sharded: bool = True, kv_stream: str | None = None) -> torch.Tensor:
    """``(B, L, heads, d)`` in, ``(B, Lq, heads * d)`` out; SDPA picks the flash kernel on a
    GPU in bf16. Sequence-parallel (:mod:`omni_model.sequence_parallel`): ``q`` and, when
    ``kv_sharded``, ``k`` and ``v`` hold this rank's tokens; whole keys (the text) are cut
    to this rank's heads; the padding tokens of stream ``kv_stream`` are masked out."""
    sp = sequence_parallel.active()
    mask = None
    if sp is not None:
        q = sequence_parallel.seq_to_heads(q, sp)
        k, v = ((sequence_parallel.seq_to_heads(k, sp), sequence_parallel.seq_to_heads(v, sp))
                if kv_sharded else
                (sequence_parallel.head_slice(k, sp), sequence_parallel.head_slice(v, sp)))
        mask = sequence_parallel.key_mask(kv_stream, k.shape[1], k.device)
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2),
                                         v.transpose(1, 2), attn_mask=mask).transpose(1, 2)
    if sp is not None:
        out = sequence_parallel.heads_to_seq(out, sp)
    return out.flatten(2)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q = RMSNorm(dim, eps)
        self.norm_k = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, rot: torch.Tensor, stream: str | None = None
                ) -> torch.Tensor:
        b, n, _ = x.shape
        q = self.norm_q(self.q(x)).view(b, n, self.heads, -1)
        k = self.norm_k(self.k(x)).view(b, n, self.heads, -1)
        v = self.v(x).view(b, n, self.heads, -1)
        return self.o(attention(apply_rope(q, rot), apply_rope(k, rot), v, kv_stream=stream))


class FusionCrossAttention(SelfAttention):
    """Text cross-attention plus attention over the other stream, sharing q and o (the q, k,
    v, o projections and q/k norms of :class:`SelfAttention`, here over the text)."""

    def __init__(self, dim: int, heads: int, eps: float) -> None:
        super().__init__(dim, heads, eps)
        self.k_fusion = nn.Linear(dim, dim)
        self.v_fusion = nn.Linear(dim, dim)
        self.pre_attn_norm_fusion = LayerNorm(dim, eps, elementwise_affine=True)
        self.norm_k_fusion = RMSNorm(dim, eps)

    def forward(self, x: torch.Tensor, context: torch.Tensor,  # type: ignore[override]
                other: torch.Tensor, rot: torch.Tensor, other_rot: torch.Tensor,
                other_stream: str | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        h = self.heads
        q = self.norm_q(self.q(x)).view(b, n, h, -1)
        k = self.norm_k(self.k(context)).view(b, context.shape[1], h, -1)
        v = self.v(context).view(b, context.shape[1], h, -1)
        text = attention(q, k, v, kv_sharded=False)  # every rank holds the whole text
        o = self.pre_attn_norm_fusion(other)
        kf = self.norm_k_fusion(self.k_fusion(o)).view(b, other.shape[1], h, -1)
        vf = self.v_fusion(o).view(b, other.shape[1], h, -1)
        fused = attention(apply_rope(q, rot), apply_rope(kf, other_rot), vf,
                          kv_stream=other_stream)
        return self.o(text + fused)


class Block(nn.Module):
    """One stream's block. The two streams' blocks interleave (:func:`fused_block`), so a
    block runs in two calls of :meth:`forward`: ``part="self"`` (adaLN self-attention) and
    ``part="cross"`` (cross-attention to text and the other stream, then the adaLN FFN).
    Going through ``forward`` both times is what lets FSDP2 gather and free the block's
    parameters around each call."""

    def __init__(self, args: ModelArgs, stream: str | None = None) -> None:
        super().__init__()
        d = args.dim
        #: this block's stream and the other one (the keys of its attentions: padding masks)
        self.stream = stream
        self.other_stream = {"video": "audio", "audio": "video"}.get(stream or "")
        self.norm1 = LayerNorm(d, args.eps, elementwise_affine=False)
        self.self_attn = SelfAttention(d, args.heads, args.eps)
        self.norm3 = LayerNorm(d, args.eps, elementwise_affine=True)
        self.cross_attn = FusionCrossAttention(d, args.heads, args.eps)
        self.norm2 = LayerNorm(d, args.eps, elementwise_affine=False)
        self.ffn = nn.Sequential(nn.Linear(d, args.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(args.ffn_dim, d))
        self.modulation = nn.Parameter(torch.randn(1, 6, d) / d ** 0.5)

    def forward(self, x: torch.Tensor, part: str, e0: torch.Tensor, rot: torch.Tensor,
                context: torch.Tensor | None = None, other: torch.Tensor | None = None,
                other_rot: torch.Tensor | None = None) -> torch.Tensor:
        # shift, scale, gate (self-attention), shift, scale, gate (FFN): each (B, L|1, d),
        # float32, from e0 (B, L|1, 6, d)
        m = list((self.modulation.float() + e0.float()).unbind(2))
        if part == "self":
            y = self.self_attn((self.norm1(x).float() * (1 + m[1]) + m[0]).type_as(x), rot,
                               self.stream)
            return x + (y.float() * m[2]).type_as(x)
        assert context is not None and other is not None and other_rot is not None
        x = x + self.cross_attn(self.norm3(x), context, other, rot, other_rot,
                                self.other_stream)
        y = self.ffn((self.norm2(x).float() * (1 + m[4]) + m[3]).type_as(x))
        return x + (y.float() * m[5]).type_as(x)


def fused_block(vb: Block, ab: Block, v: torch.Tensor, a: torch.Tensor,
                ev: torch.Tensor, ea: torch.Tensor, cv: torch.Tensor, ca: torch.Tensor,
                rv: torch.Tensor, ra: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Block ``i`` of both streams, in the release's order."""
    a = ab(a, "self", ea, ra)
    v = vb(v, "self", ev, rv)
    a_after_self = a
    a = ab(a, "cross", ea, ra, ca, v, rv)
    v = vb(v, "cross", ev, rv, cv, a_after_self, ra)
    return v, a


class Head(nn.Module):
    def __init__(self, dim: int, out: int, eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim ** 0.5)

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        shift, scale = (self.modulation.float() + e.float().unsqueeze(2)).unbind(2)
        return self.head((self.norm(x).float() * (1 + scale) + shift).type_as(x))


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of timesteps on the 0..1000 scale (float32)."""
    half = dim // 2
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=t.device)
                      / half)
    args = t.double()[..., None] * freqs
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1).float()


class Stream(nn.Module):
    """The embeddings, blocks and head of one modality."""

    def __init__(self, args: ModelArgs, kind: str) -> None:
        super().__init__()
        d = args.dim
        self.kind = kind
        if kind == "video":
            self.patch_embedding: nn.Module = nn.Conv3d(
                args.video_channels, d, kernel_size=args.patch, stride=args.patch)
            out = args.video_channels * math.prod(args.patch)
        elif kind == "audio":
            self.patch_embedding = nn.Sequential(
                ChannelLastConv1d(args.audio_channels, d, args.audio_kernel,
                                  padding=args.audio_kernel // 2),
                nn.SiLU(), ConvMLP(d, args.audio_hidden, args.audio_kernel))
            out = args.audio_channels
        else:
            raise ValueError(f"unknown stream {kind!r}")
        self.text_embedding = nn.Sequential(nn.Linear(args.text_dim, d),
                                            nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.time_embedding = nn.Sequential(nn.Linear(args.freq_dim, d), nn.SiLU(),
                                            nn.Linear(d, d))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))
        self.blocks = nn.ModuleList(Block(args, kind) for _ in range(args.layers))
        self.head = Head(d, out, args.eps)
        self.freq_dim = args.freq_dim

    def embed_time(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``t`` ``(B,)`` or per token ``(B, L)`` -> (``e`` ``(B, L|1, d)`` for the head,
        ``e0`` ``(B, L|1, 6, d)`` for the blocks), float32."""
        if t.dim() == 1:
            t = t[:, None]
        # (a meta tensor has no autocast: omni_model.memory traces the model on "meta")
        off = (contextlib.nullcontext() if t.device.type == "meta"
               else torch.autocast(device_type=t.device.type, enabled=False))
        with off:
            e = self.time_embedding(timestep_embedding(t, self.freq_dim).to(
                self.time_embedding[0].weight.dtype)).float()
            e0 = self.time_projection(e.to(self.time_projection[1].weight.dtype)).float()
        return e, e0.unflatten(-1, (6, -1))


class OmniDiT(nn.Module):
    """The dual-stream model: ``video_model`` and ``audio_model``.

    :meth:`forward` takes the assembled latents (:func:`assemble`): video ``(B, Cv, F + K, H,
    W)`` (K reference frames last) and audio ``(B, La + sum(voice lengths), Ca)`` (channel
    last, references last), one text embedding per stream ``(B, text_len, text_dim)``, and the
    timestep ``(B,)`` on the 0..1000 scale, shared by every token of both streams (the
    references too, as in the release). It returns the velocity for every position, the
    reference slots included; callers keep the target part.
    """

    def __init__(self, args: ModelArgs) -> None:
        super().__init__()
        self.args = args
        self.video_model = Stream(args, "video")
        self.audio_model = Stream(args, "audio")
        self.gradient_checkpointing = False

    # positions -----------------------------------------------------------------------------
    def rotations(self, video_shape: tuple[int, ...], n_image_refs: int, audio_len: int,
                  voice_lengths: tuple[int, ...], device: torch.device
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Syn-RoPE rotations of the video tokens and the audio tokens."""
        a = self.args
        _, _, f, h, w = video_shape
        pt, ph, pw = a.patch
        vpos = video_positions((f - n_image_refs) // pt, h // ph, w // pw, n_image_refs,
                               slot=a.ref_slot)
        target = audio_len - sum(voice_lengths)
        apos = audio_positions(target, voice_lengths, offset=a.audio_ref_offset)
        rv = rotation(a.rope.video_angles(vpos.to(device)))
        ra = rotation(a.rope.audio_angles(apos.to(device), a.audio_rope_scale))
        return rv, ra

    # forward -------------------------------------------------------------------------------
    def forward(self, video: torch.Tensor, audio: torch.Tensor, t: torch.Tensor,
                text_video: torch.Tensor, text_audio: torch.Tensor, *,
                n_image_refs: int = 0, voice_lengths: tuple[int, ...] = ()
                ) -> tuple[torch.Tensor, torch.Tensor]:
        vm, am = self.video_model, self.audio_model
        b, _, f, h, w = video.shape
        pt, ph, pw = self.args.patch
        if f % pt or h % ph or w % pw:
            raise ValueError(f"video latents {tuple(video.shape)} not divisible by patch "
                             f"{self.args.patch}")
        rv, ra = self.rotations(tuple(video.shape), n_image_refs, audio.shape[1],
                                tuple(voice_lengths), video.device)
        dtype = vm.patch_embedding.weight.dtype
        v = vm.patch_embedding(video.to(dtype)).flatten(2).transpose(1, 2)  # (B, Lv, d)
        a_ = am.patch_embedding(audio.to(dtype))  # (B, La, d)
        ev, ev0 = vm.embed_time(t)
        ea, ea0 = am.embed_time(t)
        sp = sequence_parallel.active()
        lengths = None
        if sp is not None:  # this rank's tokens of each stream (and their positions)
            lengths = {"video": v.shape[1], "audio": a_.shape[1]}
            p = sp.size
            v, a_ = sequence_parallel.pad(v, 1, p), sequence_parallel.pad(a_, 1, p)
            rv = sequence_parallel.pad(rv, rv.dim() - 2, p, 1.0)  # (identity rotations)
            ra = sequence_parallel.pad(ra, ra.dim() - 2, p, 1.0)
            v, rv = (sequence_parallel.local(x, d, sp, "video token")
                     for x, d in ((v, 1), (rv, rv.dim() - 2)))
            a_, ra = (sequence_parallel.local(x, d, sp, "audio token")
                      for x, d in ((a_, 1), (ra, ra.dim() - 2)))
            if ev0.shape[1] > 1:  # a time per token
                ev, ev0 = (sequence_parallel.local(sequence_parallel.pad(x, 1, p), 1, sp,
                                                   "video token") for x in (ev, ev0))
            if ea0.shape[1] > 1:
                ea, ea0 = (sequence_parallel.local(sequence_parallel.pad(x, 1, p), 1, sp,
                                                   "audio token") for x in (ea, ea0))
        cv = vm.text_embedding(text_video.to(dtype))
        ca = am.text_embedding(text_audio.to(dtype))
        for vb, ab in zip(vm.blocks, am.blocks, strict=True):
            args = (vb, ab, v, a_, ev0, ea0, cv, ca, rv, ra)
            if self.gradient_checkpointing and torch.is_grad_enabled():
                # the recomputation runs in the backward pass, outside this forward's
                # sequence-parallel state: it carries the state with it
                fn = (fused_block, ) if sp is None else (sequence_parallel.within, sp, lengths,
                                                         fused_block)
                v, a_ = checkpoint(*fn, *args, use_reentrant=False)
            elif sp is None:
                v, a_ = fused_block(*args)
            else:
                v, a_ = sequence_parallel.within(sp, lengths, fused_block, *args)
        v = vm.head(v, ev)
        a_ = am.head(a_, ea)
        if sp is not None:  # every rank gets the whole outputs (and computes the whole loss)
            v = sequence_parallel.gather(v, 1, sp)[:, :lengths["video"]]
            a_ = sequence_parallel.gather(a_, 1, sp)[:, :lengths["audio"]]
        return self.unpatchify(v, (f // pt, h // ph, w // pw)), a_

    def unpatchify(self, x: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
        """``(B, F*H*W, pt*ph*pw*C)`` -> ``(B, C, F*pt, H*ph, W*pw)`` (patch-major, channel
        last within a patch, as the release's head lays it out)."""
        b = x.shape[0]
        f, h, w = grid
        pt, ph, pw = self.args.patch
        c = self.args.video_channels
        x = x.view(b, f, h, w, pt, ph, pw, c)
        return x.permute(0, 7, 1, 4, 2, 5, 3, 6).reshape(b, c, f * pt, h * ph, w * pw)

    # bookkeeping ---------------------------------------------------------------------------
    def init_weights(self, seed: int | None = None) -> None:
        """Training-from-scratch initialisation (the release's recipe): Xavier-uniform
        Linear weights with zero biases, N(0, 0.02) text and time embeddings, a zero output
        head (the model starts by predicting 0), and the video stream's fusion projections
        scaled down tenfold so the pretrained-like video path starts nearly undisturbed."""
        g = torch.Generator().manual_seed(seed) if seed is not None else None
        for m in self.modules():
            if isinstance(m, nn.Linear):
                _xavier(m.weight, g)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, (nn.Conv3d, nn.Conv1d)):
                _xavier(m.weight, g)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        for stream in (self.video_model, self.audio_model):
            for m in (*stream.text_embedding, *stream.time_embedding):
                if isinstance(m, nn.Linear):
                    with torch.no_grad():
                        m.weight.copy_(0.02 * torch.randn(m.weight.shape, generator=g))
            nn.init.zeros_(stream.head.head.weight)
            nn.init.zeros_(stream.head.head.bias)
            for blk in stream.blocks:
                with torch.no_grad():
                    blk.modulation.copy_(torch.randn(blk.modulation.shape, generator=g)
                                         / self.args.dim ** 0.5)
            with torch.no_grad():
                stream.head.modulation.copy_(torch.randn(stream.head.modulation.shape,
                                                         generator=g) / self.args.dim ** 0.5)
        with torch.no_grad():
            for name, p in self.video_model.named_parameters():
                if "fusion" in name and name.endswith("weight") and p.dim() == 2:
                    p.div_(10.0)


def _xavier(w: torch.Tensor, g: torch.Generator | None) -> None:
    """Xavier-uniform in place (fans as torch counts them for Linear and Conv weights)."""
    receptive = w[0].numel() // w.shape[1]
    fan_in, fan_out = w[0].numel(), w.shape[0] * receptive
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    with torch.no_grad():
        w.copy_((torch.rand(w.shape, generator=g) * 2 - 1) * bound)


def assemble(target: torch.Tensor, refs: torch.Tensor | None = None,
             structural: torch.Tensor | None = None, *, time_dim: int) -> torch.Tensor:
    """``[target ; refs] + [structural ; 0]`` along ``time_dim`` (2 for video latents
    ``(B, C, F, H, W)``, 1 for audio latents ``(B, L, C)``): the symmetric conditioning of
    paper.md. ``structural`` (source video or driving audio latents) must have the target's
    shape; ``None`` adds nothing (R2AV)."""
    x = target if structural is None else target + structural
    return x if refs is None or refs.shape[time_dim] == 0 else torch.cat([x, refs], time_dim)
