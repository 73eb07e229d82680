"""The text encoder: umT5-xxl's encoder over the structured caption's prompt text.

The release encodes :meth:`omni_core.captions.StructuredCaption.prompt_text` (the speaker
timestamps and audio description removed, block tags stripped) with Wan's umT5-xxl encoder
(``models_t5_umt5-xxl-enc-bf16.pth``, tokenizer ``google/umt5-xxl``): the text is cleaned
(HTML entities unescaped, whitespace collapsed), tokenized to at most 512 tokens with the
end-of-sequence token, encoded with padding masked out, and each output cut to its real
length (the model zero-pads it back to 512 before its text embedding).

We run the encoder as transformers' ``UMT5EncoderModel``; :func:`from_wan_t5` renames the
release checkpoint's keys onto it (Wan's ``blocks.N.attn.q`` is ``encoder.block.N.layer.0
.SelfAttention.q``, its gated-GELU ``ffn.gate.0`` / ``fc1`` / ``fc2`` are ``wi_0`` / ``wi_1`` /
``wo``, each block's own relative-position table is ``relative_attention_bias``; see
:data:`WAN_T5_RENAMES`). ``debug`` builds a tiny random umT5 with a word-level tokenizer
made on the spot; ``random`` the full-size encoder with random weights.
"""

from __future__ import annotations

import html
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from omni_core.errors import OmniError
from omni_core.weights import PretrainedComponent, safe_torch_load

#: umT5-xxl's encoder (the release's text encoder)
UMT5_XXL = {"vocab_size": 256384, "d_model": 4096, "d_kv": 64, "d_ff": 10240,
            "num_layers": 24, "num_heads": 64, "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "feed_forward_proj": "gated-gelu",
            "layer_norm_epsilon": 1e-6}

#: Wan T5 key pattern -> transformers UMT5EncoderModel key (``{i}``: block index)
WAN_T5_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^token_embedding\.weight$", "shared.weight"),
    (r"^norm\.weight$", "encoder.final_layer_norm.weight"),
    (r"^blocks\.(\d+)\.norm1\.weight$", "encoder.block.{i}.layer.0.layer_norm.weight"),
    (r"^blocks\.(\d+)\.attn\.([qkvo])\.weight$",
     "encoder.block.{i}.layer.0.SelfAttention.{p}.weight"),
    (r"^blocks\.(\d+)\.pos_embedding\.embedding\.weight$",
     "encoder.block.{i}.layer.0.SelfAttention.relative_attention_bias.weight"),
    (r"^blocks\.(\d+)\.norm2\.weight$", "encoder.block.{i}.layer.1.layer_norm.weight"),
    (r"^blocks\.(\d+)\.ffn\.gate\.0\.weight$",
     "encoder.block.{i}.layer.1.DenseReluDense.wi_0.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc1\.weight$",
     "encoder.block.{i}.layer.1.DenseReluDense.wi_1.weight"),
    (r"^blocks\.(\d+)\.ffn\.fc2\.weight$", "encoder.block.{i}.layer.1.DenseReluDense.wo.weight"),
)


def from_wan_t5(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan's umT5 encoder state dict -> ``UMT5EncoderModel``'s (the token embedding also
    fills the encoder's tied copy). Unknown keys are an error."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        for pat, repl in WAN_T5_RENAMES:
            m = re.match(pat, key)
            if m:
                groups = m.groups()
                name = repl.format(i=groups[0] if groups else "",
                                   p=groups[1] if len(groups) > 1 else "")
                out[name] = value
                break
        else:
            raise OmniError(f"umT5 checkpoint: unexpected key {key!r}")
    if "shared.weight" in out:
        out["encoder.embed_tokens.weight"] = out["shared.weight"]
    return out


def clean_text(text: str) -> str:
    """The release's ``whitespace`` cleaning: entities unescaped (twice), mojibake fixed when
    ftfy is installed, runs of whitespace made one space, ends stripped."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        pass
    text = html.unescape(html.unescape(text)).strip()
    return re.sub(r"\s+", " ", text).strip()


class TextEncoder(PretrainedComponent, nn.Module):
    """``encode(texts) -> list of (L_i, d_model)`` float32 tensors, one per text, cut to its
    token count (at most ``text_len``)."""

    weights_entry: ClassVar[str | None] = "umt5-xxl-encoder"
    weights_files: ClassVar[tuple[str, ...]] = (
        "models_t5_umt5-xxl-enc-bf16.pth", "google/umt5-xxl/tokenizer.json",
        "google/umt5-xxl/tokenizer_config.json", "google/umt5-xxl/special_tokens_map.json",
        "google/umt5-xxl/spiece.model")

    def __init__(self, model: nn.Module, tokenizer: Any, text_len: int = 512) -> None:
        nn.Module.__init__(self)
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.text_len = text_len

    @property
    def dim(self) -> int:
        return int(self.model.config.d_model)

    @torch.no_grad()
    def encode(self, texts: list[str]) -> list[torch.Tensor]:
        tok = self.tokenizer([clean_text(t) for t in texts], padding="max_length",
                             truncation=True, max_length=self.text_len,
                             add_special_tokens=True, return_tensors="pt")
        dev = next(self.model.parameters()).device
        ids, mask = tok["input_ids"].to(dev), tok["attention_mask"].to(dev)
        out = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        lens = mask.sum(1).tolist()
        return [out[i, : int(n)].float().cpu() for i, n in enumerate(lens)]

    # constructors ----------------------------------------------------------------------------
    @classmethod
    def _load(cls, paths: dict[str, Path], device: str, **kw: Any) -> TextEncoder:
        from transformers import AutoTokenizer, UMT5Config, UMT5EncoderModel

        with torch.device("meta"):
            model = UMT5EncoderModel(UMT5Config(**UMT5_XXL))
        sd = safe_torch_load(paths["models_t5_umt5-xxl-enc-bf16.pth"], mmap=True)
        model.load_state_dict(from_wan_t5(sd), strict=True, assign=True)
        model.tie_weights()
        tok_dir = paths["google/umt5-xxl/tokenizer.json"].parent
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        return cls(model.to(device), tokenizer, kw.get("text_len", 512))

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> TextEncoder:
        from transformers import UMT5Config, UMT5EncoderModel

        size = {**{"vocab_size": 512, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
                   "num_heads": 4}, **kw.pop("size", {})}
        config = UMT5Config(**{**UMT5_XXL, **size})
        model = UMT5EncoderModel(config).to(device)
        return cls(model, byte_tokenizer(), kw.get("text_len", 512))

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"size": {k: UMT5_XXL[k] for k in ("vocab_size", "d_model", "d_kv", "d_ff",
                                                     "num_layers", "num_heads")}}


def byte_tokenizer() -> Any:
    """A byte-level fast tokenizer with umT5's special tokens (pad 0, eos 1, unk 2) and one
    token per byte (ids 3..258): deterministic, offline, every text distinct; for debug
    encoders (vocabulary 512)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for ch in sorted(pre_tokenizers.ByteLevel.alphabet()):
        vocab[ch] = len(vocab)
    tok = Tokenizer(models.BPE(vocab, [], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def encode_null_texts(encoder: TextEncoder, video_negative: str, audio_negative: str
                      ) -> dict[str, torch.Tensor]:
    """The embeddings condition dropout and guidance use in place of the caption."""
    empty, vneg, aneg = encoder.encode(["", video_negative, audio_negative])
    return {"empty": empty, "video_negative": vneg, "audio_negative": aneg}
