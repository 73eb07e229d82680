"""S3FD face detector (omni_core.models.s3fd) against joonson/syncnet_python's detectors/s3fd.

syncnet_python is not an installable package, so the network is checked against the
``sfd_face.pth`` layout read from ``detectors/s3fd/nets.py`` (key names and shapes), the box
arithmetic (priors, decoding, both NMS passes, pixel scaling) against hand computations, and
the debug twin end to end on a sample-corpus frame.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from omni_core.errors import OmniError, WeightsError
from omni_core.models import s3fd as S

# --------------------------------------------------------------------------------------------
# the upstream checkpoint layout, transcribed from S3FDNet (syncnet_python detectors/s3fd)

_VGG = {  # ModuleList index of each conv: (out, in, k, k); ReLUs / pools hold no tensors
    0: (64, 3, 3, 3), 2: (64, 64, 3, 3),
    5: (128, 64, 3, 3), 7: (128, 128, 3, 3),
    10: (256, 128, 3, 3), 12: (256, 256, 3, 3), 14: (256, 256, 3, 3),
    17: (512, 256, 3, 3), 19: (512, 512, 3, 3), 21: (512, 512, 3, 3),
    24: (512, 512, 3, 3), 26: (512, 512, 3, 3), 28: (512, 512, 3, 3),
    31: (1024, 512, 3, 3),  # fc6: 3x3, dilation 6
    33: (1024, 1024, 1, 1),  # fc7
}
_EXTRAS = {0: (256, 1024, 1, 1), 1: (512, 256, 3, 3), 2: (128, 512, 1, 1), 3: (256, 128, 3, 3)}
_SOURCES = (256, 512, 512, 1024, 512, 256)
UPSTREAM_SHAPES: dict[str, tuple[int, ...]] = {}
for _pre, _convs in (("vgg", _VGG), ("extras", _EXTRAS)):
    for _i, _shp in _convs.items():
        UPSTREAM_SHAPES[f"{_pre}.{_i}.weight"] = _shp
        UPSTREAM_SHAPES[f"{_pre}.{_i}.bias"] = _shp[:1]
UPSTREAM_SHAPES |= {"L2Norm3_3.weight": (256,), "L2Norm4_3.weight": (512,),
                    "L2Norm5_3.weight": (512,)}
for _i, _c in enumerate(_SOURCES):
    UPSTREAM_SHAPES[f"loc.{_i}.weight"] = (4, _c, 3, 3)
    UPSTREAM_SHAPES[f"loc.{_i}.bias"] = (4,)
    _n = 4 if _i == 0 else 2  # conf.0: 3 background logits (max-out) + face
    UPSTREAM_SHAPES[f"conf.{_i}.weight"] = (_n, _c, 3, 3)
    UPSTREAM_SHAPES[f"conf.{_i}.bias"] = (_n,)


def upstream_state_dict() -> dict[str, torch.Tensor]:
    """Every tensor gets its own constant so the test can see it lands in its slot."""
    return {k: torch.full(shp, (i + 1) / 1000) for i, (k, shp) in enumerate(
        UPSTREAM_SHAPES.items())}



@pytest.mark.parametrize("legacy", [True, False])
def test_checkpoint_layout_loads_through_weights_registry(tmp_path, legacy, unpinned_registry):
    state = upstream_state_dict()
    assert len(state) == 65
    assert sum(v.numel() for v in state.values()) == 22_459_110  # ~89.8 MB of float32
    path = tmp_path / "s3fd-sfd-face" / "sfd_face.pth"
    path.parent.mkdir(parents=True)
    torch.save(state, path, _use_new_zipfile_serialization=not legacy)
    model = S.S3FD.from_pretrained(root=tmp_path, registry=unpinned_registry("s3fd-sfd-face"))
    assert not model.is_debug and "s3fd-sfd-face" in model.describe()
    own = model.state_dict()
    assert set(own) == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    # the full network on a 160x90 input (a 640x360 frame at facedet_scale 0.25)
    with torch.no_grad():
        loc, conf, sizes = model(torch.zeros(1, 3, 90, 160))
    assert sizes == [(22, 40), (11, 20), (5, 10), (2, 5), (1, 3), (1, 2)]
    assert loc.shape == (1, 1165, 4) and conf.shape == (1, 1165, 2)


def test_checkpoint_errors(tmp_path, unpinned_registry):
    reg = unpinned_registry("s3fd-sfd-face")
    with pytest.raises(WeightsError, match="sfd_face.pth"):
        S.S3FD.from_pretrained(root=tmp_path / "empty", registry=reg)
    state = upstream_state_dict()
    prefixed = {f"module.{k}": v for k, v in state.items()}  # a DataParallel save
    assert torch.equal(S.S3FD.from_state_dict(prefixed).conf[0].bias, state["conf.0.bias"])
    bad = dict(state)
    bad["conf.0.weight"] = torch.zeros(2, 256, 3, 3)  # no max-out: another S3FD variant
    with pytest.raises(WeightsError, match=r"conf\.0\.weight has shape"):
        S.S3FD.from_state_dict(bad)
    # face-alignment's s3fd checkpoint names layers conv1_1, fc6, ...: refused by name
    renamed = {k.replace("vgg.0.", "conv1_1."): v for k, v in state.items()}
    with pytest.raises(WeightsError, match="missing"):
        S.S3FD.from_state_dict(renamed)
    path = tmp_path / "mod" / "s3fd-sfd-face" / "sfd_face.pth"
    path.parent.mkdir(parents=True)
    torch.save(S.S3FD.debug(0, config=S.S3FDConfig.tiny()), path)  # a pickled module
    with pytest.raises(WeightsError, match="safely"):
        S.S3FD.from_pretrained(root=tmp_path / "mod", registry=reg)


def test_max_out_background_on_stride_4():
    model = S.S3FD.debug(0, config=S.S3FDConfig.tiny())
    with torch.no_grad():
        for head in (*model.conf, *model.loc):
            head.weight.zero_()
            head.bias.zero_()
        model.conf[0].bias.copy_(torch.tensor([0.5, 2.0, -1.0, 1.0]))
        _, conf, sizes = model(torch.zeros(1, 3, 37, 53))
    n0 = sizes[0][0] * sizes[0][1]
    face = 1 / (1 + math.exp(-(1.0 - 2.0)))  # softmax(max(0.5, 2, -1), 1)
    torch.testing.assert_close(conf[0, :n0, 1], torch.full((n0,), face))
    torch.testing.assert_close(conf[0, n0:], torch.full_like(conf[0, n0:], 0.5))


# --------------------------------------------------------------------------------------------
# priors and decoding


def test_feature_map_sizes_match_the_network():
    model = S.S3FD.debug(1, config=S.S3FDConfig.tiny())
    for h, w in [(90, 160), (180, 320), (37, 53), (64, 64), (33, 129)]:
        with torch.no_grad():
            loc, _, sizes = model(torch.zeros(1, 3, h, w))
        assert sizes == S.feature_map_sizes(h, w), (h, w)
        assert S.prior_boxes(h, w, sizes).shape == (loc.shape[1], 4)


def test_prior_boxes_by_hand():
    sizes = S.feature_map_sizes(90, 160)
    assert sizes == [(22, 40), (11, 20), (5, 10), (2, 5), (1, 3), (1, 2)]
    p = S.prior_boxes(90, 160, sizes).double()
    assert p.shape == (880 + 220 + 50 + 10 + 3 + 2, 4)
    # first stride-4 prior: centre (0.5 * 4 / 160, 0.5 * 4 / 90), side 16 px
    torch.testing.assert_close(p[0], torch.tensor([0.0125, 2 / 90, 0.1, 16 / 90],
                                                  dtype=torch.float64))
    # row-major: prior 41 is row 1, column 1 of the stride-4 map
    torch.testing.assert_close(p[41, :2], torch.tensor([1.5 * 4 / 160, 1.5 * 4 / 90],
                                                       dtype=torch.float64))
    # first stride-8 prior, then the very last one (stride 128, row 0, column 1, side 512)
    torch.testing.assert_close(p[880], torch.tensor([4 / 160, 4 / 90, 0.2, 32 / 90],
                                                    dtype=torch.float64))
    torch.testing.assert_close(p[-1], torch.tensor([1.5 * 128 / 160, 64 / 90, 3.2, 512 / 90],
                                                   dtype=torch.float64))
    # the grid follows the stride, not the map: ceil-pooled maps reach the far edge
    q = S.prior_boxes(180, 320, S.feature_map_sizes(180, 320))
    assert S.feature_map_sizes(180, 320)[1] == (23, 40)
    assert q[3600 + 22 * 40, 1].item() == pytest.approx(22.5 * 8 / 180)


def test_decode_by_hand():
    priors = torch.tensor([[0.5, 0.5, 0.2, 0.4], [0.1, 0.2, 0.1, 0.1]])
    loc = torch.tensor([[1.0, -1.0, 0.0, math.log(2) / 0.2], [0.0, 0.0, 0.0, 0.0]])
    # centre (0.5 + 0.1 * 0.2, 0.5 - 0.1 * 0.4), size (0.2, 0.8)
    torch.testing.assert_close(S.decode(loc, priors), torch.tensor(
        [[0.42, 0.06, 0.62, 0.86], [0.05, 0.15, 0.15, 0.25]]))


# --------------------------------------------------------------------------------------------
# both NMS passes and the pixel scaling

BOXES = np.array([
    [0, 0, 10, 10],  # A .9
    [1, 0, 11, 10],  # B .8: IoU(A) = 90 / 110
    [20, 20, 30, 30],  # C .7: disjoint
    [0, 5, 10, 15],  # D .6: IoU(A) = 50 / 150 = 1/3
    [6, 0, 16, 10],  # F .5: IoU(A) = 40 / 160 = 1/4
], dtype=np.float64)
SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5])


def _torch_box_utils_nms(boxes, scores, overlap=0.3, top_k=5000):
    """box_utils.nms as upstream writes it: one torch step per kept box."""
    x1, y1, x2, y2 = boxes.unbind(1)
    area = (x2 - x1) * (y2 - y1)
    _, idx = scores.sort(0)
    idx = idx[-top_k:]
    keep = []
    while idx.numel() > 0:
        i = idx[-1]
        keep.append(int(i))
        if idx.numel() == 1:
            break
        idx = idx[:-1]
        w = (x2[idx].clamp(max=x2[i]) - x1[idx].clamp(min=x1[i])).clamp(min=0.0)
        h = (y2[idx].clamp(max=y2[i]) - y1[idx].clamp(min=y1[i])).clamp(min=0.0)
        inter = w * h
        idx = idx[(inter / ((area[idx] - inter) + area[i])).le(overlap)]
    return keep


def test_nms_head_keeps_what_the_torch_loop_keeps():
    """The numpy loop keeps exactly the boxes upstream's torch loop keeps: thousands of
    overlapping candidates in normalised coordinates, empty boxes and ties included."""
    g = torch.Generator().manual_seed(0)
    for n, top_k in ((3000, 5000), (800, 300)):
        xy = torch.rand(n, 2, generator=g) * 0.8
        wh = torch.rand(n, 2, generator=g) * 0.2
        wh[: n // 20] = 0.0  # degenerate boxes: NaN IoU among themselves
        boxes = torch.cat([xy, xy + wh], 1)
        scores = torch.rand(n, generator=g)
        scores[n // 2: n // 2 + 10] = 0.5  # ties
        assert S.nms_head(boxes, scores, top_k=top_k).tolist() == _torch_box_utils_nms(
            boxes, scores, top_k=top_k)


def test_nms_head_and_final_by_hand():
    b, s = torch.from_numpy(BOXES).float(), torch.from_numpy(SCORES).float()
    assert S.nms_head(b, s).tolist() == [0, 2, 4]  # overlap 0.3: 1/4 survives, 1/3 does not
    assert S.nms_head(b[[4, 3, 2, 1, 0]], s[[4, 3, 2, 1, 0]]).tolist() == [4, 2, 0]
    assert S.nms_head(b, s, top_k=2).tolist() == [0]  # only A, B considered; B suppressed
    assert S.nms_head(b[:0], s[:0]).tolist() == []
    dets = np.column_stack([BOXES, SCORES])
    assert S.nms_final(dets).tolist() == [0, 2]  # overlap 0.1: 1/4 is suppressed too
    assert S.nms_final(dets, 0.5).tolist() == [0, 2, 3, 4]
    # a degenerate box has a NaN IoU with another degenerate one: dropped, as upstream
    flat = np.array([[1, 1, 1, 1, 0.9], [1, 1, 1, 1, 0.8]], dtype=np.float64)
    assert S.nms_final(flat).tolist() == [0]


def test_detect_head_by_hand():
    priors = torch.tensor([[0.2, 0.2, 0.1, 0.1], [0.21, 0.2, 0.1, 0.1],
                           [0.7, 0.7, 0.2, 0.2], [0.5, 0.5, 0.4, 0.4]])
    loc = torch.zeros(4, 4)
    face = torch.tensor([0.6, 0.9, 0.3, 0.04])  # the last is under Detect's 0.05
    out = S.detect_head(loc, torch.stack([1 - face, face], 1), priors)
    torch.testing.assert_close(out, torch.tensor([[0.9, 0.16, 0.15, 0.26, 0.25],
                                                  [0.3, 0.6, 0.6, 0.8, 0.8]]))


class _StubNet(nn.Module):
    """Fixed head outputs over a 2-prior layout: checks the detect() plumbing by hand."""

    def __init__(self, loc: torch.Tensor, conf: torch.Tensor) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.out = (loc, conf)
        self.seen: list[torch.Tensor] = []

    @property
    def device(self) -> torch.device:
        return self.p.device

    def forward(self, x):
        self.seen.append(x)
        return self.out[0], self.out[1], [(1, 1)] * 6  # six 1x1 maps -> six priors


def test_detect_scales_to_original_pixels_and_thresholds(monkeypatch):
    # input 4x8 at scale 0.5 of an 8x16 frame: priors normalised by the resized size
    loc = torch.zeros(1, 6, 4)
    face = torch.tensor([0.95, 0.9, 0.99, 0.2, 0.2, 0.2])
    stub = _StubNet(loc, torch.stack([1 - face, face], -1)[None])
    img = np.full((8, 16, 3), 10, np.uint8)
    dets = S.detect(img, stub, conf_th=0.9, scale=0.5)
    assert stub.seen[0].shape == (1, 3, 4, 8)
    # prior 1 scores 0.9, which is not > 0.9; priors 3..5 are under the threshold. Prior 0
    # (stride 4): centre (0.5 * 4 / 8, 0.5 * 4 / 4), side (16 / 8, 16 / 4) of the resized
    # input -> (-0.75, -1.5, 1.25, 2.5) x (16, 8, 16, 8) = (-12, -12, 20, 20) in the frame;
    # prior 2 (stride 16): (-48, -48, 80, 80); IoU 1024 / 16384 < 0.1: both kept, best first
    np.testing.assert_allclose(dets, [[-48, -48, 80, 80, 0.99], [-12, -12, 20, 20, 0.95]],
                               rtol=1e-6)
    assert dets.dtype == np.float64
    # closer boxes: the final NMS at IoU 0.1 keeps only the better one
    loc2 = torch.zeros(1, 6, 4)
    loc2[0, 2, 2:] = math.log(0.25) / 0.2  # prior 2 shrunk to (0, 0, 32, 32) in the frame:
    # IoU with prior 0's box 400 / 1648 = 0.24, under Detect's 0.3 but over the final 0.1
    stub.out = (loc2, stub.out[1])
    one = S.detect(img, stub, conf_th=0.9, scale=0.5)
    np.testing.assert_allclose(one[:, 4], [0.99], rtol=1e-6)
    assert S.detect(img, stub, conf_th=0.999).shape == (0, 5)
    with pytest.raises(OmniError, match="RGB image"):
        S.detect(np.zeros((8, 16)), stub)


def test_preprocess_channel_order_and_mean():
    img = np.zeros((360, 640, 3), np.uint8)
    img[..., 0], img[..., 1], img[..., 2] = 200, 100, 50  # R, G, B
    x = S.preprocess(img, 0.25)
    assert x.shape == (1, 3, 90, 160) and x.dtype == torch.float32
    # upstream: RGB -> BGR, minus [104, 117, 123], -> RGB again: RGB minus [123, 117, 104]
    assert x[0, :, 0, 0].tolist() == [77.0, -17.0, -54.0]
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    import cv2

    chw = cv2.resize(img, (0, 0), fx=0.5, fy=0.5).transpose(2, 0, 1)[[2, 1, 0]]
    chw = chw.astype(np.float32) - np.array([104.0, 117.0, 123.0], np.float32)[:, None, None]
    np.testing.assert_array_equal(S.preprocess(img, 0.5)[0].numpy(), chw[[2, 1, 0]])


# --------------------------------------------------------------------------------------------
# the debug twin end to end


@pytest.fixture(scope="module")
def frames(sample_corpus):
    from omni_core.media import read_frames

    video = sorted((sample_corpus.out / "talking").glob("*.mp4"))[0]
    return read_frames(video, [0, 12])


def test_debug_twin_end_to_end_on_a_sample_frame(frames):
    model = S.S3FD.debug(0)
    assert model.is_debug and "not meaningful" in model.describe()
    h, w = frames.shape[1:3]
    dets = S.detect(frames[0], model)
    assert dets.dtype == np.float64 and dets.ndim == 2 and dets.shape[1] == 5
    assert len(dets) >= 1
    assert np.isfinite(dets).all()
    assert (dets[:, 0] < dets[:, 2]).all() and (dets[:, 1] < dets[:, 3]).all()
    cx, cy = (dets[:, 0] + dets[:, 2]) / 2, (dets[:, 1] + dets[:, 3]) / 2
    assert ((cx >= 0) & (cx <= w) & (cy >= 0) & (cy <= h)).all()
    assert (dets[:, 4] > S.CONF_TH).all() and (dets[:, 4] <= 1).all()
    assert (np.diff(dets[:, 4]) <= 0).all()
    # batched frames give the per-frame answers
    batched = S.detect_frames(frames, model, batch_size=2)
    assert len(batched) == 2
    for one, frame in zip(batched, frames, strict=True):
        np.testing.assert_allclose(one, S.detect(frame, model), rtol=1e-4, atol=1e-3)
    # several scales: each runs, one final NMS over all of them
    multi = S.detect(frames[0], model, scale=[0.25, 0.5])
    assert multi.shape[1] == 5 and len(multi) >= 1


def test_debug_twin_is_deterministic(frames):
    a, b = S.S3FD.debug(0), S.S3FD.debug(0)
    sa, sb = a.state_dict(), b.state_dict()
    assert set(sa) == set(UPSTREAM_SHAPES)
    for k, shp in UPSTREAM_SHAPES.items():
        assert tuple(sa[k].shape) == shp
        assert torch.equal(sa[k], sb[k]), k
    np.testing.assert_array_equal(S.detect(frames[1], a), S.detect(frames[1], b))
    np.testing.assert_array_equal(S.detect(frames[1], a), S.detect(frames[1], a))
    tiny = S.S3FD.debug(0, config=S.S3FDConfig.tiny())
    assert set(tiny.state_dict()) == set(UPSTREAM_SHAPES)
    assert S.detect(frames[1], tiny).shape[1] == 5


def test_random_build_has_the_released_layout():
    with torch.device("meta"):
        model = S.S3FD.random(device="meta")
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == UPSTREAM_SHAPES
