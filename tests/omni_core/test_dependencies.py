"""The resolved dependency set works: laion_clap's encoders run on numpy 2, fully offline.

laion-clap 1.1.7 declares ``numpy<2`` while pyannote.audio 4 needs ``numpy>=2``; the lock file
overrides laion-clap's bound (requirements/overrides.txt). These tests are the evidence that
the override is safe for the code paths the evaluator uses: CLAP's HTSAT audio encoder and
RoBERTa text encoder are built with the same classes the upstream checkpoints load into,
random-initialised and shrunk (one RoBERTa layer, tiny vocabulary) so no weights are needed,
and run with every hub id laion_clap asks for served from a local cache (omni_core.hf_offline).
Sockets are disabled while the model is built and run, so any download attempt fails loudly.
"""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from omni_core.hf_offline import (
    CLAP_HUB_IDS,
    has_trained_vocab,
    local_hub,
    offline_laion_clap,
    repo_cache_folder,
    shared_clap_text_assets,
)

pytestmark = pytest.mark.slow

SAMPLE_RATE = 48_000
JOINT_EMBED_DIM = 512  # CLAP's joint_embed_shape default, used by every released checkpoint
SENTENCES = ["a dog barks in the distance", "birds are singing in the forest at sunrise"]


@dataclass
class OfflineClap:
    """A random-initialised CLAP_Module plus the local assets it was built from."""

    laion_clap: ModuleType
    module: Any  # laion_clap.CLAP_Module
    repos: dict[str, Path]
    cache: Path


def _refuse_network(*args: object, **kwargs: object) -> None:
    raise AssertionError(f"network access attempted while offline: {args!r}")


@pytest.fixture(scope="module")
def offline_clap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfflineClap]:
    import torch

    root = tmp_path_factory.mktemp("hf_offline")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", _refuse_network)
        patch.setattr(socket.socket, "connect_ex", _refuse_network)
        repos = shared_clap_text_assets()  # what laion_clap holds if imported earlier
        with offline_laion_clap(root / "hub", repos) as laion_clap:
            torch.manual_seed(0)
            module = laion_clap.CLAP_Module(
                enable_fusion=False, device="cpu", amodel="HTSAT-tiny", tmodel="roberta"
            )
        module.eval()
        yield OfflineClap(laion_clap, module, repos, root / "hub")


def _local_vocab(folder: Path) -> dict[str, int]:
    """Token -> id as written by omni_core.hf_offline (vocab.json for BPE, vocab.txt for BERT)."""
    if (folder / "vocab.json").exists():
        return json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    lines = (folder / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {token: index for index, token in enumerate(lines)}


def _assert_unit_rows(embeddings: np.ndarray, rows: int) -> None:
    assert embeddings.shape == (rows, JOINT_EMBED_DIM)
    assert np.isfinite(embeddings).all()
    np.testing.assert_allclose(np.linalg.norm(embeddings, axis=1), 1.0, rtol=0, atol=1e-5)


def test_numpy_2_runs_laion_clap(offline_clap: OfflineClap) -> None:
    assert np.lib.NumpyVersion(np.__version__) >= "2.0.0"
    assert "laion_clap" in sys.modules
    assert hasattr(offline_clap.laion_clap, "CLAP_Module")


def test_local_hub_is_a_hub_cache_and_is_restored(offline_clap: OfflineClap) -> None:
    from huggingface_hub import constants, hf_hub_download

    before = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    with local_hub(offline_clap.cache):
        for repo_id in CLAP_HUB_IDS:
            storage = offline_clap.cache / repo_cache_folder(repo_id)
            commit = (storage / "refs" / "main").read_text()
            resolved = Path(hf_hub_download(repo_id, "tokenizer_config.json"))
            assert resolved == storage / "snapshots" / commit / "tokenizer_config.json"
    assert (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE) == before


def test_missing_tokenizer_is_detected_not_silently_empty(tmp_path: Path) -> None:
    """transformers 5 builds a special-tokens-only tokenizer when offline files are missing."""
    from transformers import RobertaTokenizer

    with local_hub(tmp_path / "empty_hub"):
        try:
            tokenizer = RobertaTokenizer.from_pretrained("roberta-base")
        except OSError:
            return  # an explicit failure is fine too
    assert not has_trained_vocab(tokenizer)


def test_upstream_classes_are_built(offline_clap: OfflineClap) -> None:
    from transformers import RobertaModel

    model = offline_clap.module.model
    # The classes released checkpoints load into (CLAP_Module.load_ckpt -> model.load_state_dict).
    assert type(model).__name__ == "CLAP"
    assert type(model.audio_branch).__name__ == "HTSAT_Swin_Transformer"
    assert isinstance(model.text_branch, RobertaModel)
    assert model.text_branch.config.hidden_size == 768


def test_audio_embedding_of_one_second_48k(offline_clap: OfflineClap) -> None:
    rng = np.random.default_rng(0)
    waveform = (0.1 * rng.standard_normal((1, SAMPLE_RATE))).astype(np.float32)
    embeddings = offline_clap.module.get_audio_embedding_from_data(waveform)
    _assert_unit_rows(embeddings, rows=1)


def test_text_embedding_uses_local_tokenizer(offline_clap: OfflineClap) -> None:
    import torch
    from transformers import RobertaTokenizer

    module = offline_clap.module
    local_dir = offline_clap.repos["roberta-base"]
    local_vocab = _local_vocab(local_dir)
    # The tokenizer CLAP_Module resolved for "roberta-base" is the one trained locally, and so
    # are those laion_clap.training.data bound at import for its three text models.
    assert has_trained_vocab(module.tokenize)
    assert module.tokenize.get_vocab() == local_vocab
    data = sys.modules["laion_clap.training.data"]
    for name, repo_id in [
        ("roberta_tokenizer", "roberta-base"),
        ("bart_tokenizer", "facebook/bart-base"),
        ("bert_tokenizer", "bert-base-uncased"),
    ]:
        assert getattr(data, name).get_vocab() == _local_vocab(offline_clap.repos[repo_id]), name

    encoded = module.tokenizer(SENTENCES)
    reference = RobertaTokenizer.from_pretrained(str(local_dir))(
        SENTENCES, padding="max_length", truncation=True, max_length=77, return_tensors="pt"
    )
    assert torch.equal(encoded["input_ids"], reference["input_ids"])
    ids = encoded["input_ids"]
    assert ids.shape == (2, 77)
    assert int(ids.max()) < len(local_vocab) < 1_000  # roberta-base has 50 265 tokens
    assert module.model.text_branch.config.vocab_size == len(local_vocab)

    embeddings = module.get_text_embedding(SENTENCES)
    _assert_unit_rows(embeddings, rows=2)
    # get_text_embedding runs exactly those token ids through the RoBERTa branch.
    with torch.no_grad():
        direct = module.model.get_text_embedding(dict(reference)).numpy()
    np.testing.assert_allclose(embeddings, direct, rtol=0, atol=1e-6)
    assert not np.allclose(embeddings[0], embeddings[1])
