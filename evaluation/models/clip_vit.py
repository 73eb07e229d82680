"""OpenAI-CLIP-style building blocks shared by the AES and ViCLIP networks.

Both metrics run a CLIP ViT (AES: OpenAI CLIP ViT-L/14; ViCLIP: a video ViT-L/14 plus a CLIP
text transformer) and both use VBench's ``clip_transform``. This module holds our own
implementation of:

* :func:`clip_preprocess`: VBench's tensor pipeline (bicubic resize of the shorter side,
  center crop, /255, CLIP mean/std), with the two dtype paths VBench actually takes;
* :class:`VisionTransformer` and :class:`TextTransformer`, whose parameter names and shapes
  are those of OpenAI CLIP (``conv1``, ``class_embedding``, ``transformer.resblocks.N.attn.
  in_proj_weight``, ``ln_final``, ``text_projection`` ...), so upstream state dicts load
  strictly without renaming;
* :class:`BPETokenizer`: CLIP's byte-level BPE (``bpe_simple_vocab_16e6.txt.gz`` format), and
  :func:`train_bpe_merges` / :func:`write_bpe_merges` to make tiny vocabularies for debug
  twins and tests;
* :func:`read_torch_archive` / :func:`torchscript_state_dict`: read the tensors of a torch zip
  archive (OpenAI ships ``ViT-L-14.pt`` as a TorchScript archive, which
  ``torch.load(weights_only=True)`` refuses) with a restricted unpickler that never imports or
  calls anything outside a short allow-list: TorchScript classes become inert records.
"""

from __future__ import annotations

import collections
import gzip
import html
import io
import os
import pickle
import zipfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import WeightsError

__all__ = [
    "ArchiveObject",
    "CLIP_MEAN",
    "CLIP_STD",
    "BPETokenizer",
    "LayerNorm",
    "QuickGELU",
    "ResidualAttentionBlock",
    "SelfAttention",
    "TextConfig",
    "TextTransformer",
    "Transformer",
    "VisionConfig",
    "VisionTransformer",
    "clip_preprocess",
    "count_layers",
    "is_torchscript_archive",
    "read_torch_archive",
    "resized_size",
    "torchscript_state_dict",
    "train_bpe_merges",
    "write_bpe_merges",
]

#: OpenAI CLIP normalisation (VBench ``clip_transform``).
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------
# preprocessing


def resized_size(height: int, width: int, short: int) -> tuple[int, int]:
    """(h, w) after torchvision ``Resize(short)``: shorter side to ``short``, the other
    ``int(short * long / short_side)`` (truncated, as torchvision does)."""
    if height <= width:
        return short, int(short * width / height)
    return int(short * height / width), short


def clip_preprocess(
    frames: np.ndarray | torch.Tensor,
    size: int = 224,
    *,
    quantize: bool,
    antialias: bool = False,
    batch_size: int = 64,
) -> torch.Tensor:
    """VBench ``clip_transform(size)`` on RGB frames ``(N, H, W, 3)`` uint8 -> ``(N, 3, s, s)``.

    VBench applies torchvision's *tensor* transforms, not PIL: ``Resize(size, BICUBIC)``,
    ``CenterCrop(size)``, ``x.float() / 255``, ``Normalize(CLIP_MEAN, CLIP_STD)``. What goes in
    differs per metric, and it changes the numbers slightly:

    * ``quantize=False``: AES (``load_video`` hands over ``torch.Tensor(buffer)``, float32
      0..255): the bicubic output keeps its overshoot and fractions;
    * ``quantize=True``: ViCLIP (decord's torch bridge hands over uint8): torchvision clamps
      the bicubic output to 0..255 and rounds it back to uint8.

    ``antialias=False`` is what VBench's pinned torchvision (<0.16) did on tensors; newer
    torchvision defaults to ``True``. Frames are processed ``batch_size`` at a time (memory
    only; the numbers do not depend on it).
    """
    x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected RGB frames (N, H, W, 3), got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError("no frames to preprocess")
    h, w = int(x.shape[1]), int(x.shape[2])
    nh, nw = resized_size(h, w, size)
    top, left = int(round((nh - size) / 2.0)), int(round((nw - size) / 2.0))
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    out = []
    for start in range(0, x.shape[0], batch_size):
        chunk = x[start : start + batch_size].permute(0, 3, 1, 2).to(torch.float32)
        if (nh, nw) != (h, w):
            chunk = F.interpolate(
                chunk, size=(nh, nw), mode="bicubic", align_corners=False, antialias=antialias
            )
        if quantize:
            chunk = chunk.clamp(0, 255).round()
        chunk = chunk[:, :, top : top + size, left : left + size]
        out.append((chunk / 255.0 - mean) / std)
    return torch.cat(out)


