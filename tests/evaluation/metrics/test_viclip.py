"""ViCLIP (VBench overall_consistency): frames, tokenizer, towers, checkpoint layout, e2e."""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.metrics import viclip
from evaluation.models.clip_vit import (
    BPETokenizer,
    SelfAttention,
    TextConfig,
    TextTransformer,
    VisionConfig,
    VisionTransformer,
    clip_preprocess,
    train_bpe_merges,
    write_bpe_merges,
)
from omni_core.errors import WeightsError

VIDEO = "talking/talk02_2p.mp4"
ENTRY = "viclip-l-internvid-10m-flt"



def real_bpe_path() -> Path:
    """CLIP's real vocabulary, as shipped inside the laion_clap package (same sha256 as the
    manifest's ``bpe_simple_vocab_16e6.txt.gz``)."""
    path = Path(str(importlib.resources.files("laion_clap.clap_module")
                    .joinpath("bpe_simple_vocab_16e6.txt.gz")))
    if not path.is_file():
        pytest.skip("laion_clap's copy of the CLIP BPE vocabulary is not installed")
    return path


@pytest.fixture(scope="module")
def video(sample_corpus) -> tuple[np.ndarray, str, Path]:
    from omni_core.media import read_frames

    path = sample_corpus.out / VIDEO
    turns = pd.read_parquet(sample_corpus.turns_table)
    text = " ".join(turns[turns.file == VIDEO].sort_values("start_s").text)
    return read_frames(path), text, path


# --------------------------------------------------------------------------------------------
# frame sampling


def test_frame_indices_are_vbench_middle_sampling():
    # linspace(0, 100, 9).astype(int) = 0 12 25 37 50 62 75 87 100 -> (a + b - 1) // 2
    assert viclip.frame_indices(100) == [5, 18, 30, 43, 55, 68, 80, 93]
    assert viclip.frame_indices(10) == [0, 1, 2, 3, 5, 6, 7, 8]
    assert viclip.frame_indices(8) == list(range(8))
    assert viclip.frame_indices(5) == [0, 1, 2, 3, 4, 4, 4, 4]  # padded with the last one
    assert viclip.frame_indices(1) == [0] * 8
    with pytest.raises(ValueError):
        viclip.frame_indices(0)


# --------------------------------------------------------------------------------------------
# tokenizer


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
    tok = BPETokenizer(train_bpe_merges([viclip.DEBUG_BPE_TEXT], 80))
    ids = tok.tokenize(["a man talks", " ".join(["the weather"] * 30)], 32)
    ids = torch.where(ids >= 600, ids - tok.vocab_size + 600, ids)  # keep SOT/EOT on top
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), ref(input_ids=ids).text_embeds,
                                   atol=1e-5, rtol=1e-5)


def upstream_style_video_forward(m: viclip.VideoVisionTransformer,
                                 video: torch.Tensor) -> torch.Tensor:
    """ViCLIP's vision forward written the upstream way: (B, C, T, H, W) conv, the
    '(b t) n m -> (b n) t m -> b (n t) m' token shuffle, torch's nn.MultiheadAttention
    on (L, N, E) tensors, ln_post on the whole sequence."""
    x = F.conv3d(video.permute(0, 2, 1, 3, 4), m.conv1.weight, stride=m.conv1.stride)
    b, c, t, h, w = x.shape
    x = x.permute(0, 2, 3, 4, 1).reshape(b * t, h * w, c)
    x = torch.cat([m.class_embedding + torch.zeros(b * t, 1, c), x], dim=1)
    x = x + m.positional_embedding
    cls, x = x[:b, :1], x[:, 1:]
    x = x.reshape(b, t, h * w, c).permute(0, 2, 1, 3).reshape(b * h * w, t, c)
    x = x + m.temporal_positional_embedding
    x = x.reshape(b, h * w, t, c).reshape(b, h * w * t, c)
    x = torch.cat([cls, x], dim=1)
    x = F.layer_norm(x, (c,), m.ln_pre.weight, m.ln_pre.bias).permute(1, 0, 2)
    for blk in m.transformer.resblocks:
        mha = nn.MultiheadAttention(c, blk.attn.heads).eval()
        mha.load_state_dict(blk.attn.state_dict())
        y = F.layer_norm(x, (c,), blk.ln_1.weight, blk.ln_1.bias)
        x = x + mha(y, y, y, need_weights=False)[0]
        x = x + blk.mlp(F.layer_norm(x, (c,), blk.ln_2.weight, blk.ln_2.bias))
    x = F.layer_norm(x, (c,), m.ln_post.weight, m.ln_post.bias)
    return x[0] @ m.proj


