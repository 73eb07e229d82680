"""Run upstream code that calls ``from_pretrained("<hub id>")`` with no network at all.

Several upstream libraries this suite depends on resolve Hugging Face Hub ids at import or
construction time, outside our control. The worst offender is ``laion_clap``:

* ``import laion_clap`` runs ``laion_clap/training/data.py``, which calls
  ``BertTokenizer.from_pretrained("bert-base-uncased")``,
  ``RobertaTokenizer.from_pretrained("roberta-base")`` and
  ``BartTokenizer.from_pretrained("facebook/bart-base")`` at module level;
* ``CLAP_Module(tmodel="roberta")`` builds ``RobertaModel.from_pretrained("roberta-base")`` and
  ``RobertaTokenizer.from_pretrained("roberta-base")``.

``omni_core`` sets ``HF_HUB_OFFLINE=1``, so those calls can only be served from a local
Hugging Face cache. Rather than monkeypatching upstream classes, this module builds *real*
cache entries: it lays local folders out exactly as ``huggingface_hub`` stores downloads
(``models--<org>--<name>/refs/main`` holding a commit hash, and
``models--<org>--<name>/snapshots/<hash>/<files>``) and points the hub cache at that folder.
With offline mode on, ``huggingface_hub`` (2.x) resolves a branch name such as ``main`` by
reading ``refs/main`` and returns ``snapshots/<hash>/<file>`` without any HTTP call, and
``transformers`` resolves its default ``cache_dir`` from ``huggingface_hub.constants`` at call
time, so upstream code needs no changes.

The same mechanism serves real weights in production (point it at folders from the weights
registry) and tiny, locally built tokenizers and random-initialised models in tests, which is
how ``tests/omni_core/test_dependencies.py`` proves that ``laion_clap`` runs on numpy 2.

Beware: with transformers 5 a tokenizer ``from_pretrained`` whose files cannot be resolved
offline does *not* raise; the tokenizers-backed classes silently fall back to a vocabulary of
their five special tokens. ``import laion_clap`` therefore "works" offline with useless
tokenizers (every word becomes ``<unk>``); only building the RoBERTa weights fails.
:func:`has_trained_vocab` detects that, and :func:`offline_laion_clap` refuses to hand out a
``laion_clap`` whose tokenizers are degenerate.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

__all__ = [
    "BERT_SPECIAL_TOKENS",
    "CLAP_HUB_IDS",
    "DEFAULT_CORPUS",
    "has_trained_vocab",
    "ROBERTA_SPECIAL_TOKENS",
    "build_bpe_tokenizer",
    "build_clap_text_assets",
    "build_wordpiece_tokenizer",
    "local_hub",
    "offline_laion_clap",
    "populate_hub_cache",
    "repo_cache_folder",
    "save_tiny_roberta",
    "snapshot_revision",
]

#: RoBERTa/BART special tokens, in the order that gives them roberta-base's ids (0..4).
ROBERTA_SPECIAL_TOKENS: tuple[str, ...] = ("<s>", "<pad>", "</s>", "<unk>", "<mask>")
#: BERT special tokens; ``BertTokenizer`` looks them up by string, so their ids do not matter.
BERT_SPECIAL_TOKENS: tuple[str, ...] = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")

#: Hub ids that ``laion_clap`` resolves at import (tokenizers) or construction (RoBERTa).
CLAP_HUB_IDS: tuple[str, ...] = ("roberta-base", "bert-base-uncased", "facebook/bart-base")

#: A small English corpus: enough for BPE/WordPiece to learn sub-word merges for test prompts.
DEFAULT_CORPUS: tuple[str, ...] = (
    "a dog barks in the distance while rain falls on a tin roof",
    "a woman speaks softly over gentle piano music",
    "the quick brown fox jumps over the lazy dog",
    "a man laughs and claps his hands in a large hall",
    "birds are singing in the forest at sunrise",
    "a car engine starts and drives away on a wet road",
    "people talk and cheer in a crowded stadium",
    "an old clock ticks and a door creaks open",
)


def build_bpe_tokenizer(
    out_dir: str | os.PathLike[str],
    corpus: Sequence[str] = DEFAULT_CORPUS,
    vocab_size: int = 512,
    *,
    tokenizer_class: str = "RobertaTokenizer",
    model_max_length: int = 512,
) -> Path:
    """Train a byte-level BPE tokenizer on ``corpus`` and save it in RoBERTa's file layout.

    Writes ``vocab.json`` and ``merges.txt`` (what ``RobertaTokenizer`` and ``BartTokenizer``
    read) plus ``tokenizer_config.json``, with ``<s> <pad> </s> <unk> <mask>`` at ids 0..4 as in
    roberta-base, so code that hard-codes ``pad_token_id=1`` keeps working. Training a
    tokenizer locally is what lets tests run upstream tokenisation code without downloading
    the real 50k-token vocabulary. Returns ``out_dir``.
    """
    from tokenizers import ByteLevelBPETokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(
        list(corpus),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(ROBERTA_SPECIAL_TOKENS),
        show_progress=False,
    )
    bpe.save_model(str(out))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": tokenizer_class,
            "model_max_length": model_max_length,
            "bos_token": "<s>",
            "pad_token": "<pad>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "mask_token": "<mask>",
            "cls_token": "<s>",
            "sep_token": "</s>",
            "add_prefix_space": False,
        },
    )
    return out


def build_wordpiece_tokenizer(
    out_dir: str | os.PathLike[str],
    corpus: Sequence[str] = DEFAULT_CORPUS,
    vocab_size: int = 256,
    *,
    model_max_length: int = 512,
) -> Path:
    """Train a lower-cased WordPiece vocabulary on ``corpus`` in BERT's file layout.

    Writes ``vocab.txt`` and ``tokenizer_config.json`` so ``BertTokenizer.from_pretrained``
    loads it, standing in for bert-base-uncased where upstream code only needs *a* BERT
    tokenizer to exist (``laion_clap`` builds one at import). Returns ``out_dir``.
    """
    from tokenizers import BertWordPieceTokenizer

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(
        list(corpus),
        vocab_size=vocab_size,
        min_frequency=1,
        special_tokens=list(BERT_SPECIAL_TOKENS),
        show_progress=False,
    )
    wordpiece.save_model(str(out))
    _write_json(
        out / "tokenizer_config.json",
        {
            "tokenizer_class": "BertTokenizer",
            "model_max_length": model_max_length,
            "do_lower_case": True,
        },
    )
    return out


def save_tiny_roberta(
    out_dir: str | os.PathLike[str],
    vocab_size: int,
    *,
    hidden_size: int = 768,
    num_hidden_layers: int = 1,
    num_attention_heads: int = 12,
    intermediate_size: int = 256,
    max_position_embeddings: int = 130,
    seed: int = 0,
) -> Path:
    """Save a random-initialised ``RobertaModel`` (config + safetensors) to ``out_dir``.

    ``hidden_size`` defaults to roberta-base's 768 because ``laion_clap`` hard-codes
    ``nn.Linear(768, ...)`` after the text branch; depth, feed-forward width and vocabulary
    are shrunk so construction and a forward pass stay fast on CPU. The class, and hence the
    code path, is the one upstream checkpoints load into. ``max_position_embeddings`` must
    exceed the padded length plus RoBERTa's position offset (``laion_clap`` pads to 77, so at
    least 79). Token ids match :data:`ROBERTA_SPECIAL_TOKENS` (bos 0, pad 1, eos 2).
    """
    import torch
    from transformers import RobertaConfig, RobertaModel

    config = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_hidden_layers,
        num_attention_heads=num_attention_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
        type_vocab_size=1,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
    )
    torch.manual_seed(seed)
    model = RobertaModel(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    return out


def snapshot_revision(folder: str | os.PathLike[str]) -> str:
    """Return a 40-hex pseudo commit hash of ``folder``'s file names and contents.

    ``huggingface_hub`` only treats a revision as a pinned commit when it looks like a git
    SHA-1, and snapshots are keyed by it; deriving it from the content makes the cache layout
    deterministic and makes a changed source folder land in a new snapshot.
    """
    root = Path(folder)
    digest = hashlib.sha1(usedforsecurity=False)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(b"\0")
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def repo_cache_folder(repo_id: str, repo_type: str = "model") -> str:
    """Name of a repository's folder in a hub cache, e.g. ``models--facebook--bart-base``."""
    return f"{repo_type}s--" + repo_id.replace("/", "--")


