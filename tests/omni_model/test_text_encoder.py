"""The umT5 text encoder: the release checkpoint's key layout onto transformers' UMT5 on the
meta device, the debug encoder, cleaning, and the release's prompt text."""

from __future__ import annotations

import pytest
import torch

from omni_core.captions import parse_caption
from omni_core.errors import OmniError
from omni_model.text_encoder import (
    UMT5_XXL,
    TextEncoder,
    clean_text,
    encode_null_texts,
    from_wan_t5,
)


def wan_t5_layout(vocab: int, dim: int, ffn: int, heads: int, layers: int, buckets: int
                  ) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of Wan's umT5 encoder checkpoint (models_t5_umt5-xxl-enc-bf16.pth),
    from the release's module tree: token embedding, per block norm1 / attn q k v o / norm2 /
    gated FFN (gate.0, fc1, fc2) / its own relative position table, final norm."""
    out = {"token_embedding.weight": (vocab, dim), "norm.weight": (dim,)}
    for i in range(layers):
        b = f"blocks.{i}."
        out[b + "norm1.weight"] = (dim,)
        out[b + "norm2.weight"] = (dim,)
        for p in "qkvo":
            out[f"{b}attn.{p}.weight"] = (dim, dim)
        out[b + "ffn.gate.0.weight"] = (ffn, dim)
        out[b + "ffn.fc1.weight"] = (ffn, dim)
        out[b + "ffn.fc2.weight"] = (dim, ffn)
        out[b + "pos_embedding.embedding.weight"] = (buckets, heads)
    return out


def test_release_layout_maps_onto_umt5_xxl_on_the_meta_device():
    from transformers import UMT5Config, UMT5EncoderModel

    with torch.device("meta"):
        hf = UMT5EncoderModel(UMT5Config(**UMT5_XXL))
    layout = wan_t5_layout(256384, 4096, 10240, 64, 24, 32)
    fake = {k: torch.empty(s, device="meta") for k, s in layout.items()}
    mapped = from_wan_t5(fake)
    ours = hf.state_dict()
    assert set(mapped) == set(ours)
    assert all(tuple(mapped[k].shape) == tuple(ours[k].shape) for k in ours)
    # 5.68B parameters: the bf16 file is 11.36 GB
    assert sum(torch.Size(s).numel() for s in layout.values()) == 5_680_910_336
    with pytest.raises(OmniError, match="unexpected key 'decoder.blocks.0.norm1.weight'"):
        from_wan_t5({**fake, "decoder.blocks.0.norm1.weight": fake["norm.weight"]})


def test_debug_encoder_encodes_to_the_token_count():
    enc = TextEncoder.debug(seed=0)
    a, b, c, d = enc.encode(["A man says, <S>hello<E>", "", "A man says, <S>hello<E>",
                             "x " * 600])
    # the debug tokenizer has one token per byte, plus the end-of-sequence token
    assert a.shape == (len("A man says, <S>hello<E>") + 1, enc.dim)
    assert b.shape == (1, enc.dim)  # the end-of-sequence token alone
    assert torch.equal(a, c) and not torch.equal(a[:1], b)
    assert d.shape[0] == enc.text_len  # truncated to 512
    assert a.dtype == torch.float32 and enc.is_debug
    again = TextEncoder.debug(seed=0).encode(["A man says, <S>hello<E>"])[0]
    assert torch.equal(again, a)
    null = encode_null_texts(enc, "jitter, bad hands, blur, distortion",
                             "robotic, muffled, echo, distorted")
    assert set(null) == {"empty", "video_negative", "audio_negative"}


def test_cleaning_and_the_prompt_the_release_encodes():
    assert clean_text("  A &amp;amp; B \n\n C  ") == "A & B C"
    cap = parse_caption(
        "[IMAGE_CAPTIONS_START]\n<img1>: A woman, identified as <sub1>.\n"
        "[IMAGE_CAPTIONS_END]\n[FINAL_VIDEO_CAPTION_START]\n[VISUAL_DESCRIPTION_START]\n"
        "**Overall Environment/Scene**: A kitchen.\n[VISUAL_DESCRIPTION_END]\n"
        "[AUDIO_DESCRIPTION_START]\nA calm voice.\n[AUDIO_DESCRIPTION_END]\n"
        "[CO_ANALYSIS_START]\n<sub1> says, <S>hello there<E>\n[CO_ANALYSIS_END]\n"
        "[FINAL_VIDEO_CAPTION_END]\n[SPEAKER_TIMESTAMPS_START]\n"
        '{"<sub1>": ["<Time_S>00:01-00:03<Time_E>"]}\n[SPEAKER_TIMESTAMPS_END]')
    text = cap.prompt_text()
    assert "<sub1> says, <S>hello there<E>" in text and "A kitchen." in text
    assert "calm voice" not in text and "Time_S" not in text and "[" not in text
