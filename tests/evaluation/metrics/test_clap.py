"""CLAP: reference equivalence with laion_clap's own API, preprocessing, seeded crop.

laion_clap is installed, so the reference is laion_clap itself: the same random CLAP_Module
(HTSAT-tiny, tiny local RoBERTa) fed through ``get_audio_embedding_from_data`` /
``get_text_embedding`` and through our scoring path must give the same embeddings. Upstream's
crop draws from numpy's global generator; seeding it with ``np.random.seed(seed)`` reproduces
our ``seed`` option exactly. One module-scoped model per architecture keeps the file fast
(laion_clap's import and construction dominate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from evaluation.metrics.clap import (
    ClapOptions,
    cosine,
    embed_audio,
    embed_text,
    preprocess,
    score_clap,
)
from evaluation.models.clap import (
    CLIP_SAMPLES,
    SAMPLE_RATE,
    ClapFusionModel,
    ClapModel,
    model_class,
)
from omni_core.errors import OmniError
from omni_core.media import load_audio

pytestmark = pytest.mark.slow

TEXTS = ["a woman speaks softly over gentle piano music", "a dog barks in the distance"]


@pytest.fixture(scope="module")
def text_assets() -> dict[str, Path]:
    from omni_core.hf_offline import shared_clap_text_assets

    return shared_clap_text_assets()


@pytest.fixture(scope="module")
def model(text_assets: dict[str, Path]) -> ClapModel:
    return ClapModel.debug(seed=0, text_assets=text_assets)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.3 * np.sin(2 * np.pi * 440 * t * (1 + 0.2 * t))
    return (tone + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


def _reference_audio(model: ClapModel, audio: np.ndarray, seed: int) -> np.ndarray:
    """laion_clap's numpy path, its global-generator crop seeded the way our option is."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        return model.clap.get_audio_embedding_from_data(audio[None, :])[0]
    finally:
        np.random.set_state(state)


# ---- protocol math


def test_preprocess_quantises_like_laion_clap(model: ClapModel) -> None:
    # (``model`` first: laion_clap must be imported inside its offline hub)
    from laion_clap.training.data import float32_to_int16, int16_to_float32

    x = np.concatenate([_noise(0.5), [1.5, -1.5, 0.99999]]).astype(np.float32)
    np.testing.assert_array_equal(preprocess(x), int16_to_float32(float32_to_int16(x)))
    np.testing.assert_array_equal(preprocess(x, ClapOptions(int16_round_trip=False)), x)
    av = preprocess(x, ClapOptions(int16_round_trip=False, max_seconds=0.25, remove_dc=True))
    head = x[: SAMPLE_RATE // 4]
    np.testing.assert_allclose(av, head - head.mean(), atol=1e-7)
    stereo = preprocess(np.stack([x, x], axis=1), ClapOptions(int16_round_trip=False))
    np.testing.assert_allclose(stereo, x, atol=1e-7)


def test_options_validate_the_checkpoint() -> None:
    assert model_class("music_speech_audioset") is ClapModel
    assert model_class("630k_audioset_fusion") is ClapFusionModel
    with pytest.raises(OmniError):
        ClapOptions(checkpoint="630k-best")


# ---- reference equivalence (laion_clap's own API, same weights, same input)


@pytest.mark.parametrize("seconds", [3.3, 10.0, 12.5])
def test_audio_embedding_equals_laion_clap(model: ClapModel, seconds: float) -> None:
    audio = _noise(seconds, seed=1)
    for seed in (0, 7) if seconds > 10 else (0,):
        ours = embed_audio(audio, model, ClapOptions(seed=seed))
        ref = _reference_audio(model, audio, seed)
        np.testing.assert_allclose(ours.embedding, ref, rtol=0, atol=1e-6)
    assert (ours.crop_start_s is not None) == (seconds > 10)
    assert ours.n_repeat == max(1, CLIP_SAMPLES // audio.size)  # 3 copies of 3.3 s


def test_text_embedding_and_cosine_equal_laion_clap(model: ClapModel) -> None:
    ours = embed_text(TEXTS, model)
    ref = model.clap.get_text_embedding(TEXTS)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(embed_text(TEXTS[0], model), ref[0], rtol=0, atol=1e-6)
    audio = _noise(4.0, seed=2)
    res = score_clap(audio, TEXTS[0], model)
    a = torch.from_numpy(_reference_audio(model, audio, 0))
    expected = torch.cosine_similarity(a, torch.from_numpy(ref[0]), dim=-1).item()  # av-bench
    assert res.score == pytest.approx(expected, abs=1e-6)
    assert -1.0 <= res.score <= 1.0
    assert cosine(res.audio.embedding, res.text_embedding) == res.score


def test_long_text_is_cut_to_77_tokens(model: ClapModel) -> None:
    long = " ".join(["birds are singing in the forest at sunrise"] * 20)
    assert model.clap.tokenizer([long])["input_ids"].shape == (1, 77)
    assert embed_text(long, model).shape == (512,)


def test_seed_moves_the_crop_of_long_audio_only(model: ClapModel) -> None:
    long = _noise(14.0, seed=3)
    a, b = (embed_audio(long, model, ClapOptions(seed=s)) for s in (0, 1))
    assert a.crop_start_s != b.crop_start_s
    assert not np.allclose(a.embedding, b.embedding, atol=1e-5)
    again = embed_audio(long, model, ClapOptions(seed=0))
    assert again.crop_start_s == a.crop_start_s
    np.testing.assert_array_equal(again.embedding, a.embedding)
    short = _noise(6.0, seed=4)
    np.testing.assert_array_equal(embed_audio(short, model, ClapOptions(seed=0)).embedding,
                                  embed_audio(short, model, ClapOptions(seed=1)).embedding)


def test_debug_end_to_end_on_sample_corpus(sample_corpus, model: ClapModel) -> None:
    turns = pq.read_table(sample_corpus.turns_table).to_pylist()
    for rel, expect_crop in (("talking/talk00_1p.mp4", False), ("recording/sample.wav", True)):
        audio = load_audio(sample_corpus.out / rel, SAMPLE_RATE)
        text = " ".join(t["text"] for t in turns if t["file"] == rel and t["text"])
        text = text or "two people talk on the telephone"
        res = score_clap(audio, text, model)
        assert np.isfinite(res.score) and -1.0 <= res.score <= 1.0
        assert (res.audio.crop_start_s is not None) == expect_crop
        if expect_crop:
            assert 0.0 <= res.audio.crop_start_s <= audio.size / SAMPLE_RATE - 10.0
        if not expect_crop:
            assert score_clap(audio, text, model).score == res.score
