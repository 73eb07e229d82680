"""AES (VBench aesthetic_quality): head maths, precision, options, debug twin end to end.

The network (CLIP image tower + LAION head, checkpoints) is tested in
``tests/evaluation/models/test_laion_aesthetic.py``, the preprocessing in ``test_clip_vit.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from evaluation.metrics import aes
from evaluation.models.clip_vit import clip_preprocess
from evaluation.models.laion_aesthetic import AestheticModel


@pytest.fixture(scope="module")
def talking_frames(sample_corpus) -> np.ndarray:
    from omni_core.media import read_frames

    return read_frames(sample_corpus.out / "talking" / "talk00_1p.mp4")


# --------------------------------------------------------------------------------------------
# AES maths on a hand-made head


def test_constant_head_gives_bias_over_ten(talking_frames):
    model = AestheticModel.debug(seed=0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(6.3)
    res = aes.score_frames(talking_frames[:7], model)
    assert res.n_frames == 7
    assert res.per_frame == pytest.approx([0.63] * 7, abs=1e-6)
    assert res.score == pytest.approx(0.63, abs=1e-6)


def test_score_is_mean_of_normalised_feature_through_head(talking_frames):
    model = AestheticModel.debug(seed=3)
    with torch.no_grad():  # score = 10 * f[0] + 2 -> per frame f[0] + 0.2
        model.head.weight.zero_()
        model.head.weight[0, 0] = 10.0
        model.head.bias.fill_(2.0)
    frames = talking_frames[::40]
    with torch.no_grad():
        feats = model.visual(clip_preprocess(frames, 224, quantize=False))
        f0 = (feats / feats.norm(dim=-1, keepdim=True))[:, 0].numpy()
    res = aes.score_frames(frames, model, aes.AESOptions(batch_size=2))
    np.testing.assert_allclose(res.per_frame, f0 + 0.2, atol=1e-6)
    assert res.score == pytest.approx(float(np.mean(f0 + 0.2)), abs=1e-6)


def test_batch_size_does_not_change_numbers(talking_frames):
    model = AestheticModel.debug(seed=1)
    a = aes.score_frames(talking_frames[:9], model, aes.AESOptions(batch_size=9))
    b = aes.score_frames(talking_frames[:9], model, aes.AESOptions(batch_size=2))
    np.testing.assert_allclose(a.per_frame, b.per_frame, atol=1e-6)


def test_fp16_precision_is_close_and_switching_back_is_lossless(talking_frames):
    model = AestheticModel.debug(seed=2)
    frames = talking_frames[:4]
    full = aes.score_frames(frames, model, aes.AESOptions(precision="fp32"))
    half = aes.score_frames(frames, model, aes.AESOptions(precision="fp16"))
    assert half.precision == "fp16" and model.visual.dtype == torch.float16
    np.testing.assert_allclose(half.per_frame, full.per_frame, atol=5e-3)
    again = aes.score_frames(frames, model, aes.AESOptions(precision="fp32"))
    assert again == full  # "auto" on CPU is fp32 too
    assert aes.score_frames(frames, model).precision == "fp32"


def test_options_are_validated():
    with pytest.raises(ValueError):
        aes.AESOptions(precision="bf16")
    assert aes.AESOptions().precision == "auto" and aes.AESOptions().antialias is False


# --------------------------------------------------------------------------------------------
# end to end with the debug twin on real sample-corpus frames


def test_debug_twin_end_to_end_is_deterministic(talking_frames):
    a = aes.score_frames(talking_frames, AestheticModel.debug(seed=0))
    assert a.n_frames == len(talking_frames)
    assert np.isfinite(a.score) and a.precision == "fp32"
    assert a.score == pytest.approx(float(np.mean(a.per_frame)), abs=1e-12)
    head = talking_frames[:25]
    b = aes.score_frames(head, AestheticModel.debug(seed=0))
    np.testing.assert_allclose(b.per_frame, a.per_frame[:25], atol=1e-6)
    assert aes.score_frames(head, AestheticModel.debug(seed=0)) == b  # bit-identical
    assert aes.score_frames(head, AestheticModel.debug(seed=1)).score != b.score
    assert aes.DIRECTION == "higher" and aes.VERSION == "1"
    assert "debug weights" in AestheticModel.debug(seed=0).describe()
