"""Flow ODE solvers for sampling: the noise grid, Euler and UniPC, and multi-condition CFG.

The grid is Wan's: ``n`` noise levels evenly spaced from ``1 - 1/1000`` down to 0 (the
training schedule's largest and smallest), the last dropped, each moved by the time shift
(:func:`omni_model.flow.shift_sigma`, 5 by default), then a final 0. The network sees
``t = 1000 s``.

``euler`` takes ``x <- x + (s_next - s) v``. ``unipc`` is UniPC (Zhao et al. 2023) in its
``bh2`` variant predicting data (``x0 = x - s v`` with ``alpha = 1 - s``, ``sigma = s``):
a multistep predictor of order 2 plus the corrector that reuses each new model output, with
order 1 on the first step (no history) and on the last (which lands on ``s = 0``, where the
log-SNR is infinite). One model call per step for either solver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .flow import NUM_TRAIN_TIMESTEPS, shift_sigma


def flow_sigmas(steps: int, shift: float = 5.0) -> torch.Tensor:
    """``steps + 1`` noise levels (float64), from the shifted ``1 - 1/1000`` down to 0."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    top = 1.0 - 1.0 / NUM_TRAIN_TIMESTEPS
    base = torch.linspace(top, 0.0, steps + 1, dtype=torch.float64)[:-1]
    return torch.cat([shift_sigma(base, shift), torch.zeros(1, dtype=torch.float64)])


@dataclass
class Guidance:
    """Multi-condition classifier-free guidance of one stream (paper.md, "Inference"):

    ``v = v(0, 0) + w_text (v(T, 0) - v(0, 0)) + w_ref (v(T, S) - v(T, 0))``

    with S the stream's references (identity images for video, voices for audio). ``w_text =
    w_ref = 1`` is the plain conditional prediction; ``w_ref = 0`` ignores the references.
    """

    text: float
    ref: float

    def combine(self, uncond: torch.Tensor, text: torch.Tensor,
                full: torch.Tensor) -> torch.Tensor:
        return uncond + self.text * (text - uncond) + self.ref * (full - text)


#: The release's defaults: video (3.0, 1.5), audio (4.0, 2.0).
DEFAULT_GUIDANCE = {"video": Guidance(3.0, 1.5), "audio": Guidance(4.0, 2.0)}


