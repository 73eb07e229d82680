"""Ulysses sequence parallelism: a sample too long for one GPU's activations is split along
its tokens over a group of ranks.

Inside :func:`sequence_parallel`, :class:`~omni_model.model.OmniDiT` keeps on each rank a
contiguous 1/P slice of each stream's tokens (video and audio) and of their rotary positions.
Everything token-wise (projections, norms, modulation, FFN, the heads) runs on the slice. At
each attention, an all-to-all turns ``(B, L/P, H, d)`` into ``(B, L, H/P, d)`` (the whole
sequence for a 1/P share of the heads), attention runs, and a second all-to-all turns the
result back; keys that every rank already holds whole (the text) are only cut to the rank's
heads. The outputs are gathered along the tokens at the end, so every rank computes the same
full loss. With that loss, averaging the gradients over the group (DDP, or FSDP2's
reduce-scatter) gives exactly the single-rank gradients: each rank's slice receives the
gradient of all P copies of the loss, and the average divides it back.

Needs the heads divisible by P (an error says so). A stream whose token count P does not
divide is padded at its end to the next multiple (:func:`padded`): the padding tokens are
masked out as keys and cut from the outputs, so they change nothing. The group is the whole
world here (P = world: no data parallelism beside it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from omni_core.errors import OmniError


@dataclass(frozen=True)
class SPGroup:
    group: Any  # a torch.distributed process group (None: the world)
    rank: int
    size: int


_ACTIVE: ContextVar[SPGroup | None] = ContextVar("omni_sequence_parallel", default=None)
#: each stream's real token count while its tokens are padded (see :func:`padded`)
_LENGTHS: ContextVar[dict[str, int] | None] = ContextVar("omni_sp_lengths", default=None)


@contextlib.contextmanager
def sequence_parallel(group: Any = None) -> Iterator[SPGroup]:
    """Run the model sequence-parallel over ``group`` (default: the world) in this block."""
    sp = SPGroup(group, dist.get_rank(group), dist.get_world_size(group))
    token = _ACTIVE.set(sp)
    try:
        yield sp
    finally:
        _ACTIVE.reset(token)


def active() -> SPGroup | None:
    sp = _ACTIVE.get()
    return sp if sp is not None and sp.size > 1 else None


@contextlib.contextmanager
def padded(lengths: dict[str, int]) -> Iterator[None]:
    """While the streams' tokens are padded: their real counts (``{"video": Lv, ...}``)."""
    token = _LENGTHS.set(dict(lengths))
    try:
        yield
    finally:
        _LENGTHS.reset(token)


def within(sp: SPGroup | None, lengths: dict[str, int] | None, fn: Any, *args: Any) -> Any:
    """``fn(*args)`` with the sequence-parallel state set (what an activation-checkpointed
    block needs when it is recomputed in the backward pass, outside the forward's context)."""
    t1, t2 = _ACTIVE.set(sp), _LENGTHS.set(lengths)
    try:
        return fn(*args)
    finally:
        _ACTIVE.reset(t1)
        _LENGTHS.reset(t2)


def lengths() -> dict[str, int] | None:
    return _LENGTHS.get()


def pad(x: torch.Tensor, dim: int, multiple: int, value: complex | float = 0.0) -> torch.Tensor:
    """``x`` with its ``dim`` padded at the end to a multiple of ``multiple``."""
    n = x.shape[dim]
    extra = -n % multiple
    if not extra:
        return x
    shape = list(x.shape)
    shape[dim] = extra
    return torch.cat([x, torch.full(shape, value, dtype=x.dtype, device=x.device)], dim)


def key_mask(stream: str | None, n: int, device: torch.device) -> torch.Tensor | None:
    """The keys of ``stream`` that are real tokens, for ``n`` (padded) keys; None: all."""
    lens = _LENGTHS.get()
    if stream is None or not lens or lens.get(stream, n) >= n:
        return None
    return (torch.arange(n, device=device) < lens[stream])[None, None, None, :]  # (1,1,1,n)


def local(x: torch.Tensor, dim: int, sp: SPGroup, what: str) -> torch.Tensor:
    """This rank's contiguous slice of ``x`` along ``dim``."""
    n = x.shape[dim]
    if n % sp.size:
        raise OmniError(f"sequence parallelism over {sp.size} ranks needs the {what} count "
                        f"({n}) divisible by {sp.size}")
    step = n // sp.size
    return x.narrow(dim, sp.rank * step, step)


def _a2a(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    """Chunk ``j`` of dim 0 to rank ``j``; chunk ``j`` of the result from rank ``j``."""
    x = x.contiguous()
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)  # contiguous, as x now is
    dist.all_to_all_single(out, x, group=sp.group)
    return out


def _seq_to_heads(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    b, ls, h, d = x.shape
    p = sp.size
    chunks = x.reshape(b, ls, p, h // p, d).permute(2, 0, 1, 3, 4)  # (P, B, Ls, H/P, d)
    got = _a2a(chunks, sp)  # got[j]: rank j's tokens, this rank's heads
    return got.permute(1, 0, 2, 3, 4).reshape(b, p * ls, h // p, d)


def _heads_to_seq(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    b, n, hp, d = x.shape
    p = sp.size
    chunks = x.reshape(b, p, n // p, hp, d).permute(1, 0, 2, 3, 4)  # (P, B, Ls, H/P, d)
    got = _a2a(chunks, sp)  # got[j]: this rank's tokens, rank j's heads
    return got.permute(1, 2, 0, 3, 4).reshape(b, n // p, p * hp, d)


class _AllToAll(torch.autograd.Function):
    """Tokens -> heads (``to_heads``) or back; the backward is the other direction."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, sp: SPGroup, to_heads: bool) -> torch.Tensor:
        ctx.sp, ctx.to_heads = sp, to_heads
        return _seq_to_heads(x, sp) if to_heads else _heads_to_seq(x, sp)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        back = _heads_to_seq(grad, ctx.sp) if ctx.to_heads else _seq_to_heads(grad, ctx.sp)
        return back, None, None


class _Gather(torch.autograd.Function):
    """All-gather along ``dim``. Every rank computes the same full loss, so the reduce-scatter
    (sum) a gather's backward needs is this rank's slice of its own gradient times P, computed
    without communication."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, dim: int, sp: SPGroup) -> torch.Tensor:
        ctx.dim, ctx.sp = dim, sp
        x = x.contiguous()
        parts = [torch.empty(x.shape, dtype=x.dtype, device=x.device) for _ in range(sp.size)]
        dist.all_gather(parts, x, group=sp.group)
        return torch.cat(parts, dim)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        step = grad.shape[ctx.dim] // ctx.sp.size
        mine = grad.narrow(ctx.dim, ctx.sp.rank * step, step)
        return (mine * ctx.sp.size).contiguous(), None, None


def seq_to_heads(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    if x.shape[2] % sp.size:
        raise OmniError(f"sequence parallelism over {sp.size} ranks needs the heads "
                        f"({x.shape[2]}) divisible by {sp.size}")
    return _AllToAll.apply(x, sp, True)


def heads_to_seq(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    return _AllToAll.apply(x, sp, False)


def head_slice(x: torch.Tensor, sp: SPGroup) -> torch.Tensor:
    """This rank's heads of keys or values every rank holds whole (the text)."""
    return local(x, 2, sp, "heads")


def gather(x: torch.Tensor, dim: int, sp: SPGroup) -> torch.Tensor:
    return _Gather.apply(x, dim, sp)
