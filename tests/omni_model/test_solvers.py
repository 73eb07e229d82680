"""Flow solvers: the noise grid against hand-computed values and the release's timesteps,
UniPC against diffusers' implementation, accuracy on an ODE with a known solution, and the
multi-condition guidance arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from omni_model.solvers import (
    DEFAULT_GUIDANCE,
    Euler,
    Guidance,
    UniPC,
    flow_sigmas,
    make_solver,
    sample,
)


def test_grid_matches_hand_computed_values_and_the_release_timesteps():
    sig = flow_sigmas(50, 5.0)
    assert sig.shape == (51,) and sig[-1] == 0.0
    # first: s = 0.999 shifted: 5 * 0.999 / (1 + 4 * 0.999) = 4.995 / 4.996
    assert sig[0].item() == pytest.approx(4.995 / 4.996, abs=1e-12)
    # step 49: s = 0.999 * (1 - 49/50) = 0.01998 -> 0.0999 / 1.07992
    assert sig[49].item() == pytest.approx(5 * 0.01998 / (1 + 4 * 0.01998), abs=1e-12)
    assert bool((sig[1:] < sig[:-1]).all())
    ts = UniPC(50).timesteps
    assert ts[:5].tolist() == [999, 995, 991, 987, 982]  # the release's scheduler
    assert ts[-3:].tolist() == [241, 172, 92]
    # shift 1 leaves the evenly spaced grid
    assert torch.allclose(flow_sigmas(4, 1.0), torch.tensor([0.999, 0.74925, 0.4995, 0.24975,
                                                             0.0], dtype=torch.float64))
    with pytest.raises(ValueError):
        flow_sigmas(0)


def _velocity_field(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = 0.3 * torch.randn(8, 8, generator=g)
    return lambda x, t: torch.tanh(x @ w) + 0.1 * x * (t / 1000)


@pytest.mark.parametrize("order", [1, 2, 3])
def test_unipc_matches_diffusers_step_for_step(order):
    from diffusers import UniPCMultistepScheduler

    ref = UniPCMultistepScheduler(
        num_train_timesteps=1000, use_flow_sigmas=True, flow_shift=5.0,
        prediction_type="flow_prediction", solver_order=order, solver_type="bh2",
        predict_x0=True, lower_order_final=True, final_sigmas_type="zero")
    ref.set_timesteps(50)
    ours = UniPC(50, 5.0, order=order)
    ref.sigmas = ours.sigmas.float().clone()  # the release's grid (Wan's, 0.999 at the top)
    ref.timesteps = ours.timesteps.clone()
    vel = _velocity_field()
    x = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(1))
    xa, xb = x.clone(), x.clone()
    for t in ours.timesteps:
        xa = ref.step(vel(xa, t), t, xa).prev_sample
        xb = ours.step(vel(xb, t), xb)
        assert (xa - xb).abs().max().item() < 1e-5
    assert xb.abs().max().item() > 1.0  # a real trajectory, not a collapse to 0


def _gaussian_velocity(mu: float, sd: float):
    """Exact velocity field for data ~ N(mu, sd^2) under x_s = (1 - s) x0 + s e:
    v = E[e - x0 | x_s], a linear function of x."""
    def v(x: torch.Tensor, s: float) -> torch.Tensor:
        var = (1 - s) ** 2 * sd ** 2 + s ** 2
        e_mean = s * (x - (1 - s) * mu) / var
        x0_mean = mu + (1 - s) * sd ** 2 * (x - (1 - s) * mu) / var
        return e_mean - x0_mean
    return v


def _exact_endpoint(x1: torch.Tensor, s1: float, mu: float, sd: float) -> torch.Tensor:
    # the probability-flow ODE keeps the standardised position (x - m(s)) / std(s)
    std = math.sqrt((1 - s1) ** 2 * sd ** 2 + s1 ** 2)
    return mu + sd * (x1 - (1 - s1) * mu) / std


def test_unipc_is_more_accurate_than_euler_on_a_known_ode():
    mu, sd = 1.5, 0.5
    v = _gaussian_velocity(mu, sd)
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    errs = {}
    for name in ("euler", "unipc"):
        solver = make_solver(name, 50, 5.0)  # the release's setting
        sig = solver.sigmas
        exact = _exact_endpoint(x, sig[0].item(), mu, sd)
        out = sample(lambda z, t, s=solver: v(z, s.sigmas[s.index].item()), x.clone(), solver)
        errs[name] = (out - exact).abs().max().item()
    # measured: euler 0.086, unipc 0.0014 (float32 arithmetic inside the solver)
    assert errs["unipc"] < errs["euler"] / 10, errs
    assert errs["unipc"] < 5e-3


def test_point_mass_is_recovered_exactly_by_both_solvers():
    target = torch.tensor([0.3, -1.2, 2.0])
    for name in ("euler", "unipc"):
        solver = make_solver(name, 7, 3.0)
        x = torch.randn(3, generator=torch.Generator().manual_seed(0))

        def v(z, t, s=solver):  # exact field of a point mass: (x - x0) / s
            return (z - target) / s.sigmas[s.index].item()
        assert torch.allclose(sample(v, x, solver), target, atol=1e-5)
    with pytest.raises(ValueError, match="unknown solver"):
        make_solver("ddim", 10)


def test_solvers_keep_the_dtype_and_work_in_float32():
    for solver in (Euler(4), UniPC(4)):
        x = torch.randn(2, 3, dtype=torch.bfloat16)
        y = sample(lambda z, t: torch.ones_like(z), x, solver)
        assert y.dtype == torch.bfloat16 and solver.index == 4


def test_guidance_arithmetic():
    u, t, f = torch.tensor([1.0]), torch.tensor([3.0]), torch.tensor([4.0])
    g = Guidance(text=3.0, ref=1.5)
    # 1 + 3 (3 - 1) + 1.5 (4 - 3)
    assert g.combine(u, t, f).item() == 8.5
    assert Guidance(1.0, 1.0).combine(u, t, f).item() == 4.0  # plain conditional
    assert Guidance(1.0, 0.0).combine(u, t, f).item() == 3.0  # references ignored
    assert DEFAULT_GUIDANCE["video"] == Guidance(3.0, 1.5)
    assert DEFAULT_GUIDANCE["audio"] == Guidance(4.0, 2.0)