def test_video_tower_matches_upstream_token_layout():
    torch.manual_seed(0)
    cfg = VisionConfig(width=64, layers=2, heads=2, patch_size=32, image_size=96, output_dim=16)
    m = viclip.VideoVisionTransformer(cfg, num_frames=8).eval()
    video = torch.randn(2, 8, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(m(video), upstream_style_video_forward(m, video),
                                   atol=1e-5, rtol=1e-5)
        with pytest.raises(ValueError, match="8 frames"):
            m(video[:, :5])


def test_single_frame_with_zero_temporal_embedding_is_the_image_tower():
    """T = 1 is upstream's image mode (mean temporal embedding); with that embedding at zero
    the video tower is exactly the CLIP image tower with the same weights."""
    torch.manual_seed(1)
    cfg = VisionConfig(width=64, layers=2, heads=2, patch_size=32, image_size=96, output_dim=16)
    vid = viclip.VideoVisionTransformer(cfg, num_frames=8).eval()
    img = VisionTransformer(cfg).eval()
    state = {k: v for k, v in vid.state_dict().items() if k != "temporal_positional_embedding"}
    state["conv1.weight"] = state["conv1.weight"][:, :, 0]
    img.load_state_dict(state)
    frame = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        vid.temporal_positional_embedding.sub_(vid.temporal_positional_embedding.mean(1))
        torch.testing.assert_close(vid(frame.unsqueeze(1)), img(frame), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# checkpoint layout (ViClip-InternVid-10M-FLT.pth: {"model": state_dict})


def viclip_l_shapes() -> dict[str, tuple[int, ...]]:
    """Keys of VBench's ViCLIP (clip_joint_l14 vision + clip_text_l14 text, max_txt_l 32)."""

    def blocks(prefix: str, w: int, n: int) -> dict[str, tuple[int, ...]]:
        out: dict[str, tuple[int, ...]] = {}
        for i in range(n):
            b = f"{prefix}transformer.resblocks.{i}."
            out |= {
                b + "attn.in_proj_weight": (3 * w, w), b + "attn.in_proj_bias": (3 * w,),
                b + "attn.out_proj.weight": (w, w), b + "attn.out_proj.bias": (w,),
                b + "ln_1.weight": (w,), b + "ln_1.bias": (w,),
                b + "mlp.c_fc.weight": (4 * w, w), b + "mlp.c_fc.bias": (4 * w,),
                b + "mlp.c_proj.weight": (w, 4 * w), b + "mlp.c_proj.bias": (w,),
                b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
            }
        return out

    v, t = "vision_encoder.", "text_encoder."
    return {
        f"{v}conv1.weight": (1024, 3, 1, 14, 14), f"{v}class_embedding": (1024,),
        f"{v}positional_embedding": (257, 1024),
        f"{v}temporal_positional_embedding": (1, 8, 1024),
        f"{v}ln_pre.weight": (1024,), f"{v}ln_pre.bias": (1024,),
        **blocks(v, 1024, 24),
        f"{v}ln_post.weight": (1024,), f"{v}ln_post.bias": (1024,), f"{v}proj": (1024, 768),
        f"{t}token_embedding.weight": (49408, 768), f"{t}positional_embedding": (32, 768),
        **blocks(t, 768, 12),
        f"{t}ln_final.weight": (768,), f"{t}ln_final.bias": (768,),
        f"{t}text_projection": (768, 768),
        "temp": (),
    }


def test_full_size_layout_matches_viclip_l():
    tok = BPETokenizer([])
    with torch.device("meta"):
        model = viclip.ViCLIPModel(viclip.ViCLIPConfig(), tok)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == viclip_l_shapes()
    sd = {k: torch.empty(s, device="meta") for k, s in viclip_l_shapes().items()}
    assert viclip.ViCLIPConfig.from_state_dict(sd) == viclip.ViCLIPConfig()


def save_fake_checkpoint(root: Path, extra: dict | None = None) -> viclip.ViCLIPModel:
    src = viclip.ViCLIPModel.debug(seed=5)
    with torch.no_grad():
        for p in src.parameters():  # distinct values everywhere, not the init pattern
            p.add_(torch.randn_like(p) * 0.01)
    folder = root / "viclip-l-internvid-10m-flt"
    folder.mkdir(parents=True)
    torch.save({"model": src.state_dict(), **(extra or {})}, folder / viclip.CKPT_FILE)
    merges = sorted(src.tokenizer.ranks, key=src.tokenizer.ranks.get)
    write_bpe_merges(folder / viclip.BPE_FILE, merges)
    return src


def test_checkpoint_loads_through_weights_registry(tmp_path, video, unpinned_registry):
    src = save_fake_checkpoint(tmp_path, {"epoch": 3})
    model = viclip.ViCLIPModel.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))
    assert not model.is_debug and "viclip-l-internvid-10m-flt" in model.describe()
    assert model.cfg == src.cfg and model.tokenizer.encoder == src.tokenizer.encoder
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    frames, text, _ = video
    assert viclip.score_video(frames, text, model) == viclip.score_video(frames, text, src)


