"""CLIP ViT building blocks: VBench's clip_transform, self-attention, the image and text towers
against transformers' CLIP (same random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.models.clip_bpe import BPETokenizer, train_bpe_merges
from evaluation.models.clip_vit import (
    SelfAttention,
    TextConfig,
    TextTransformer,
    VisionConfig,
    VisionTransformer,
    clip_preprocess,
)
from evaluation.models.viclip import DEBUG_BPE_TEXT


@pytest.fixture(scope="module")
def talking_frames(sample_corpus) -> np.ndarray:
    from omni_core.media import read_frames

    return read_frames(sample_corpus.out / "talking" / "talk00_1p.mp4")


# --------------------------------------------------------------------------------------------
# preprocessing: VBench clip_transform is torchvision's tensor pipeline


def vbench_clip_transform(n_px: int, antialias: bool):
    from torchvision.transforms import (
        CenterCrop,
        Compose,
        InterpolationMode,
        Lambda,
        Normalize,
        Resize,
    )

    return Compose([
        Resize(n_px, interpolation=InterpolationMode.BICUBIC, antialias=antialias),
        CenterCrop(n_px),
        Lambda(lambda x: x.float().div(255.0)),
        Normalize((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),
    ])


@pytest.mark.parametrize("shape", [(4, 360, 640), (3, 500, 301), (2, 224, 224), (2, 100, 150)])
@pytest.mark.parametrize("antialias", [False, True])
def test_preprocess_matches_torchvision_tensor_pipeline(shape, antialias):
    frames = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ref_t = vbench_clip_transform(224, antialias)
    # AES: load_video hands torch.Tensor(buffer) (float32) to the transform
    ref_float = ref_t(torch.Tensor(frames).permute(0, 3, 1, 2))
    ours_float = clip_preprocess(frames, 224, quantize=False, antialias=antialias, batch_size=3)
    assert ours_float.shape == (shape[0], 3, 224, 224)
    torch.testing.assert_close(ours_float, ref_float, atol=2e-5, rtol=0)
    # ViCLIP: decord's torch bridge hands uint8 to the same transform
    ref_u8 = ref_t(torch.from_numpy(frames).permute(0, 3, 1, 2))
    ours_u8 = clip_preprocess(frames, 224, quantize=True, antialias=antialias)
    torch.testing.assert_close(ours_u8, ref_u8, atol=2e-5, rtol=0)


def test_preprocess_on_real_frames_float_and_uint8_paths_differ(talking_frames):
    frames = talking_frames[:4]
    ref = vbench_clip_transform(224, False)(torch.Tensor(frames).permute(0, 3, 1, 2))
    ours = clip_preprocess(frames, 224, quantize=False)
    torch.testing.assert_close(ours, ref, atol=2e-5, rtol=0)
    # the uint8 (ViCLIP) path rounds and clamps: a real but sub-grey-level difference
    diff = (clip_preprocess(frames, 224, quantize=True) - ours).abs()
    assert 0 < diff.mean() < 1 / 255 / 0.26


# --------------------------------------------------------------------------------------------
# towers against reference implementations (same random weights)


def test_self_attention_matches_torch_multihead_attention():
    torch.manual_seed(0)
    ref = nn.MultiheadAttention(64, 4).eval()
    ours = SelfAttention(64, 4).eval()
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(2, 9, 64)
    mask = torch.full((9, 9), float("-inf")).triu_(1)
    with torch.no_grad():
        want = ref(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1),
                   need_weights=False, attn_mask=mask)[0].transpose(0, 1)
        torch.testing.assert_close(ours(x, mask), want, atol=1e-5, rtol=1e-5)


def hf_vision_to_openai(sd: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    p = "vision_model."
    out = {
        "conv1.weight": sd[p + "embeddings.patch_embedding.weight"],
        "class_embedding": sd[p + "embeddings.class_embedding"],
        "positional_embedding": sd[p + "embeddings.position_embedding.weight"],
        "proj": sd["visual_projection.weight"].T,
    }
    for hf, ours in (("pre_layrnorm", "ln_pre"), ("post_layernorm", "ln_post")):
        for q in ("weight", "bias"):
            out[f"{ours}.{q}"] = sd[f"{p}{hf}.{q}"]
    for i in range(layers):
        src, dst = f"{p}encoder.layers.{i}", f"transformer.resblocks.{i}"
        out[f"{dst}.attn.in_proj_weight"] = torch.cat(
            [sd[f"{src}.self_attn.{n}_proj.weight"] for n in "qkv"])
        out[f"{dst}.attn.in_proj_bias"] = torch.cat(
            [sd[f"{src}.self_attn.{n}_proj.bias"] for n in "qkv"])
        for hf, ours in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                         ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                         ("mlp.fc2", "mlp.c_proj")):
            for q in ("weight", "bias"):
                out[f"{dst}.{ours}.{q}"] = sd[f"{src}.{hf}.{q}"]
    return out


def test_vision_tower_matches_transformers_clip():
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    hf_cfg = CLIPVisionConfig(hidden_size=128, intermediate_size=512, num_hidden_layers=3,
                              num_attention_heads=2, image_size=224, patch_size=32,
                              projection_dim=48, hidden_act="quick_gelu")
    ref = CLIPVisionModelWithProjection(hf_cfg).eval()
    ours = VisionTransformer(VisionConfig(width=128, layers=3, heads=2, patch_size=32,
                                          image_size=224, output_dim=48)).eval()
    ours.load_state_dict(hf_vision_to_openai(ref.state_dict(), 3))
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(pixel_values=x).image_embeds,
                                   atol=1e-5, rtol=1e-5)


def hf_text_to_openai(sd: dict[str, torch.Tensor], layers: int) -> dict[str, torch.Tensor]:
    p = "text_model."
    out = {
        "token_embedding.weight": sd[p + "embeddings.token_embedding.weight"],
        "positional_embedding": sd[p + "embeddings.position_embedding.weight"],
        "ln_final.weight": sd[p + "final_layer_norm.weight"],
        "ln_final.bias": sd[p + "final_layer_norm.bias"],
        "text_projection": sd["text_projection.weight"].T,
    }
    for i in range(layers):
        src, dst = f"{p}encoder.layers.{i}", f"transformer.resblocks.{i}"
        for q in ("weight", "bias"):
            out[f"{dst}.attn.in_proj_{q}"] = torch.cat(
                [sd[f"{src}.self_attn.{n}_proj.{q}"] for n in "qkv"])
        for hf, ours in (("self_attn.out_proj", "attn.out_proj"), ("layer_norm1", "ln_1"),
                         ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                         ("mlp.fc2", "mlp.c_proj")):
            for q in ("weight", "bias"):
                out[f"{dst}.{ours}.{q}"] = sd[f"{src}.{hf}.{q}"]
    return out


def test_text_tower_matches_transformers_clip_text_model():
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    cfg = CLIPTextConfig(vocab_size=600, hidden_size=64, intermediate_size=256,
                         num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32,
                         projection_dim=48, hidden_act="quick_gelu", eos_token_id=2,
                         bos_token_id=0, pad_token_id=1)
    ref = CLIPTextModelWithProjection(cfg).eval()  # eos_token_id=2: EOT = argmax (legacy)
    ours = TextTransformer(TextConfig(vocab_size=600, context_length=32, width=64, heads=2,
                                      layers=2, embed_dim=48)).eval()
    ours.load_state_dict(hf_text_to_openai(ref.state_dict(), 2))
    tok = BPETokenizer(train_bpe_merges([DEBUG_BPE_TEXT], 80))
    ids = tok.tokenize(["a man talks", " ".join(["the weather"] * 30)], 32)
    ids = torch.where(ids >= 600, ids - tok.vocab_size + 600, ids)  # keep SOT/EOT on top
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(input_ids=ids).text_embeds,
                                   atol=1e-5, rtol=1e-5)