def populate_hub_cache(
    cache_dir: str | os.PathLike[str],
    repos: Mapping[str, str | os.PathLike[str]],
    *,
    revision: str = "main",
) -> dict[str, Path]:
    """Copy each local folder into ``cache_dir`` laid out as a Hugging Face hub cache.

    For every ``repo_id -> folder`` this writes ``models--<org>--<name>/snapshots/<hash>/``
    (a copy of the folder) and ``refs/<revision>`` containing ``<hash>``. That is the layout
    ``huggingface_hub.hf_hub_download``/``snapshot_download`` read when offline, so
    ``from_pretrained(repo_id)`` resolves without network and without code changes. Returns
    the snapshot folder of each repo.
    """
    cache = Path(cache_dir)
    snapshots: dict[str, Path] = {}
    for repo_id, folder in repos.items():
        source = Path(folder)
        if not source.is_dir():
            raise NotADirectoryError(f"{repo_id}: {source} is not a folder")
        commit = snapshot_revision(source)
        storage = cache / repo_cache_folder(repo_id)
        snapshot = storage / "snapshots" / commit
        if not snapshot.exists():
            partial = snapshot.with_name(commit + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            shutil.copytree(source, partial)
            partial.rename(snapshot)
        (storage / "refs").mkdir(parents=True, exist_ok=True)
        (storage / "refs" / revision).write_text(commit)
        snapshots[repo_id] = snapshot
    return snapshots


@contextmanager
def local_hub(
    cache_dir: str | os.PathLike[str],
    repos: Mapping[str, str | os.PathLike[str]] | None = None,
) -> Iterator[Path]:
    """Serve hub ids from ``cache_dir`` (after adding ``repos`` to it), strictly offline.

    Inside the block ``HF_HUB_CACHE`` points at ``cache_dir`` and offline mode is on. Both
    the environment variables and ``huggingface_hub.constants`` are set, because the module
    reads the environment once at import and later code (``transformers.utils.hub`` included)
    reads the module attributes at call time. Everything is restored on exit. Yields the
    cache folder.
    """
    from huggingface_hub import constants

    cache = Path(cache_dir)
    cache.mkdir(parents=True, exist_ok=True)
    if repos:
        populate_hub_cache(cache, repos)
    env_keys = ("HF_HUB_CACHE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    saved_env = {key: os.environ.get(key) for key in env_keys}
    saved_constants = (constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE)
    os.environ["HF_HUB_CACHE"] = str(cache)
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    constants.HF_HUB_CACHE = str(cache)
    constants.HF_HUB_OFFLINE = True
    try:
        yield cache
    finally:
        constants.HF_HUB_CACHE, constants.HF_HUB_OFFLINE = saved_constants
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def build_clap_text_assets(
    work_dir: str | os.PathLike[str],
    corpus: Sequence[str] = DEFAULT_CORPUS,
    *,
    bpe_vocab_size: int = 512,
    wordpiece_vocab_size: int = 256,
    seed: int = 0,
) -> dict[str, Path]:
    """Build stand-ins for every hub repo ``laion_clap`` touches, under ``work_dir``.

    * ``roberta-base``: a locally trained byte-level BPE tokenizer and a tiny random
      ``RobertaModel`` (768 wide, one layer) sized to that tokenizer's vocabulary;
    * ``facebook/bart-base``: the same BPE files (BART and RoBERTa share the GPT-2 scheme),
      tagged as a ``BartTokenizer``; only its tokenizer is loaded at import;
    * ``bert-base-uncased``: a locally trained WordPiece vocabulary.

    Returns ``{hub id: folder}``, ready for :func:`local_hub`.
    """
    from transformers import RobertaTokenizer

    root = Path(work_dir)
    roberta = build_bpe_tokenizer(root / "roberta-base", corpus, bpe_vocab_size)
    vocab_size = len(RobertaTokenizer.from_pretrained(str(roberta)))
    save_tiny_roberta(roberta, vocab_size, seed=seed)
    bart = build_bpe_tokenizer(
        root / "bart-base", corpus, bpe_vocab_size, tokenizer_class="BartTokenizer"
    )
    bert = build_wordpiece_tokenizer(root / "bert-base-uncased", corpus, wordpiece_vocab_size)
    return {"roberta-base": roberta, "facebook/bart-base": bart, "bert-base-uncased": bert}


_SHARED_ASSETS: dict[int, dict[str, Path]] = {}


def shared_clap_text_assets(seed: int = 0) -> dict[str, Path]:
    """:func:`build_clap_text_assets` built once per process (in a temporary folder removed at
    exit) and shared by every caller.

    The tokenizers library breaks ties between equally frequent merges in hash-map order,
    which is random per build, and ``laion_clap`` keeps the tokenizers it loaded at its first
    import for the life of the process: every offline user in one process must therefore see
    the same files, or its token ids disagree with the ones laion_clap already holds.
    """
    if seed not in _SHARED_ASSETS:
        import atexit
        import shutil
        import tempfile

        folder = tempfile.mkdtemp(prefix="omni-clap-text-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        _SHARED_ASSETS[seed] = build_clap_text_assets(Path(folder), seed=seed)
    return _SHARED_ASSETS[seed]


def has_trained_vocab(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Whether ``tokenizer`` knows any token besides its special tokens.

    transformers 5 returns a tokenizer holding only its special tokens, without an error, when
    ``from_pretrained`` finds no vocabulary files offline; such a tokenizer maps all text to
    ``<unk>`` and would make every text embedding identical.
    """
    special = set(tokenizer.all_special_tokens)
    return any(token not in special for token in tokenizer.get_vocab())


#: laion_clap.training.data's module-level tokenizers, by the hub id each is loaded from.
_CLAP_DATA_TOKENIZERS: dict[str, str] = {
    "roberta-base": "roberta_tokenizer",
    "bert-base-uncased": "bert_tokenizer",
    "facebook/bart-base": "bart_tokenizer",
}


@contextmanager
def offline_laion_clap(
    cache_dir: str | os.PathLike[str],
    repos: Mapping[str, str | os.PathLike[str]] | None = None,
    *,
    required: Sequence[str] = CLAP_HUB_IDS,
) -> Iterator[ModuleType]:
    """Import ``laion_clap`` with its hub ids served from ``cache_dir``; yield the module.

    ``repos`` maps the ids in :data:`CLAP_HUB_IDS` to local folders (real weights, or those of
    :func:`build_clap_text_assets`); ids already in ``cache_dir`` may be left out. Construct
    ``laion_clap.CLAP_Module`` inside the block too, since it loads ``roberta-base`` again.

    Raises ``RuntimeError`` if the import-time tokenizer of any hub id in ``required`` came out
    degenerate (see :func:`has_trained_vocab`), which is what a missing cache entry produces
    under transformers 5 instead of an error. ``laion_clap``'s module-level tokenizers are bound
    on first import, so a process that already imported it keeps the tokenizers it had.
    """
    with local_hub(cache_dir, repos):
        laion_clap = importlib.import_module("laion_clap")
        data = sys.modules["laion_clap.training.data"]
        for repo_id in required:
            tokenizer = getattr(data, _CLAP_DATA_TOKENIZERS[repo_id])
            if not has_trained_vocab(tokenizer):
                raise RuntimeError(
                    f"laion_clap loaded an empty tokenizer for {repo_id!r}: it is not in the "
                    f"local hub cache {cache_dir} (or laion_clap was imported before it was)"
                )
        yield laion_clap


def _write_json(path: Path, payload: Mapping[str, object]) -> None:
    """Write ``payload`` as pretty-printed UTF-8 JSON."""
    path.write_text(json.dumps(payload, indent=2, sort_keys=True) + "\n", encoding="utf-8")
