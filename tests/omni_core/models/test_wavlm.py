"""The one WavLM (transformers' WavLMModel run the fairseq way): padding, position buckets and
the fairseq-named state dict of the WavLM-base layout (AudioBox-Aesthetics').

The WavLM-large layout (s3prl's, inside the speaker verifier) and the equivalence with
transformers and s3prl are tested through the speaker verifier (``test_speaker.py``); the
WavLM-base layout against upstream's AesMultiOutput in ``test_audiobox_aesthetics.py``.
"""

from __future__ import annotations

import pytest
import torch

from omni_core.models.wavlm import (
    WavLM,
    WavLMArch,
    frame_padding_mask,
    hf_wavlm_to_upstream,
    relative_position_buckets,
    upstream_wavlm_to_hf,
)

#: A tiny WavLM-base: GroupNorm front end, post-LN layers, raw waveform, mask_emb kept.
BASE = WavLMArch(hidden=32, layers=2, heads=4, ffn=64,
                 conv=((16, 10, 5),) + ((16, 3, 2),) * 4 + ((16, 2, 2),) * 2,
                 conv_pos=16, conv_pos_groups=4, normalize_wav=False, extractor_mode="default",
                 layer_norm_first=False, mask_emb=True)


def fairseq_base_shapes(a: WavLMArch) -> dict[str, tuple[int, ...]]:
    """Key -> shape of fairseq's WavLM (``extractor_mode="default"``), from its source."""
    s: dict[str, tuple[int, ...]] = {}
    cin = 1
    for i, (dim, k, _stride) in enumerate(a.conv):
        s[f"feature_extractor.conv_layers.{i}.0.weight"] = (dim, cin, k)
        cin = dim
    s["feature_extractor.conv_layers.0.2.weight"] = s["feature_extractor.conv_layers.0.2.bias"] = (
        a.conv[0][0],)
    s["layer_norm.weight"] = s["layer_norm.bias"] = (cin,)
    s["post_extract_proj.weight"], s["post_extract_proj.bias"] = (a.hidden, cin), (a.hidden,)
    s["mask_emb"] = (a.hidden,)
    s["encoder.pos_conv.0.weight_g"] = (1, 1, a.conv_pos)
    s["encoder.pos_conv.0.weight_v"] = (a.hidden, a.hidden // a.conv_pos_groups, a.conv_pos)
    s["encoder.pos_conv.0.bias"] = (a.hidden,)
    s["encoder.layer_norm.weight"] = s["encoder.layer_norm.bias"] = (a.hidden,)
    s["encoder.layers.0.self_attn.relative_attention_bias.weight"] = (a.num_buckets, a.heads)
    for i in range(a.layers):
        q = f"encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s[q + f"self_attn.{proj}.weight"] = (a.hidden, a.hidden)
            s[q + f"self_attn.{proj}.bias"] = (a.hidden,)
        s[q + "self_attn.grep_a"] = (1, a.heads, 1, 1)
        s[q + "self_attn.grep_linear.weight"] = (8, a.hidden // a.heads)
        s[q + "self_attn.grep_linear.bias"] = (8,)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            s[q + f"{ln}.weight"] = s[q + f"{ln}.bias"] = (a.hidden,)
        s[q + "fc1.weight"], s[q + "fc1.bias"] = (a.ffn, a.hidden), (a.ffn,)
        s[q + "fc2.weight"], s[q + "fc2.bias"] = (a.hidden, a.ffn), (a.hidden,)
    return s


def test_frame_padding_mask_drops_the_remainder() -> None:
    # 10 samples, 4 real; 3 frames: the last sample is dropped, runs of 3, padding = all-padding
    padding = torch.tensor([[False] * 4 + [True] * 6])
    assert frame_padding_mask(padding, 3).tolist() == [[False, False, True]]
    # a 10 s window at 16 kHz: 499 frames of 320 samples; 5 s valid -> frames 0..249 kept
    padding = torch.arange(160_000)[None, :] >= 80_000
    frames = frame_padding_mask(padding, 499)
    assert frames.shape == (1, 499)
    assert int((~frames).sum()) == 250


def test_relative_position_buckets() -> None:
    b = relative_position_buckets(1, 1000, num_buckets=320, max_distance=800)[0]
    # keys after the query: second half of the buckets, exact below 80, then log-spaced
    assert b[:80].tolist() == [0] + [160 + i for i in range(1, 80)]
    assert b[80].item() == 240 and b[400].item() == 295 and b[999].item() == 319
    back = relative_position_buckets(1000, 1, 320, 800)[:, 0]
    assert back[:80].tolist() == list(range(80))  # keys before the query: no +160 offset
    assert relative_position_buckets(3, 3, 320, 800).tolist() == [
        [0, 161, 162], [1, 0, 161], [2, 1, 0]]


def test_upstream_names_are_fairseqs_and_load_strictly() -> None:
    torch.manual_seed(0)
    ours = WavLM(BASE, upstream_names=True)
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert got == fairseq_base_shapes(BASE)
    # transformers' own names without upstream_names
    assert all(k.startswith("model.") for k in WavLM(BASE).state_dict())
    # a fairseq state dict loads strictly and lands in transformers' parameters
    up = {k: torch.randn(s) for k, s in fairseq_base_shapes(BASE).items()}
    ours.load_state_dict(up, strict=True)
    hf = ours.model.state_dict()
    conv = ours.model.feature_extractor.conv_layers[0]
    assert torch.equal(conv.layer_norm.weight, up["feature_extractor.conv_layers.0.2.weight"])
    assert torch.equal(ours.model.masked_spec_embed, up["mask_emb"])
    back = hf_wavlm_to_upstream(hf, parametrized=ours.parametrized, extractor_mode="default")
    assert back.keys() == up.keys() and all(torch.equal(back[k], up[k]) for k in up)
    converted, unknown = upstream_wavlm_to_hf(up, parametrized=ours.parametrized,
                                              extractor_mode="default")
    assert unknown == ["mask_emb"] and set(converted) == set(hf) - {"masked_spec_embed"}
    with pytest.raises(RuntimeError, match="encoder.layers.0.self_attn.grep_b"):
        ours.load_state_dict({**up, "encoder.layers.0.self_attn.grep_b": torch.zeros(1)})


def test_padding_mask_zeroes_padded_frames_and_hides_them_as_keys() -> None:
    torch.manual_seed(1)
    model = WavLM(BASE).eval()
    wav = torch.randn(2, 8000)
    with torch.no_grad():
        plain, none = model.hidden_states(wav)
        unpadded, frames = model.hidden_states(wav, torch.zeros_like(wav, dtype=torch.bool))
        padding = torch.arange(8000)[None, :].expand(2, -1) >= torch.tensor([[8000], [4000]])
        masked, pad = model.hidden_states(wav, padding)
    assert none is None and not frames.any() and plain.shape == (BASE.layers + 1, 2, 24, 32)
    torch.testing.assert_close(unpadded, plain, rtol=0, atol=1e-6)
    torch.testing.assert_close(masked[:, 0], plain[:, 0], rtol=0, atol=1e-6)
    # fairseq's rule: 24 runs of 333 samples, real unless all padding -> 13 real frames (the
    # conv-length formula transformers uses would give 12)
    assert pad[1].tolist() == [False] * 13 + [True] * 11
    assert not torch.allclose(masked[:, 1, :12], plain[:, 1, :12], atol=1e-4)
