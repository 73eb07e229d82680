"""The AES network: OpenAI CLIP ViT-L/14's image tower + the LAION head, checkpoint layout
(OpenAI's TorchScript ``ViT-L-14.pt`` and ``sa_0_4_vit_l_14_linear.pth``) and loading; the real
LAION and improved-aesthetic heads from ``../shared/weights``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from evaluation.metrics.aes import score_frames
from evaluation.models.clip_vit import VisionConfig, VisionTransformer, clip_preprocess
from evaluation.models.laion_aesthetic import (
    HEAD_ENTRY,
    HEAD_FILE,
    AestheticModel,
    ImprovedAestheticHead,
    ImprovedAestheticModel,
)
from evaluation.models.torch_archive import torchscript_state_dict
from omni_core.errors import WeightsError

ENTRIES = ("openai-clip-vit-l-14", "laion-aesthetic-vit-l-14-linear")
TINY = VisionConfig(width=64, layers=2, heads=1, patch_size=32, image_size=224, output_dim=32)


@pytest.fixture(scope="module")
def talking_frames(sample_corpus) -> np.ndarray:
    from omni_core.media import read_frames

    return read_frames(sample_corpus.out / "talking" / "talk00_1p.mp4")


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
        model = AestheticModel()  # default geometry = ViT-L/14
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
    model = AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))
    assert model.visual.cfg == TINY and not model.is_debug
    got = {f"visual.{k}": v for k, v in model.visual.state_dict().items()}
    got |= {f"head.{k}": v for k, v in model.head.state_dict().items()}
    assert set(got) == set(ref)
    for k, v in ref.items():
        torch.testing.assert_close(got[k], v, atol=0, rtol=0, msg=k)
    assert "laion-aesthetic-vit-l-14-linear" in model.describe()
    res = score_frames(np.zeros((2, 64, 96, 3), np.uint8), model)
    assert np.isfinite(res.score)


def test_same_numbers_as_the_scripted_module(tmp_path, talking_frames, unpinned_registry):
    write_fake_weights(tmp_path, half=False)
    path = tmp_path / "openai-clip-vit-l-14" / "ViT-L-14.pt"
    scripted = torch.jit.load(str(path))  # our own file: trusted, only to compare numbers
    model = AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))
    x = clip_preprocess(talking_frames[:3], 224, quantize=False)
    with torch.no_grad():
        torch.testing.assert_close(model.visual(x), scripted(x), atol=1e-5, rtol=1e-5)


def test_missing_head_is_one_clear_error(tmp_path, unpinned_registry):
    write_fake_weights(tmp_path)
    os.remove(tmp_path / "laion-aesthetic-vit-l-14-linear" / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(WeightsError, match="sa_0_4_vit_l_14_linear.pth"):
        AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))


def test_wrong_head_shape_is_rejected(tmp_path, unpinned_registry):
    write_fake_weights(tmp_path)
    torch.save({"weight": torch.zeros(1, 7), "bias": torch.zeros(1)},
               tmp_path / "laion-aesthetic-vit-l-14-linear" / "sa_0_4_vit_l_14_linear.pth")
    with pytest.raises(WeightsError, match="shape"):
        AestheticModel.from_pretrained(root=tmp_path, registry=unpinned_registry(*ENTRIES))



def test_random_build_is_vit_l14():
    """What ``_load`` would build for the released ViT-L/14 (OpenAI's 303,966,208-parameter
    image tower) plus the 768 -> 1 head."""
    with torch.device("meta"):
        model = AestheticModel.random(device="meta")
    visual = model.visual.state_dict()
    assert VisionConfig.from_state_dict(visual, prefix="") == VisionConfig()
    assert sum(v.numel() for v in model.visual.parameters()) == 303_966_208
    assert tuple(model.head.weight.shape) == (1, 768)


# --------------------------------------------------------------------------------------------
# the real heads (../shared/weights): LAION's linear head and the improved predictor's MLP,
# under a stand-in CLIP tower with ViT-L/14's 768-d output (no real ViT-L-14.pt here)

REAL_HEADS = {  # class -> (manifest entry, file, folder in ../shared/weights)
    AestheticModel: ("laion-aesthetic-vit-l-14-linear", "sa_0_4_vit_l_14_linear.pth",
                     "laion-aesthetic"),
    ImprovedAestheticModel: ("improved-aesthetic-vit-l-14-mlp",
                             "sac+logos+ava1-l14-linearMSE.pth", "improved-aesthetic"),
}
WIDE = VisionConfig(width=64, layers=2, heads=1, patch_size=32, image_size=224, output_dim=768)


@pytest.fixture(scope="module")
def real_heads_root(shared_dir, tmp_path_factory) -> Path:
    """A weights folder: a stand-in OpenAI CLIP archive with a 768-d output and the real head
    files as symlinks under their manifest entries' folders."""
    root = tmp_path_factory.mktemp("weights")
    torch.manual_seed(3)
    clip_dir = root / "openai-clip-vit-l-14"
    clip_dir.mkdir()
    scripted = torch.jit.trace(FakeOpenAICLIP(WIDE).eval(), torch.zeros(1, 3, 224, 224))
    torch.jit.save(scripted.half(), str(clip_dir / "ViT-L-14.pt"))
    for entry, name, folder in REAL_HEADS.values():
        (root / entry).mkdir()
        os.symlink(shared_dir / "weights" / folder / name, root / entry / name)
    return root


