"""Flow matching: the training objective, apart from the network.

Paths go in a straight line from data to noise, ``x_s = (1 - s) x0 + s e`` with ``s`` in
[0, 1] (``s = 0`` is data), and the network predicts the velocity ``v = e - x0``. Training
draws ``u ~ U(0, 1)`` per sample, or from a logit-normal, and moves it through the same
time shift the sampler uses (:func:`shift_sigma`, shift 5 by default: most training steps
land at high noise, where the large-scale layout of a 121-frame clip is decided). The
network is told ``t = 1000 s``.

The loss is a mean squared error per stream, masked by ``1 - M``: elements inside the mask
(the frame region and the audio span the references were cut from, in stage 1) get no
gradient, and the mean is over the elements outside it, so a mask does not rescale the
loss. Each stream's loss is weighted (``l_v``, ``l_a``), optionally per sample by a timestep
weighting (uniform by default, as in the paper's objective).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

#: The network's timestep scale: ``t = NUM_TRAIN_TIMESTEPS * s``.
NUM_TRAIN_TIMESTEPS = 1000


def shift_sigma(s: torch.Tensor | float, shift: float) -> torch.Tensor | float:
    """The time shift of SD3 / Wan: ``shift * s / (1 + (shift - 1) * s)``; 0 and 1 are fixed
    points and ``shift > 1`` pushes every other ``s`` towards noise."""
    return shift * s / (1 + (shift - 1) * s)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """``x_s = (1 - s) x0 + s e``; ``sigma`` has one value per sample (shape ``(B,)``)."""
    s = sigma.reshape(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def velocity(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """The regression target ``v = e - x0``."""
    return noise - x0


@dataclass
class FlowMatching:
    """The objective's settings (``train.flow`` in the training config).

    ``sampling``: how ``u`` is drawn before the shift -- ``uniform`` or ``logit_normal``
    (``sigmoid(N(mean, std))``, SD3's choice). ``weighting``: ``none`` (every timestep
    counts the same) or ``sigma_sqrt`` (``s^-2``-style emphasis of low noise, clipped; for
    experiments). ``min_sigma``/``max_sigma`` clamp ``s`` after the shift.
    """

    shift: float = 5.0
    sampling: Literal["uniform", "logit_normal"] = "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    weighting: Literal["none", "sigma_sqrt"] = "none"
    min_sigma: float = 0.0
    max_sigma: float = 1.0

    def sample_sigma(self, n: int, generator: torch.Generator | None = None,
                     device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` training noise levels, shifted (float32, shape ``(n,)``)."""
        if self.sampling == "uniform":
            u = torch.rand(n, generator=generator, device=device)
        elif self.sampling == "logit_normal":
            u = torch.sigmoid(self.logit_mean + self.logit_std
                              * torch.randn(n, generator=generator, device=device))
        else:
            raise ValueError(f"unknown timestep sampling {self.sampling!r}")
        s = shift_sigma(u, self.shift)
        return s.clamp(self.min_sigma, self.max_sigma)

    def weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """Per-sample loss weight for noise level ``sigma``."""
        if self.weighting == "none":
            return torch.ones_like(sigma)
        if self.weighting == "sigma_sqrt":
            return (sigma.clamp_min(1e-2) ** -2.0).clamp_max(100.0)
        raise ValueError(f"unknown loss weighting {self.weighting!r}")


def masked_mse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
               weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of ``(pred - target)^2`` over the elements where ``mask`` is 0, per sample, then
    weighted (``weight``, shape ``(B,)``) and averaged over the batch.

    ``mask`` broadcasts against ``pred`` (1 = excluded from the loss; fractional values are
    soft exclusion). A sample whose every element is masked contributes 0, not NaN. The
    squared error is taken in float32 whatever the inputs' dtype.
    """
    err = (pred.float() - target.float()) ** 2
    if mask is None:
        per = err.flatten(1).mean(1)
    else:
        keep = (1.0 - mask.float()).expand_as(err)
        num = (keep * err).flatten(1).sum(1)
        den = keep.flatten(1).sum(1)
        per = torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))
    if weight is not None:
        per = per * weight.float()
    return per.mean()
