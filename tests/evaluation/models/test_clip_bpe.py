"""CLIP's BPE tokenizer: laion_clap's SimpleTokenizer on the real vocabulary, the context cut,
the vocabulary file format and tiny trained vocabularies."""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import pytest
import torch

from evaluation.models.clip_bpe import BPETokenizer, train_bpe_merges, write_bpe_merges
from omni_core.errors import WeightsError


def real_bpe_path() -> Path:
    """CLIP's real vocabulary, as shipped inside the laion_clap package (same sha256 as the
    manifest's ``bpe_simple_vocab_16e6.txt.gz``)."""
    path = Path(str(importlib.resources.files("laion_clap.clap_module")
                    .joinpath("bpe_simple_vocab_16e6.txt.gz")))
    if not path.is_file():
        pytest.skip("laion_clap's copy of the CLIP BPE vocabulary is not installed")
    return path


SENTENCES = [
    "A man in a blue shirt talks to the camera, smiling.",
    "Two people: <S>Hello there!<E> and   they're   laughing &amp; waving...",
    "Café crème, naïve façade, 3.14159 and 2024-05-01; don't STOP.",
    "emoji 😀 and 日本語 text",
    "",
]


@pytest.fixture(scope="module")
def real_tokenizer() -> BPETokenizer:
    return BPETokenizer.from_file(real_bpe_path())


def test_tokenizer_matches_laion_clap_simple_tokenizer_on_real_vocab(real_tokenizer):
    path = real_bpe_path()
    # load laion_clap's tokenizer module alone (the package __init__ pulls in training code)
    spec = importlib.util.spec_from_file_location("_laion_tok", path.parent / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    SimpleTokenizer = module.SimpleTokenizer  # noqa: N806
    ours, ref = real_tokenizer, SimpleTokenizer(str(path))
    assert ours.vocab_size == 49408 and (ours.sot_id, ours.eot_id) == (49406, 49407)
    for text in SENTENCES:
        assert ours.encode(text) == ref.encode(text), text
    assert ours.decode(ours.encode(SENTENCES[0])).strip() == (
        "a man in a blue shirt talks to the camera , smiling .")


def test_context_cut_ends_with_eot(real_tokenizer):
    tok = real_tokenizer
    long = " ".join(["speaking"] * 60)
    ids = tok.tokenize([long, "hi"], context_length=32)
    assert ids.shape == (2, 32) and ids.dtype == torch.long
    body = tok.encode(long)
    assert ids[0].tolist() == [49406, *body[:30], 49407]
    assert ids[1].tolist()[:3] == [49406, *tok.encode("hi"), 49407][:3]
    assert ids[1, 2:].tolist() == [49407] + [0] * 29
    assert int(ids[0].argmax()) == 31  # the text tower reads the EOT position


def test_bpe_file_round_trip_and_tiny_vocab(tmp_path):
    merges = train_bpe_merges(["the cat sat on the mat with the hat"], 12)
    assert merges[0] == ("a", "t</w>")  # most frequent pair first
    path = write_bpe_merges(tmp_path / "bpe_simple_vocab_16e6.txt.gz", merges)
    tok = BPETokenizer.from_file(path)
    assert tok.vocab_size == 512 + len(merges) + 2
    assert tok.encode("The hat!") == BPETokenizer(merges).encode("The hat!")
    assert tok.decode(tok.encode("the mat")) == "the mat "
    path.write_bytes(b"not gzip")
    with pytest.raises(WeightsError, match="BPE vocabulary"):
        BPETokenizer.from_file(path)