class Solver:
    """A flow ODE solver over :func:`flow_sigmas`. ``step(v, x)`` advances ``x`` from
    ``sigmas[i]`` to ``sigmas[i + 1]`` given the model's velocity at ``sigmas[i]`` and
    returns the new sample; a solver holds the history it needs, so use one per sampling run.
    Arithmetic is in float32 or wider whatever the latents' dtype; the output has ``x``'s."""

    def __init__(self, steps: int, shift: float = 5.0) -> None:
        self.sigmas = flow_sigmas(steps, shift)
        self.steps = steps
        self.index = 0

    @property
    def timesteps(self) -> torch.Tensor:
        """What the network is told at each step: ``1000 s`` truncated to an integer, as the
        release's scheduler hands it over (float32, ``steps`` values; 999, 995, ..., 92 for
        50 steps at shift 5)."""
        return torch.floor(self.sigmas[:-1] * NUM_TRAIN_TIMESTEPS).float()

    def step(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


class Euler(Solver):
    def step(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s, s_next = self.sigmas[self.index].item(), self.sigmas[self.index + 1].item()
        self.index += 1
        return (x.float() + (s_next - s) * v.float()).to(x.dtype)


@dataclass
class _History:
    x0: list[torch.Tensor] = field(default_factory=list)  # data predictions, newest last
    sig: list[float] = field(default_factory=list)  # their noise levels
    last_x: torch.Tensor | None = None  # the sample the last predictor step started from
    last_order: int = 1


def _log_snr(s: float) -> float:
    """``log(alpha / sigma)`` with ``alpha = 1 - s``; ``inf`` at ``s = 0``."""
    return math.inf if s == 0.0 else math.log(1.0 - s) - math.log(s)


class UniPC(Solver):
    """UniPC-bh2, data prediction, predictor order ``order`` (default 2) with its corrector."""

    def __init__(self, steps: int, shift: float = 5.0, order: int = 2,
                 corrector: bool = True) -> None:
        super().__init__(steps, shift)
        if order not in (1, 2, 3):
            raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
        self.order = order
        self.corrector = corrector
        self._h = _History()

    def step(self, v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        i = self.index
        s = self.sigmas[i].item()
        xf = x.float()
        x0 = xf - s * v.float()
        hist = self._h
        if self.corrector and hist.last_x is not None:
            xf = self._update(hist.last_x, hist.x0, hist.sig, hist.last_order, target_sigma=s,
                              new_x0=x0)
        hist.x0 = (hist.x0 + [x0])[-self.order:]
        hist.sig = (hist.sig + [s])[-self.order:]
        # lower order at the start (history) and at the end (the last steps land on s = 0)
        order = min(self.order, len(hist.x0), self.steps - i)
        hist.last_x, hist.last_order = xf, order
        out = self._update(xf, hist.x0, hist.sig, order, target_sigma=self.sigmas[i + 1].item())
        self.index += 1
        return out.to(x.dtype)

    @staticmethod
    def _update(x: torch.Tensor, x0s: list[torch.Tensor], sigs: list[float], order: int,
                target_sigma: float, new_x0: torch.Tensor | None = None) -> torch.Tensor:
        """One UniP step (``new_x0`` None) or UniC correction (``new_x0`` = the model's data
        prediction at ``target_sigma``) from the sample ``x`` at the noise level of
        ``x0s[-1]`` to ``target_sigma``."""
        m0, s0 = x0s[-1], sigs[-1]
        lam0 = _log_snr(s0)
        lam_t = _log_snr(target_sigma)
        alpha_t = 1.0 - target_sigma
        h = lam_t - lam0
        hh = -h
        h_phi_1 = math.expm1(hh)  # e^{-h} - 1 (-1 at s = 0)
        b_h = h_phi_1  # bh2
        # divided differences against older data predictions
        rks, d1s = [], []
        for k in range(1, order):
            rk = (_log_snr(sigs[-1 - k]) - lam0) / h
            rks.append(rk)
            d1s.append((x0s[-1 - k] - m0) / rk)
        rks.append(1.0)
        rk_t = torch.tensor(rks, dtype=torch.float64)
        rows, b = [], []
        h_phi_k = h_phi_1 / hh - 1.0 if math.isfinite(hh) else -1.0
        fact = 1
        for k in range(1, order + 1):
            rows.append(rk_t ** (k - 1))
            b.append(h_phi_k * fact / b_h)
            fact *= k + 1
            h_phi_k = (h_phi_k / hh - 1.0 / fact) if math.isfinite(hh) else -1.0 / fact
        r_mat = torch.stack(rows)
        b_t = torch.tensor(b, dtype=torch.float64)
        ratio = target_sigma / s0
        base = ratio * x - alpha_t * h_phi_1 * m0
        if new_x0 is None:  # predictor
            if not d1s:
                return base
            rhos = (torch.tensor([0.5], dtype=torch.float64) if order == 2
                    else torch.linalg.solve(r_mat[:-1, :-1], b_t[:-1]))
            res = sum(float(r) * d for r, d in zip(rhos, d1s, strict=True))
            return base - alpha_t * b_h * res
        # corrector
        rhos = (torch.tensor([0.5], dtype=torch.float64) if order == 1
                else torch.linalg.solve(r_mat, b_t))
        res = sum((float(r) * d for r, d in zip(rhos[:-1], d1s, strict=True)),
                  torch.zeros_like(m0))
        return base - alpha_t * b_h * (res + float(rhos[-1]) * (new_x0 - m0))


SOLVERS: dict[str, type[Solver]] = {"unipc": UniPC, "euler": Euler}


def make_solver(name: str, steps: int, shift: float = 5.0) -> Solver:
    try:
        return SOLVERS[name](steps, shift)
    except KeyError:
        raise ValueError(f"unknown solver {name!r}; choose one of {', '.join(SOLVERS)}"
                         ) from None


def sample(velocity: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], x: torch.Tensor,
           solver: Solver) -> torch.Tensor:
    """Integrate from noise ``x`` (at ``sigmas[0]``) to data: ``velocity(x, t)`` with ``t``
    the network's timestep (a 0-d float32 tensor)."""
    for t in solver.timesteps:
        x = solver.step(velocity(x, t), x)
    return x
