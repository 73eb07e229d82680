"""The ViCLIP network: the video tower's token layout, checkpoint layout and loading."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.metrics.viclip import score_video
from evaluation.models import viclip
from evaluation.models.clip_bpe import BPETokenizer, write_bpe_merges
from evaluation.models.clip_vit import VisionConfig, VisionTransformer
from omni_core.errors import WeightsError

VIDEO = "talking/talk02_2p.mp4"
ENTRY = "viclip-l-internvid-10m-flt"


@pytest.fixture(scope="module")
def video(sample_corpus) -> tuple[np.ndarray, str, Path]:
    from omni_core.media import read_frames

    path = sample_corpus.out / VIDEO
    turns = pd.read_parquet(sample_corpus.turns_table)
    text = " ".join(turns[turns.file == VIDEO].sort_values("start_s").text)
    return read_frames(path), text, path


# --------------------------------------------------------------------------------------------
# the video tower


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
    assert score_video(frames, text, model) == score_video(frames, text, src)


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


def test_random_build_is_viclip_l():
    """The real-size build reads back as the ViCLIP-L geometry ``_load`` would infer from the
    released checkpoint's shapes (ViT-L/14 over 8 frames, CLIP-L text with context 32)."""
    with torch.device("meta"):
        model = viclip.ViCLIPModel.random(device="meta")
    assert viclip.ViCLIPConfig.from_state_dict(model.state_dict()) == viclip.ViCLIPConfig()
    assert model.variant == "random"
