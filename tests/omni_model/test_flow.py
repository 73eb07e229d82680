"""The flow-matching objective: interpolation, target, timestep sampling, masked loss."""

from __future__ import annotations

import pytest
import torch

from omni_model.flow import FlowMatching, interpolate, masked_mse, shift_sigma, velocity


def test_path_and_target():
    x0, e = torch.full((2, 3), 2.0), torch.full((2, 3), -1.0)
    s = torch.tensor([0.0, 0.25])
    xs = interpolate(x0, e, s)
    assert torch.equal(xs[0], x0[0])  # s = 0 is data
    assert torch.allclose(xs[1], torch.full((3,), 0.75 * 2.0 + 0.25 * -1.0))
    assert torch.equal(velocity(x0, e), e - x0)
    # d x_s / d s = e - x0: the target is the path's velocity
    eps = 1e-3
    deriv = (interpolate(x0, e, s + eps) - xs) / eps
    assert torch.allclose(deriv, velocity(x0, e), atol=1e-3)


def test_shift_and_sampling():
    assert shift_sigma(0.5, 5.0) == pytest.approx(2.5 / 3.0)
    assert shift_sigma(0.0, 5.0) == 0.0 and shift_sigma(1.0, 5.0) == 1.0
    g = torch.Generator().manual_seed(0)
    s = FlowMatching(shift=5.0).sample_sigma(20000, g)
    assert s.min() >= 0 and s.max() <= 1
    # P(shifted s < shift(0.5)) = 0.5: the shift moves the median to 5/6
    assert (s < 2.5 / 3.0).float().mean().item() == pytest.approx(0.5, abs=0.02)
    ln = FlowMatching(shift=1.0, sampling="logit_normal").sample_sigma(20000, g)
    assert ln.median().item() == pytest.approx(0.5, abs=0.02)
    assert (ln.std() < s.std() + 0.1)
    w = FlowMatching(weighting="sigma_sqrt").weight(torch.tensor([0.5, 1e-4]))
    assert w.tolist() == [4.0, 100.0]
    with pytest.raises(ValueError):
        FlowMatching(sampling="beta").sample_sigma(2)  # type: ignore[arg-type]


def test_masked_loss_has_zero_gradient_inside_the_mask_and_is_a_mean_outside():
    pred = torch.randn(2, 4, 6, requires_grad=True)
    target = torch.randn(2, 4, 6)
    mask = torch.zeros(2, 4, 6)
    mask[0, :2] = 1.0  # sample 0: half masked
    mask[1] = 1.0  # sample 1: everything masked -> contributes 0, no NaN
    loss = masked_mse(pred, target, mask)
    loss.backward()
    assert torch.all(pred.grad[mask.bool()] == 0)
    assert torch.all(pred.grad[~mask.bool()] != 0)
    keep = ~mask[0].bool()
    expected = ((pred[0] - target[0])[keep] ** 2).mean() / 2  # batch mean over 2 samples
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    # no mask: the plain MSE; a broadcast mask (per frame) works the same as a full one
    assert masked_mse(pred, target).item() == pytest.approx(
        ((pred - target) ** 2).mean().item(), rel=1e-6)
    frame_mask = torch.zeros(2, 4, 1)
    frame_mask[0, :2] = 1.0
    full = frame_mask.expand(2, 4, 6)
    assert masked_mse(pred, target, frame_mask).item() == pytest.approx(
        masked_mse(pred, target, full).item(), rel=1e-6)
    # per-sample weights
    w = torch.tensor([2.0, 0.0])
    assert masked_mse(pred, target, None, w).item() == pytest.approx(
        ((pred[0] - target[0]) ** 2).mean().item(), rel=1e-6)
    # bf16 inputs: the error is taken in float32
    assert masked_mse(pred.bfloat16(), target.bfloat16()).dtype == torch.float32
