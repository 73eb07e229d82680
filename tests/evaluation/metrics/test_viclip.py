"""ViCLIP (VBench overall_consistency): frame sampling, scoring, debug twin end to end.

The network, its tokenizer and checkpoint: ``tests/evaluation/models/test_viclip_model.py``,
``test_clip_bpe.py`` and ``test_clip_vit.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from evaluation.metrics import viclip
from evaluation.models.clip_vit import clip_preprocess
from evaluation.models.viclip import ViCLIPModel

VIDEO = "talking/talk02_2p.mp4"


@pytest.fixture(scope="module")
def video(sample_corpus) -> tuple[np.ndarray, str, Path]:
    from omni_core.media import read_frames

    path = sample_corpus.out / VIDEO
    turns = pd.read_parquet(sample_corpus.turns_table)
    text = " ".join(turns[turns.file == VIDEO].sort_values("start_s").text)
    return read_frames(path), text, path


# --------------------------------------------------------------------------------------------
# frame sampling


def test_frame_indices_are_vbench_middle_sampling():
    # linspace(0, 100, 9).astype(int) = 0 12 25 37 50 62 75 87 100 -> (a + b - 1) // 2
    assert viclip.frame_indices(100) == [5, 18, 30, 43, 55, 68, 80, 93]
    assert viclip.frame_indices(10) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert viclip.frame_indices(8) == list(range(8))
    assert viclip.frame_indices(5) == [0, 1, 2, 3, 4, 4, 4, 4]  # padded with the last one
    assert viclip.frame_indices(1) == [0] * 8
    with pytest.raises(ValueError):
        viclip.frame_indices(0)


# --------------------------------------------------------------------------------------------
# end to end with the debug twin on a sample-corpus video


def test_debug_twin_end_to_end(video):
    from omni_core.media import read_frames

    frames, text, path = video
    model = ViCLIPModel.debug(seed=0)
    res = viclip.score_video(frames, text, model)
    assert res.frame_indices == tuple(viclip.frame_indices(len(frames)))
    assert -1.0 <= res.score <= 1.0 and res.truncated and res.n_text_tokens == 32
    # a harness that decodes only the 8 frames gets the same number
    clip = read_frames(path, indices=list(res.frame_indices))
    assert viclip.score_clip(clip, text, model, indices=res.frame_indices) == res
    # deterministic, and the weights matter
    assert viclip.score_video(frames, text, ViCLIPModel.debug(seed=0)) == res
    assert viclip.score_video(frames, text, ViCLIPModel.debug(seed=1)).score != res.score
    # preprocessing is VBench's uint8 path
    x = clip_preprocess(frames[list(res.frame_indices)], 224, quantize=True)
    with torch.no_grad():
        v = F.normalize(model.vision_encoder(x.unsqueeze(0)), dim=-1)
        t = F.normalize(model.text_encoder(model.tokenizer.tokenize(text, 32)), dim=-1)
    assert res.score == pytest.approx(float(v @ t.T), abs=1e-6)
    assert viclip.DIRECTION == "higher" and viclip.VERSION == "1"


def test_scores_can_be_negative():
    """The raw cosine is reported as is: no clamp at 0 (VBench's ViCLIP scores can be < 0)."""
    model = ViCLIPModel.debug(seed=0)
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 80, 3), dtype=np.uint8)
    a = viclip.score_clip(clip, "a man talks", model).score
    with torch.no_grad():
        model.text_encoder.text_projection.neg_()
    b = viclip.score_clip(clip, "a man talks", model).score
    assert a != 0 and b == pytest.approx(-a, abs=1e-6) and min(a, b) < 0
