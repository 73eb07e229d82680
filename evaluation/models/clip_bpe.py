"""CLIP's byte-level BPE tokenizer (the ``bpe_simple_vocab_16e6.txt.gz`` format), our own code.

ViCLIP's text tower reads CLIP token ids (:mod:`.viclip`). :func:`train_bpe_merges` and
:func:`write_bpe_merges` make tiny vocabularies for debug twins and tests.
"""

from __future__ import annotations

import collections
import gzip
import html
import os
from collections.abc import Iterable, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from omni_core.errors import WeightsError

__all__ = [
    "EOT",
    "MAX_MERGES",
    "SOT",
    "BPETokenizer",
    "bytes_to_unicode",
    "train_bpe_merges",
    "write_bpe_merges",
]


SOT = "<|startoftext|>"
EOT = "<|endoftext|>"
#: CLIP reads merges lines [1, 49152 - 256 - 2 + 1): 48894 merges -> a 49408-token vocabulary.
MAX_MERGES = 49152 - 256 - 2


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte -> printable character table (so merges never see whitespace bytes)."""
    keep = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("\u00a1"), ord("\u00ac") + 1),
        *range(ord("\u00ae"), ord("\u00ff") + 1),
    ]
    table = {b: chr(b) for b in keep}  # insertion order is the vocabulary order
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + len(table) - len(keep))
    return table


def _clean(text: str) -> str:
    import ftfy
    import regex

    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return regex.sub(r"\s+", " ", text).strip().lower()


@lru_cache(maxsize=1)
def _word_pattern() -> Any:
    import regex

    return regex.compile(
        r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]"""
        r"""|[^\s\p{L}\p{N}]+""",
        regex.IGNORECASE,
    )


class BPETokenizer:
    """CLIP's tokenizer: ftfy + html unescape, lower case, word regex, byte-level BPE.

    Vocabulary: the 256 byte symbols, the same with ``</w>``, one entry per merge, then
    ``<|startoftext|>`` and ``<|endoftext|>`` (EOT is therefore the highest id, which the
    text tower relies on to find it).
    """

    def __init__(self, merges: Sequence[tuple[str, str]]) -> None:
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        merges = [tuple(m) for m in merges]
        vocab = list(self.byte_encoder.values())
        vocab += [v + "</w>" for v in vocab]
        vocab += ["".join(m) for m in merges]
        vocab += [SOT, EOT]
        self.encoder = {tok: i for i, tok in enumerate(vocab)}
        self.decoder = {i: tok for tok, i in self.encoder.items()}
        self.ranks = {m: i for i, m in enumerate(merges)}
        self.sot_id = self.encoder[SOT]
        self.eot_id = self.encoder[EOT]
        self._cache: dict[str, list[str]] = {SOT: [SOT], EOT: [EOT]}

    @property
    def vocab_size(self) -> int:
        return len(self.encoder)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BPETokenizer:
        """Read a ``bpe_simple_vocab_16e6.txt.gz``-format file (gzip; a header line, then one
        ``a b`` merge per line; CLIP keeps the first 48894)."""
        try:
            with gzip.open(path, "rt", encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except (OSError, EOFError, UnicodeDecodeError) as exc:
            raise WeightsError(f"cannot read BPE vocabulary {path}: {exc}") from exc
        # blank lines (a trailing newline in a small file) are skipped
        merges = [tuple(line.split()) for line in lines[1:] if line.strip()][:MAX_MERGES]
        bad = [m for m in merges if len(m) != 2]
        if bad:
            raise WeightsError(f"BPE vocabulary {path} has a malformed merge line: {bad[0]!r}")
        return cls(merges)  # type: ignore[arg-type]

    def _bpe(self, token: str) -> list[str]:
        if token in self._cache:
            return self._cache[token]
        word = [*token[:-1], token[-1] + "</w>"]
        while len(word) > 1:
            pairs = {(a, b) for a, b in zip(word, word[1:], strict=False)}
            best = min(pairs, key=lambda p: self.ranks.get(p, float("inf")))
            if best not in self.ranks:
                break
            merged: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = merged
        self._cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` without SOT/EOT."""
        ids: list[int] = []
        for piece in _word_pattern().findall(_clean(text)):
            symbols = "".join(self.byte_encoder[b] for b in piece.encode("utf-8"))
            ids.extend(self.encoder[s] for s in self._bpe(symbols))
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        text = "".join(self.decoder[int(i)] for i in ids)
        raw = bytearray(self.byte_decoder[c] for c in text)
        return raw.decode("utf-8", errors="replace").replace("</w>", " ")

    def tokenize(self, texts: str | Sequence[str], context_length: int) -> torch.Tensor:
        """``(N, context_length)`` int64 ids: SOT, text, EOT, zero padding.

        A text that does not fit is cut to ``context_length`` tokens and its last token is
        replaced by EOT (ViCLIP's ``truncate=True``), so the text tower always finds EOT.
        """
        if isinstance(texts, str):
            texts = [texts]
        out = torch.zeros(len(texts), context_length, dtype=torch.long)
        for row, text in enumerate(texts):
            ids = [self.sot_id, *self.encode(text), self.eot_id]
            if len(ids) > context_length:
                ids = ids[:context_length]
                ids[-1] = self.eot_id
            out[row, : len(ids)] = torch.tensor(ids)
        return out


def train_bpe_merges(texts: Iterable[str], n_merges: int) -> list[tuple[str, str]]:
    """Learn up to ``n_merges`` BPE merges on ``texts`` (most frequent pair first; ties broken
    by the pair itself, so the result is deterministic). For tiny debug vocabularies only."""
    enc = bytes_to_unicode()
    counts: collections.Counter[tuple[str, ...]] = collections.Counter()
    for text in texts:
        for piece in _word_pattern().findall(_clean(text)):
            sym = "".join(enc[b] for b in piece.encode("utf-8"))
            counts[(*sym[:-1], sym[-1] + "</w>")] += 1
    merges: list[tuple[str, str]] = []
    while len(merges) < n_merges:
        pairs: collections.Counter[tuple[str, str]] = collections.Counter()
        for word, n in counts.items():
            for pair in zip(word, word[1:], strict=False):
                pairs[pair] += n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p], p))
        merges.append(best)
        new_counts: collections.Counter[tuple[str, ...]] = collections.Counter()
        for word, n in counts.items():
            out: list[str] = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                    out.append(word[i] + word[i + 1])
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            new_counts[tuple(out)] += n
        counts = new_counts
    return merges


def write_bpe_merges(path: str | os.PathLike[str], merges: Iterable[tuple[str, str]]) -> Path:
    """Write merges in the ``bpe_simple_vocab_16e6.txt.gz`` format (gzip, header line first)."""
    p = Path(path)
    body = "#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges)
    with gzip.open(p, "wt", encoding="utf-8") as fh:
        fh.write(body)
    return p