def _raw(root: Path, cls) -> dict[str, torch.Tensor]:
    entry, name, _ = REAL_HEADS[cls]
    return torch.load(root / entry / name, map_location="cpu", weights_only=True)


def _embeddings(n: int = 6) -> torch.Tensor:
    g = torch.Generator().manual_seed(11)
    return F.normalize(torch.randn(n, 768, generator=g), dim=-1)


@pytest.mark.parametrize("cls", list(REAL_HEADS), ids=["laion", "improved"])
def test_real_head_is_the_pinned_file_and_loads_strictly(cls, real_heads_root,
                                                         unpinned_registry):
    from omni_core.weights import VerifyState, verify

    entry, name, _ = REAL_HEADS[cls]
    report = verify(entry, real_heads_root)  # sha256 against the packaged manifest
    assert [f.state for f in report.files] == [VerifyState.OK], report.summary()
    model = cls.from_pretrained(root=real_heads_root,
                                registry=unpinned_registry("openai-clip-vit-l-14"))
    assert not model.is_debug and model.head_path == real_heads_root / entry / name
    assert entry in model.describe() and not model.head.training
    got, raw = model.head.state_dict(), _raw(real_heads_root, cls)
    assert set(got) == set(raw)  # strict: every key, nothing left over
    for k, v in raw.items():
        torch.testing.assert_close(got[k], v, atol=0, rtol=0, msg=k)
    res = score_frames(np.full((2, 64, 96, 3), 90, np.uint8), model)  # the whole path runs
    assert np.isfinite(res.score)


def test_laion_head_scores_are_the_linear_map(real_heads_root, unpinned_registry):
    model = AestheticModel.from_pretrained(root=real_heads_root,
                                           registry=unpinned_registry("openai-clip-vit-l-14"))
    raw = _raw(real_heads_root, AestheticModel)
    x = _embeddings()
    want = x.double() @ raw["weight"].double().T + raw["bias"].double()
    torch.testing.assert_close(model.frame_scores(x).double(), want[:, 0], atol=1e-5, rtol=0)


def test_improved_mlp_scores_are_its_affine_chain(real_heads_root, unpinned_registry):
    """No activation between the layers and dropout off in eval mode: the score is the five
    affine maps of the raw state dict in a row, i.e. one 768 -> 1 affine map."""
    model = ImprovedAestheticModel.from_pretrained(
        root=real_heads_root, registry=unpinned_registry("openai-clip-vit-l-14"))
    assert isinstance(model.head, ImprovedAestheticHead)
    raw = {k: v.double() for k, v in _raw(real_heads_root, ImprovedAestheticModel).items()}
    x = _embeddings()
    h = x.double()
    for i in (0, 2, 4, 6, 7):
        h = h @ raw[f"layers.{i}.weight"].T + raw[f"layers.{i}.bias"]
    scores = model.frame_scores(x)
    torch.testing.assert_close(scores.double(), h[:, 0], atol=1e-4, rtol=0)
    w, b = torch.eye(768, dtype=torch.float64), torch.zeros(768, dtype=torch.float64)
    for i in (0, 2, 4, 6, 7):
        layer_w, layer_b = raw[f"layers.{i}.weight"], raw[f"layers.{i}.bias"]
        w, b = layer_w @ w, layer_w @ b + layer_b
    torch.testing.assert_close(scores.double(), (x.double() @ w.T + b)[:, 0], atol=1e-4, rtol=0)
    assert torch.equal(model.frame_scores(x), scores)  # deterministic: dropout is off


def test_heads_do_not_load_into_each_other(real_heads_root, tmp_path, unpinned_registry):
    """Strict loading: the MLP's file under the linear head's name is refused, naming keys."""
    os.symlink(real_heads_root / "openai-clip-vit-l-14", tmp_path / "openai-clip-vit-l-14")
    (tmp_path / HEAD_ENTRY).mkdir()
    entry, name, _ = REAL_HEADS[ImprovedAestheticModel]
    os.symlink(real_heads_root / entry / name, tmp_path / HEAD_ENTRY / HEAD_FILE)
    with pytest.raises(WeightsError, match="layers.0.weight"):
        AestheticModel.from_pretrained(
            root=tmp_path, registry=unpinned_registry("openai-clip-vit-l-14", HEAD_ENTRY))


def test_aes_metric_head_option():
    from evaluation.metrics.aes import AES, AESOptions

    assert AESOptions().head == "laion"
    with pytest.raises(ValueError, match="head"):
        AESOptions(head="mlp")
    metric = AES(options=AESOptions(head="improved"))
    metric.setup()
    assert type(metric.model) is ImprovedAestheticModel and metric.model.is_debug
    res = score_frames(np.full((2, 64, 96, 3), 90, np.uint8), metric.model)
    assert np.isfinite(res.score)