# --------------------------------------------------------------------------------------------
# transformer blocks (OpenAI CLIP parameter names)


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in float32 whatever the activations' dtype (OpenAI CLIP's fp16 rule)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = None if self.weight is None else self.weight.float()
        b = None if self.bias is None else self.bias.float()
        return F.layer_norm(x.float(), self.normalized_shape, w, b, self.eps).to(x.dtype)


class QuickGELU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters.

    ``in_proj_weight``/``in_proj_bias`` pack q, k, v (in that order) and ``out_proj`` is a
    Linear, exactly the layout of the upstream checkpoints; the maths is scaled dot-product
    attention, batch first.
    """

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by {heads} heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1)
        q, k, v = (t.view(b, n, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        mask = None if attn_mask is None else attn_mask.to(q.dtype)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))


class _MLP(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.gelu = QuickGELU()
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(self.gelu(self.c_fc(x)))


class ResidualAttentionBlock(nn.Module):
    """Pre-LN block: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (QuickGELU MLP, 4x)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn = SelfAttention(width, heads)
        self.ln_1 = LayerNorm(width)
        self.mlp = _MLP(width)
        self.ln_2 = LayerNorm(width)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), attn_mask)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x, attn_mask)
        return x


def count_layers(sd: Mapping[str, Any], prefix: str) -> int:
    """Number of ``<prefix>transformer.resblocks.N.`` blocks in a state dict."""
    head = f"{prefix}transformer.resblocks."
    ids = {int(k[len(head) :].split(".")[0]) for k in sd if k.startswith(head)}
    if not ids:
        raise WeightsError(f"state dict has no '{head}*' keys")
    return max(ids) + 1



# --------------------------------------------------------------------------------------------
# image tower


