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
    manifest's ``bpe_simple_vocab_16e6.txt.gz``), found without importing laion_clap (its
    import builds tokenizers from the hub cache: tests/omni_core/test_dependencies.py)."""
    spec = importlib.util.find_spec("laion_clap")
    if spec is None or spec.origin is None:
        pytest.skip("laion_clap is not installed")
    path = Path(spec.origin).parent / "clap_module" / "bpe_simple_vocab_16e6.txt.gz"
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


# --------------------------------------------------------------------------------------------
# OpenAI CLIP's vocabulary from ../shared/weights/clip-bpe, found through the weights registry

#: Token ids that OpenAI CLIP's tokenizer is published to give (``clip.tokenize`` outputs and
#: the openai/clip-vit-base-patch32 tokenizer in other projects' tests), SOT and EOT included.
KNOWN_IDS = {
    "a photo of a cat": [49406, 320, 1125, 539, 320, 2368, 49407],
    "a photo of a dog": [49406, 320, 1125, 539, 320, 1929, 49407],
    "a painting of a cat": [49406, 320, 3086, 539, 320, 2368, 49407],
    "bozuman": [49406, 647, 4091, 786, 49407],
}


@pytest.fixture(scope="module")
def shared_bpe(shared_dir, tmp_path_factory) -> Path:
    """The shared vocabulary, symlinked into a weights folder under the ViCLIP entry that ships
    it and resolved by ``require`` (the manifest's pinned size)."""
    import os

    from evaluation.models.viclip import BPE_FILE
    from omni_core.weights import require

    root = tmp_path_factory.mktemp("weights")
    (root / "viclip-l-internvid-10m-flt").mkdir()
    os.symlink(shared_dir / "weights" / "clip-bpe" / BPE_FILE,
               root / "viclip-l-internvid-10m-flt" / BPE_FILE)
    return require("viclip-l-internvid-10m-flt", BPE_FILE, root)


@pytest.fixture(scope="module")
def shared_tokenizer(shared_bpe) -> BPETokenizer:
    return BPETokenizer.from_file(shared_bpe)


def test_shared_vocabulary_is_the_pinned_file(shared_bpe):
    from omni_core.weights import VerifyState, verify

    report = verify("viclip-l-internvid-10m-flt", shared_bpe.parent.parent)
    states = {f.file.path: f.state for f in report.files}
    assert states[shared_bpe.name] == VerifyState.OK  # sha256 924691ac... of openai/CLIP


def test_known_clip_token_ids(shared_tokenizer):
    tok = shared_tokenizer
    assert tok.vocab_size == 49408 and (tok.sot_id, tok.eot_id) == (49406, 49407)
    for text, ids in KNOWN_IDS.items():
        assert [tok.sot_id, *tok.encode(text), tok.eot_id] == ids, text
        row = tok.tokenize(text, context_length=77)[0].tolist()
        assert row == ids + [0] * (77 - len(ids))  # clip.tokenize's layout
    assert tok.decode(KNOWN_IDS["a photo of a cat"][1:-1]) == "a photo of a cat "


def _release_texts(shared_dir) -> list[str]:
    """The release captions' texts as the metrics read them (ViCLIP's visual field, CLAP's
    audio field, the spoken lines); the one-person caption has typographic apostrophes."""
    from evaluation.texts import caption_text
    from omni_core.captions import parse_caption, read_caption_text

    texts = []
    for path in sorted((shared_dir / "data" / "release_test_case").glob("*/captions/*.json")):
        cap = parse_caption(read_caption_text(path))
        texts += [caption_text(cap, "visual"), caption_text(cap, "audio"),
                  *(u.text for u in cap.speech())]
    return texts


def test_same_ids_as_huggingface_tokenizers_bpe(shared_bpe, shared_tokenizer, shared_dir):
    """transformers' CLIPTokenizer (the Rust ``tokenizers`` BPE) on CLIP's vocabulary as
    vocab.json/merges.txt are derived from the same file. It normalises with NFC instead of
    ftfy, so texts ftfy would change (curly quotes) are compared with laion_clap below."""
    import gzip

    from transformers import CLIPTokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    with gzip.open(shared_bpe, "rt", encoding="utf-8") as fh:
        merges = [tuple(line.split()) for line in fh.read().split("\n")[1:49152 - 256 - 2 + 1]]
    symbols = list(bytes_to_unicode().values())
    vocab = [*symbols, *(s + "</w>" for s in symbols), *("".join(m) for m in merges),
             "<|startoftext|>", "<|endoftext|>"]
    hf = CLIPTokenizer(vocab={t: i for i, t in enumerate(vocab)}, merges=merges)
    texts = [*KNOWN_IDS, SENTENCES[0], SENTENCES[2], SENTENCES[3],
             *(t for t in _release_texts(shared_dir) if t.isascii())]
    assert len(texts) > 10
    for text in texts:
        ours = [shared_tokenizer.sot_id, *shared_tokenizer.encode(text), shared_tokenizer.eot_id]
        assert ours == hf(text)["input_ids"], text


def test_same_ids_as_clip_simple_tokenizer_on_release_captions(shared_bpe, shared_tokenizer,
                                                               shared_dir):
    """laion_clap's copy of OpenAI's SimpleTokenizer (ftfy, html unescape) reading the shared
    file, on every release caption text, curly apostrophes included."""
    spec = importlib.util.spec_from_file_location(
        "_laion_tok_shared", real_bpe_path().parent / "tokenizer.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ref = module.SimpleTokenizer(str(shared_bpe))
    texts = _release_texts(shared_dir)
    assert any("\u2019" in t for t in texts)
    for text in texts:
        assert shared_tokenizer.encode(text) == ref.encode(text), text
