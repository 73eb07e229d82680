"""The LAION-CLAP network: its seeded 10 s window, loading a checkpoint in laion_clap's release
format (with the ``roberta-base`` entry's text files) and the real-size build.

As in ``tests/evaluation/metrics/test_clap.py``, laion_clap itself is the reference: the loaded
model must give laion_clap's own embeddings for the same weights and input.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics.clap import ClapOptions, embed_audio, embed_text
from evaluation.models.clap import (
    ROBERTA_FILES,
    SAMPLE_RATE,
    ClapFusionModel,
    ClapModel,
    crop_or_repeat_pad,
)
from omni_core.errors import OmniError, WeightsError

pytestmark = pytest.mark.slow

TEXTS = ["a woman speaks softly over gentle piano music", "a dog barks in the distance"]


@pytest.fixture(scope="module")
def text_assets() -> dict[str, Path]:
    from omni_core.hf_offline import shared_clap_text_assets

    return shared_clap_text_assets()


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


# ---- the 10 s window


def test_repeat_padding_tiles_whole_copies_then_zero_fills() -> None:
    w = crop_or_repeat_pad(np.array([1, 2, 3], np.float32), n=8)
    assert w.waveform.tolist() == [1, 2, 3, 1, 2, 3, 0, 0]
    assert w.n_repeat == 2 and w.crop_start is None
    exact = crop_or_repeat_pad(np.arange(8, dtype=np.float32), n=8)
    assert exact.waveform.tolist() == list(range(8)) and exact.n_repeat == 1
    with pytest.raises(OmniError):
        crop_or_repeat_pad(np.zeros(0, np.float32))


def test_seeded_crop_is_deterministic_and_seed_dependent() -> None:
    x = np.arange(100, dtype=np.float32)
    a = crop_or_repeat_pad(x, n=10, seed=0)
    assert a.crop_start == np.random.RandomState(0).randint(0, 91)
    assert a.waveform.tolist() == list(range(a.crop_start, a.crop_start + 10))
    assert crop_or_repeat_pad(x, n=10, seed=0).crop_start == a.crop_start
    starts = {crop_or_repeat_pad(x, n=10, seed=s).crop_start for s in range(5)}
    assert len(starts) > 1


# ---- loading a checkpoint in laion_clap's release format (fusion model: HTSAT-tiny is real)


def test_fusion_checkpoint_loads_and_matches_laion_clap(
    tmp_path: Path, text_assets: dict[str, Path], unpinned_registry
) -> None:
    twin = ClapFusionModel.debug(seed=3, text_assets=text_assets)
    state = {f"module.{k}": v for k, v in twin.clap.model.state_dict().items()}
    state["module.text_branch.embeddings.position_ids"] = torch.arange(130)[None]  # old format
    entry = tmp_path / "laion-clap-630k-audioset-fusion"
    entry.mkdir()
    torch.save({"epoch": 1, "name": "fake", "state_dict": state},
               entry / "630k-audioset-fusion-best.pt")
    with pytest.raises(WeightsError, match="roberta-base"):
        ClapFusionModel.from_pretrained(root=tmp_path)
    (tmp_path / "roberta-base").mkdir()
    for rel in ROBERTA_FILES:
        shutil.copyfile(text_assets["roberta-base"] / rel, tmp_path / "roberta-base" / rel)
    registry = unpinned_registry("roberta-base", ClapFusionModel.weights_entry)

    loaded = ClapFusionModel.from_pretrained(root=tmp_path, registry=registry)
    assert not loaded.is_debug and loaded.clap.enable_fusion
    for key, value in twin.clap.model.state_dict().items():
        assert torch.equal(loaded.clap.model.state_dict()[key], value), key

    # fusion path: the whole clip -> global view + 3 seeded chunks, same as laion_clap's
    long, short = _noise(23.0, seed=5), _noise(4.0, seed=6)
    fusion = ClapOptions(checkpoint="630k_audioset_fusion")
    for audio, seed in ((long, 0), (long, 5), (short, 0)):
        ours = embed_audio(audio, loaded, dataclasses.replace(fusion, seed=seed))
        ref = _reference_audio(loaded, audio, seed)
        np.testing.assert_allclose(ours.embedding, ref, rtol=0, atol=1e-6)
    with pytest.raises(OmniError, match="checkpoint"):
        embed_audio(short, loaded, ClapOptions())  # options and model must agree
    np.random.seed(123)  # the fusion draws use the global generator: it is restored after
    before = np.random.get_state()[1].copy()
    a = embed_audio(long, loaded, fusion).embedding
    np.testing.assert_array_equal(np.random.get_state()[1], before)
    b = embed_audio(long, loaded, dataclasses.replace(fusion, seed=5)).embedding
    assert not np.allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(embed_text(TEXTS, loaded), twin.clap.get_text_embedding(TEXTS),
                               rtol=0, atol=1e-6)

    del state["module.audio_projection.0.weight"]
    torch.save({"state_dict": state}, entry / "630k-audioset-fusion-best.pt")
    with pytest.raises(WeightsError, match="does not fit"):
        ClapFusionModel.from_pretrained(root=tmp_path, registry=registry)


def test_random_build_is_htsat_base_with_roberta_base() -> None:
    model = ClapModel.random()
    text = model.clap.model.text_branch
    assert text.config.num_hidden_layers == 12 and text.config.vocab_size == 50265
    assert text.config.intermediate_size == 3072
    assert model.clap.model.audio_branch.embed_dim == 128  # HTSAT-base (tiny: 96)
    emb = model.text_embeddings(["a man speaks"])
    assert emb.shape == (1, 512) and np.isclose(np.linalg.norm(emb), 1.0, atol=1e-5)