@dataclass(frozen=True)
class VisionConfig:
    """Geometry of an OpenAI CLIP ViT; ViT-L/14 at 224 px by default."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    patch_size: int = 14
    image_size: int = 224
    output_dim: int = 768

    @property
    def grid(self) -> int:
        return self.image_size // self.patch_size

    @classmethod
    def from_state_dict(
        cls, sd: Mapping[str, torch.Tensor], prefix: str = "visual."
    ) -> VisionConfig:
        """Infer the geometry from the weights, as OpenAI's ``build_model`` does (heads =
        width / 64)."""
        conv = sd[f"{prefix}conv1.weight"]
        width, patch = int(conv.shape[0]), int(conv.shape[-1])
        grid = round((sd[f"{prefix}positional_embedding"].shape[0] - 1) ** 0.5)
        return cls(
            width=width,
            layers=count_layers(sd, prefix),
            heads=max(1, width // 64),
            patch_size=patch,
            image_size=grid * patch,
            output_dim=int(sd[f"{prefix}proj"].shape[1]),
        )


class VisionTransformer(nn.Module):
    """OpenAI CLIP image encoder (``model.visual``): the projected class token."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        w = cfg.width
        scale = w**-0.5
        self.conv1 = nn.Conv2d(3, w, cfg.patch_size, cfg.patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(w))
        self.positional_embedding = nn.Parameter(scale * torch.randn(cfg.grid**2 + 1, w))
        self.ln_pre = LayerNorm(w)
        self.transformer = Transformer(w, cfg.layers, cfg.heads)
        self.ln_post = LayerNorm(w)
        self.proj = nn.Parameter(scale * torch.randn(w, cfg.output_dim))

    @property
    def dtype(self) -> torch.dtype:
        return self.conv1.weight.dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, 3, S, S)`` normalised images -> ``(N, output_dim)`` (not normalised)."""
        x = self.conv1(images.to(self.dtype)).flatten(2).transpose(1, 2)  # N, grid^2, width
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)
        x = self.transformer(self.ln_pre(x))
        return self.ln_post(x[:, 0]) @ self.proj


# --------------------------------------------------------------------------------------------
# text tower


@dataclass(frozen=True)
class TextConfig:
    """Geometry of a CLIP text transformer; ViCLIP-L's (CLIP-L text, context 32) by default."""

    vocab_size: int = 49408
    context_length: int = 32
    width: int = 768
    heads: int = 12
    layers: int = 12
    embed_dim: int = 768

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, torch.Tensor], prefix: str = "") -> TextConfig:
        width = int(sd[f"{prefix}ln_final.weight"].shape[0])
        return cls(
            vocab_size=int(sd[f"{prefix}token_embedding.weight"].shape[0]),
            context_length=int(sd[f"{prefix}positional_embedding"].shape[0]),
            width=width,
            heads=max(1, width // 64),
            layers=count_layers(sd, prefix),
            embed_dim=int(sd[f"{prefix}text_projection"].shape[1]),
        )


class TextTransformer(nn.Module):
    """CLIP text encoder: causal transformer, features of the EOT token (the highest id)."""

    def __init__(self, cfg: TextConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.width)
        self.positional_embedding = nn.Parameter(0.01 * torch.randn(cfg.context_length, cfg.width))
        self.transformer = Transformer(cfg.width, cfg.layers, cfg.heads)
        self.ln_final = LayerNorm(cfg.width)
        self.text_projection = nn.Parameter(cfg.width**-0.5 * torch.randn(cfg.width, cfg.embed_dim))
        nn.init.normal_(self.token_embedding.weight, std=0.02)
        mask = torch.full((cfg.context_length, cfg.context_length), float("-inf")).triu_(1)
        self.register_buffer("attn_mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """``(N, context_length)`` token ids -> ``(N, embed_dim)`` (not normalised).

        No padding mask, only the causal one, as upstream: tokens after EOT cannot reach it.
        """
        if tokens.shape[-1] != self.cfg.context_length:
            raise ValueError(
                f"expected {self.cfg.context_length} tokens per text, got {tokens.shape[-1]}"
            )
        x = self.token_embedding(tokens) + self.positional_embedding.to(
            self.token_embedding.weight.dtype
        )
        x = self.ln_final(self.transformer(x, self.attn_mask))
        eot = x[torch.arange(x.shape[0], device=x.device), tokens.argmax(dim=-1)]
        return eot @ self.text_projection


# --------------------------------------------------------------------------------------------
# byte-level BPE tokenizer (CLIP's bpe_simple_vocab_16e6.txt.gz format)

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


# --------------------------------------------------------------------------------------------
# reading torch zip archives (TorchScript included) without executing pickled code

_STORAGE_DTYPES = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _StorageType:
    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


class ArchiveObject:
    """An inert stand-in for any class the archive names (TorchScript modules, config
    objects): it records the constructor arguments and the pickled state, and runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


def _archive_class(qualname: str) -> type[ArchiveObject]:
    return type(qualname.rsplit(".", 1)[-1], (ArchiveObject,), {"qualname": qualname})


def _rebuild_tensor(storage: torch.Tensor, offset: int, size: Sequence[int],
                    stride: Sequence[int], *_: Any) -> torch.Tensor:
    return storage.as_strided(tuple(size), tuple(stride), offset)


def _first(value: Any, *_: Any) -> Any:
    return value


_ALLOWED: dict[tuple[str, str], Any] = {
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _first,
    ("torch._utils", "_rebuild_parameter_with_state"): _first,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch.jit._pickle", "restore_type_tag"): _first,
    ("torch.jit._pickle", "build_intlist"): list,
    ("torch.jit._pickle", "build_doublelist"): list,
    ("torch.jit._pickle", "build_boollist"): list,
    ("torch.jit._pickle", "build_tensorlist"): list,
    ("torch", "device"): str,
}


class _ArchiveUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, zf: zipfile.ZipFile, prefix: str, source: Path) -> None:
        super().__init__(io.BytesIO(data))
        self._zf, self._prefix, self._source = zf, prefix, source
        self._storages: dict[str, torch.Tensor] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            return getattr(torch, name)  # new-style storages name a dtype
        return _archive_class(f"{module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise WeightsError(f"{self._source}: unsupported persistent record {pid!r}")
        _, kind, key, _location, numel = pid[:5]
        dtype = kind.dtype if isinstance(kind, _StorageType) else kind
        if not isinstance(dtype, torch.dtype):
            raise WeightsError(f"{self._source}: storage {key} has no known dtype ({kind!r})")
        if key not in self._storages:
            raw = bytearray(self._zf.read(f"{self._prefix}data/{key}"))
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
            if t.numel() < numel:
                raise WeightsError(f"{self._source}: storage {key} is truncated")
            self._storages[key] = t
        return self._storages[key]


def read_torch_archive(path: str | os.PathLike[str]) -> Any:
    """Unpickle ``data.pkl`` of a torch zip archive (``torch.save`` >= 1.6 or TorchScript).

    Only tensor rebuilding and ``OrderedDict`` are real; every other class the pickle names
    becomes an :class:`ArchiveObject` and no function outside the allow-list is ever called,
    so this is as safe as ``weights_only=True`` while accepting TorchScript archives and
    checkpoints that also pickle config objects. Little-endian archives only.
    """
    p = Path(path)
    if not p.is_file():
        raise WeightsError(f"checkpoint not found: {p}")
    try:
        with zipfile.ZipFile(p) as zf:
            names = zf.namelist()
            pkl = sorted((n for n in names if n.endswith("data.pkl") and n.count("/") == 1),
                         key=len)
            if not pkl:
                raise WeightsError(f"{p} is a zip file without a data.pkl: not a torch archive")
            prefix = pkl[0][: -len("data.pkl")]
            if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder") != b"little":
                raise WeightsError(f"{p}: big-endian torch archives are not supported")
            return _ArchiveUnpickler(zf.read(pkl[0]), zf, prefix, p).load()
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{p} is not a torch zip archive ({exc})") from exc
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as exc:
        raise WeightsError(f"cannot read checkpoint {p}: {exc}") from exc


def _collect(obj: Any, prefix: str, out: dict[str, torch.Tensor], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    state = obj.state if isinstance(obj, ArchiveObject) else obj
    if not isinstance(state, Mapping):
        return
    for key, value in state.items():
        if isinstance(value, torch.Tensor):
            out[f"{prefix}{key}"] = value
        elif isinstance(value, ArchiveObject | Mapping):
            _collect(value, f"{prefix}{key}.", out, seen)


def torchscript_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Every tensor attribute of a TorchScript module archive, by dotted path.

    This is a superset of ``torch.jit.load(path).state_dict()`` (plain tensor attributes such
    as CLIP's text ``attn_mask`` are included too); callers pick the keys they need.
    """
    root = read_torch_archive(path)
    if not isinstance(root, ArchiveObject):
        raise WeightsError(f"{path} is not a TorchScript module archive")
    out: dict[str, torch.Tensor] = {}
    _collect(root, "", out, set())
    return out


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """True for a TorchScript zip (it carries ``code/`` and ``constants.pkl``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
    except (OSError, zipfile.BadZipFile):
        return False
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)