def test_checkpoint_with_pickled_config_objects_still_loads_safely(tmp_path, unpinned_registry):
    # training checkpoints often pickle their config; weights_only refuses that, the
    # restricted reader keeps the tensors and leaves the object inert
    src = save_fake_checkpoint(tmp_path, {"config": argparse.Namespace(lr=1e-4)})
    model = viclip.ViCLIPModel.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))
    assert torch.equal(model.text_encoder.text_projection, src.text_encoder.text_projection)


def test_checkpoint_errors_name_the_file(tmp_path, unpinned_registry):
    with pytest.raises(WeightsError, match="ViClip-InternVid-10M-FLT.pth"):
        viclip.ViCLIPModel.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))
    src = save_fake_checkpoint(tmp_path)
    state = dict(src.state_dict())
    del state["text_encoder.ln_final.bias"]
    torch.save({"model": state}, tmp_path / "viclip-l-internvid-10m-flt" / viclip.CKPT_FILE)
    with pytest.raises(WeightsError, match=r"missing \[text_encoder\.ln_final\.bias\]"):
        viclip.ViCLIPModel.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))


# --------------------------------------------------------------------------------------------
# end to end with the debug twin on a sample-corpus video


def test_debug_twin_end_to_end(video):
    from omni_core.media import read_frames

    frames, text, path = video
    model = viclip.ViCLIPModel.debug(seed=0)
    res = viclip.score_video(frames, text, model)
    assert res.frame_indices == tuple(viclip.frame_indices(len(frames)))
    assert -1.0 <= res.score <= 1.0 and res.truncated and res.n_text_tokens == 32
    # a harness that decodes only the 8 frames gets the same number
    clip = read_frames(path, indices=list(res.frame_indices))
    assert viclip.score_clip(clip, text, model, indices=res.frame_indices) == res
    # deterministic, and the weights matter
    assert viclip.score_video(frames, text, viclip.ViCLIPModel.debug(seed=0)) == res
    assert viclip.score_video(frames, text, viclip.ViCLIPModel.debug(seed=1)).score != res.score
    # preprocessing is VBench's uint8 path
    x = clip_preprocess(frames[list(res.frame_indices)], 224, quantize=True)
    with torch.no_grad():
        v = F.normalize(model.vision_encoder(x.unsqueeze(0)), dim=-1)
        t = F.normalize(model.text_encoder(model.tokenizer.tokenize(text, 32)), dim=-1)
    assert res.score == pytest.approx(float(v @ t.T), abs=1e-6)
    assert viclip.DIRECTION == "higher" and viclip.VERSION == "1"


def test_scores_can_be_negative():
    """The raw cosine is reported as is: no clamp at 0 (VBench's ViCLIP scores can be < 0)."""
    model = viclip.ViCLIPModel.debug(seed=0)
    clip = np.random.default_rng(0).integers(0, 256, (8, 64, 80, 3), dtype=np.uint8)
    a = viclip.score_clip(clip, "a man talks", model).score
    with torch.no_grad():
        model.text_encoder.text_projection.neg_()
    b = viclip.score_clip(clip, "a man talks", model).score
    assert a != 0 and b == pytest.approx(-a, abs=1e-6) and min(a, b) < 0


def test_random_build_is_viclip_l():
    """The real-size build reads back as the ViCLIP-L geometry ``_load`` would infer from the
    released checkpoint's shapes (ViT-L/14 over 8 frames, CLIP-L text with context 32)."""
    with torch.device("meta"):
        model = viclip.ViCLIPModel.random(device="meta")
    assert viclip.ViCLIPConfig.from_state_dict(model.state_dict()) == viclip.ViCLIPConfig()
    assert model.variant == "random"
