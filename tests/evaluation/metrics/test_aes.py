"""AES (VBench aesthetic_quality): preprocessing, CLIP image tower, head maths, checkpoints."""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from evaluation.metrics import aes
from evaluation.models.clip_vit import (
    ArchiveObject,
    VisionConfig,
    VisionTransformer,
    clip_preprocess,
    read_torch_archive,
    torchscript_state_dict,
)
from omni_core.errors import WeightsError

ENTRIES = ("openai-clip-vit-l-14", "laion-aesthetic-vit-l-14-linear")
TINY = VisionConfig(width=64, layers=2, heads=1, patch_size=32, image_size=224, output_dim=32)


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
# image tower against transformers' CLIP (same random weights)


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


# --------------------------------------------------------------------------------------------
# AES maths on a hand-made head


def test_constant_head_gives_bias_over_ten(talking_frames):
    model = aes.AestheticModel.debug(seed=0)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.fill_(6.3)
    res = aes.score_frames(talking_frames[:7], model)
    assert res.n_frames == 7
    assert res.per_frame == pytest.approx([0.63] * 7, abs=1e-6)
    assert res.score == pytest.approx(0.63, abs=1e-6)


def test_score_is_mean_of_normalised_feature_through_head(talking_frames):
    model = aes.AestheticModel.debug(seed=3)
    with torch.no_grad():  # score = 10 * f[0] + 2 -> per frame f[0] + 0.2
        model.head.weight.zero_()
        model.head.weight[0, 0] = 10.0
        model.head.bias.fill_(2.0)
    frames = talking_frames[::40]
    with torch.no_grad():
        feats = model.visual(clip_preprocess(frames, 224, quantize=False))
        f0 = (feats / feats.norm(dim=-1, keepdim=True))[:, 0].numpy()
    res = aes.score_frames(frames, model, aes.AESOptions(batch_size=2))
    np.testing.assert_allclose(res.per_frame, f0 + 0.2, atol=1e-6)
    assert res.score == pytest.approx(float(np.mean(f0 + 0.2)), abs=1e-6)


def test_batch_size_does_not_change_numbers(talking_frames):
    model = aes.AestheticModel.debug(seed=1)
    a = aes.score_frames(talking_frames[:9], model, aes.AESOptions(batch_size=9))
    b = aes.score_frames(talking_frames[:9], model, aes.AESOptions(batch_size=2))
    np.testing.assert_allclose(a.per_frame, b.per_frame, atol=1e-6)


def test_fp16_precision_is_close_and_switching_back_is_lossless(talking_frames):
    model = aes.AestheticModel.debug(seed=2)
    frames = talking_frames[:4]
    full = aes.score_frames(frames, model, aes.AESOptions(precision="fp32"))
    half = aes.score_frames(frames, model, aes.AESOptions(precision="fp16"))
    assert half.precision == "fp16" and model.visual.dtype == torch.float16
    np.testing.assert_allclose(half.per_frame, full.per_frame, atol=5e-3)
    again = aes.score_frames(frames, model, aes.AESOptions(precision="fp32"))
    assert again == full  # "auto" on CPU is fp32 too
    assert aes.score_frames(frames, model).precision == "fp32"


def test_options_are_validated():
    with pytest.raises(ValueError):
        aes.AESOptions(precision="bf16")
    assert aes.AESOptions().precision == "auto" and aes.AESOptions().antialias is False


# --------------------------------------------------------------------------------------------
# checkpoint layout: OpenAI ViT-L-14.pt (TorchScript) and the LAION head


def openai_vit_l14_visual_shapes() -> dict[str, tuple[int, ...]]:
    """``visual.*`` of OpenAI CLIP ViT-L/14 (clip/model.py VisionTransformer, width 1024,
    24 layers, patch 14, 224 px, output 768), as ``build_model`` reads them."""
    w = 1024
    shapes = {
        "conv1.weight": (w, 3, 14, 14), "class_embedding": (w,),
        "positional_embedding": (257, w), "ln_pre.weight": (w,), "ln_pre.bias": (w,),
        "ln_post.weight": (w,), "ln_post.bias": (w,), "proj": (w, 768),
    }
    for i in range(24):
        b = f"transformer.resblocks.{i}."
        shapes |= {
            b + "attn.in_proj_weight": (3 * w, w), b + "attn.in_proj_bias": (3 * w,),
            b + "attn.out_proj.weight": (w, w), b + "attn.out_proj.bias": (w,),
            b + "ln_1.weight": (w,), b + "ln_1.bias": (w,),
            b + "mlp.c_fc.weight": (4 * w, w), b + "mlp.c_fc.bias": (4 * w,),
            b + "mlp.c_proj.weight": (w, 4 * w), b + "mlp.c_proj.bias": (w,),
            b + "ln_2.weight": (w,), b + "ln_2.bias": (w,),
        }
    return shapes


def test_full_size_layout_matches_openai_vit_l14_and_laion_head():
    with torch.device("meta"):
        model = aes.AestheticModel()  # default geometry = ViT-L/14
    got = {k: tuple(v.shape) for k, v in model.visual.state_dict().items()}
    assert got == openai_vit_l14_visual_shapes()
    assert {k: tuple(v.shape) for k, v in model.head.state_dict().items()} == {
        "weight": (1, 768), "bias": (1,)}
    # OpenAI build_model infers heads = width // 64
    sd = {f"visual.{k}": torch.empty(s, device="meta")
          for k, s in openai_vit_l14_visual_shapes().items()}
    assert VisionConfig.from_state_dict(sd) == VisionConfig()


