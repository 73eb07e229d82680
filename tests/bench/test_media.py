"""The media benchmark's decoder comparison, here on the CPU (decord and torchcodec: the same
code path the GPU run takes with torchcodec-cuda)."""

from __future__ import annotations

import numpy as np
import pytest

from bench.media import decode_fps, markdown_gpu
from omni_core.media import write_mp4


def test_decode_fps_compares_decoders_on_the_same_frames(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 64, 96, 3), dtype=np.uint8)
    clip = write_mp4(tmp_path / "c.mp4", frames, 25)
    r = decode_fps(clip, ["decord", "torchcodec"], repeat=1)
    assert r["frames"] == 20 and r["size"] == "96x64" and r["same_frames"] is True
    assert r["decord_fps"] > 0 and r["torchcodec_fps"] > 0
    md = markdown_gpu({"corpus_clip": r, "clip_720p": r})
    assert "| 20 frames 96x64 | torchcodec |" in md and "| same frames | True |" in md
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():  # a decoder the machine cannot run: a reason, no figure
        r = decode_fps(clip, ["decord", "torchcodec-cuda"], repeat=1)
        assert r["torchcodec-cuda_fps"] is None and "needs a CUDA GPU" in markdown_gpu(
            {"corpus_clip": r, "clip_720p": r})