class FakeOpenAICLIP(nn.Module):
    """The attribute layout of OpenAI's CLIP module: ``visual`` plus text-side tensors that the
    AES loader must ignore (including a plain-tensor ``attn_mask`` attribute)."""

    def __init__(self, cfg: VisionConfig) -> None:
        super().__init__()
        self.visual = VisionTransformer(cfg)
        self.token_embedding = nn.Embedding(10, 16)
        self.positional_embedding = nn.Parameter(torch.randn(4, 16))
        self.logit_scale = nn.Parameter(torch.ones([]))
        self.attn_mask = torch.zeros(4, 4)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images) * self.logit_scale


def write_fake_weights(root: Path, half: bool = True) -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    fake = FakeOpenAICLIP(TINY).eval()
    scripted = torch.jit.trace(fake, torch.zeros(1, 3, 224, 224))
    if half:  # OpenAI's archive stores fp16 tensors
        scripted = scripted.half()
    clip_dir = root / "openai-clip-vit-l-14"
    clip_dir.mkdir(parents=True)
    torch.jit.save(scripted, str(clip_dir / "ViT-L-14.pt"))
    head_dir = root / "laion-aesthetic-vit-l-14-linear"
    head_dir.mkdir()
    head = nn.Linear(TINY.output_dim, 1)
    torch.save(head.state_dict(), head_dir / "sa_0_4_vit_l_14_linear.pth")
    ref = {f"visual.{k}": v.half().float() if half else v
           for k, v in fake.visual.state_dict().items()}
    ref |= {f"head.{k}": v for k, v in head.state_dict().items()}
    return ref


def test_torchscript_archive_loads_without_jit(tmp_path, unpinned_registry):
    ref = write_fake_weights(tmp_path)
    sd = torchscript_state_dict(tmp_path / "openai-clip-vit-l-14" / "ViT-L-14.pt")
    assert {"visual.conv1.weight", "logit_scale", "token_embedding.weight"} <= set(sd)
    assert sd["visual.proj"].dtype == torch.float16
    model = aes.AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))
    assert model.visual.cfg == TINY and not model.is_debug
    got = {f"visual.{k}": v for k, v in model.visual.state_dict().items()}
    got |= {f"head.{k}": v for k, v in model.head.state_dict().items()}
    assert set(got) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(got[k], v, atol=0, rtol=0, msg=k)
    assert "laion-aesthetic-vit-l-14-linear" in model.describe()
    res = aes.score_frames(np.zeros((2, 64, 96, 3), np.uint8), model)
    assert np.isfinite(res.score)


def test_same_numbers_as_the_scripted_module(tmp_path, talking_frames, unpinned_registry):
    write_fake_weights(tmp_path, half=False)
    path = tmp_path / "openai-clip-vit-l-14" / "ViT-L-14.pt"
    scripted = torch.jit.load(str(path))  # our own file: trusted, only to compare numbers
    model = aes.AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))
    x = clip_preprocess(talking_frames[:3], 224, quantize=False)
    with torch.no_grad():
        torch.testing.assert_close(model.visual(x), scripted(x), atol=1e-5, rtol=1e-5)


def test_missing_head_is_one_clear_error(tmp_path, unpinned_registry):
    write_fake_weights(tmp_path)
    os.remove(tmp_path / "laion-aesthetic-vit-l-14-linear" / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(WeightsError, match="sa_0_4_vit_l_14_linear.pth"):
        aes.AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))


def test_wrong_head_shape_is_rejected(tmp_path, unpinned_registry):
    write_fake_weights(tmp_path)
    torch.save({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)},
               tmp_path / "laion-aesthetic-vit-l-14-linear" / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(WeightsError, match="shape"):
        aes.AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch should_not_exist",))


def test_archive_reader_never_calls_pickled_callables(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps({"x": _Boom()}, protocol=2))
    (tmp_path / "evil.pt").write_bytes(buf.getvalue())
    obj = read_torch_archive(tmp_path / "evil.pt")
    assert isinstance(obj["x"], ArchiveObject)
    assert not (tmp_path / "should_not_exist").exists()


# --------------------------------------------------------------------------------------------
# end to end with the debug twin on real sample-corpus frames


def test_debug_twin_end_to_end_is_deterministic(talking_frames):
    a = aes.score_frames(talking_frames, aes.AestheticModel.debug(seed=0))
    assert a.n_frames == len(talking_frames)
    assert np.isfinite(a.score) and a.precision == "fp32"
    assert a.score == pytest.approx(float(np.mean(a.per_frame)), abs=1e-12)
    head = talking_frames[:25]
    b = aes.score_frames(head, aes.AestheticModel.debug(seed=0))
    np.testing.assert_allclose(b.per_frame, a.per_frame[:25], atol=1e-6)
    assert aes.score_frames(head, aes.AestheticModel.debug(seed=0)) == b  # bit-identical
    assert aes.score_frames(head, aes.AestheticModel.debug(seed=1)).score != b.score
    assert aes.DIRECTION == "higher" and aes.VERSION == "1"
    assert "debug weights" in aes.AestheticModel.debug(seed=0).describe()


def test_random_build_is_vit_l14():
    """What ``_load`` would build for the released ViT-L/14 (OpenAI's 303,966,208-parameter
    image tower) plus the 768 -> 1 head."""
    with torch.device("meta"):
        model = aes.AestheticModel.random(device="meta")
    visual = model.visual.state_dict()
    assert VisionConfig.from_state_dict(visual, prefix="") == VisionConfig()
    assert sum(v.numel() for v in model.visual.parameters()) == 303_966_208
    assert tuple(model.head.weight.shape) == (1, 768)
