"""S3FD face detector as ``joonson/syncnet_python``'s face-track pipeline runs it.

Reference: ``detectors/s3fd/nets.py`` (network), ``box_utils.py`` (priors, decoding, both
NMS passes) and ``__init__.py`` (``S3FD.detect_faces``) in
https://github.com/joonson/syncnet_python, called by ``run_pipeline.inference_video`` as
``detect_faces(rgb_frame, conf_th=0.9, scales=[facedet_scale])`` with ``facedet_scale=0.25``.

Protocol (what :func:`detect` does, step by step as upstream):

1. The frame arrives as RGB uint8 (upstream reads JPEGs with cv2 and converts BGR -> RGB).
2. ``cv2.resize`` by ``scale`` (bilinear, on uint8), then channels first. Upstream flips to
   BGR, subtracts the Caffe mean ``[104, 117, 123]`` and flips back, so the network sees
   **RGB** channels minus ``[123, 117, 104]``; no division by a standard deviation.
3. VGG16 (pool3 with ``ceil_mode``) + dilated fc6 / 1x1 fc7 convolutions + two extra
   blocks give six sources at strides 4..128; conv3_3, conv4_3 and conv5_3 are L2-normalised
   with learnt per-channel scales. The stride-4 classifier has 4 outputs: the max over the
   first three is the background logit ("max-out"), the fourth the face logit.
4. Priors: one square anchor per cell, ``min_size`` 16..512 for strides 4..128, centres at
   ``(j + 0.5) * step / W``, all normalised by the *resized* image size; decode with variances
   0.1 (centre) and 0.2 (size); softmax face probability.
5. ``Detect``: keep scores > 0.05, NMS at IoU 0.3 over the 5000 best, keep the 750 best.
6. Keep scores > ``conf_th``; multiply the normalised boxes by the *original* width and
   height; a final NMS at IoU 0.1 (over all scales together).

Output rows are ``[x0, y0, x1, y1, score]`` in original pixels, float64 as upstream's
``np.vstack``; boxes are not clipped to the image (upstream does not clip either).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from omni_core.errors import OmniError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "CONF_TH",
    "FACEDET_SCALE",
    "MEAN_RGB",
    "MIN_SIZES",
    "STEPS",
    "VARIANCES",
    "VERSION",
    "S3FD",
    "S3FDConfig",
    "decode",
    "detect",
    "detect_frames",
    "detect_head",
    "feature_map_sizes",
    "nms_final",
    "nms_head",
    "preprocess",
    "prior_boxes",
]

VERSION = "1"

#: ``run_pipeline.py`` defaults: ``--facedet_scale 0.25`` and ``conf_th=0.9``.
FACEDET_SCALE = 0.25
CONF_TH = 0.9
#: Caffe BGR mean [104, 117, 123], applied in RGB order as upstream's double flip does.
MEAN_RGB = (123.0, 117.0, 104.0)
MIN_SIZES = (16, 32, 64, 128, 256, 512)
STEPS = (4, 8, 16, 32, 64, 128)
VARIANCES = (0.1, 0.2)
#: ``box_utils.Detect`` defaults.
HEAD_CONF = 0.05
HEAD_NMS = 0.3
HEAD_NMS_TOP_K = 5000
HEAD_TOP_K = 750
#: ``detect_faces``' final ``nms_(bboxes, 0.1)``.
FINAL_NMS = 0.1


# --------------------------------------------------------------------------------------------
# the network


@dataclass(frozen=True)
class S3FDConfig:
    """Channel widths of ``S3FDNet``; the defaults are ``sfd_face.pth``'s.

    Layer order, kernels, strides and dilations are fixed (they set the six strides the priors
    assume); only widths vary, for the debug twin.
    """

    vgg: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)  # conv1..conv5 blocks
    fc: int = 1024  # fc6 / fc7 (as convolutions)
    extras: tuple[int, int, int, int] = (256, 512, 128, 256)

    @classmethod
    def tiny(cls) -> S3FDConfig:
        return cls((8, 8, 16, 16, 16), 32, (16, 16, 8, 16))


class L2Norm(nn.Module):
    """Per-position L2 normalisation over channels times a learnt per-channel ``weight``."""

    def __init__(self, channels: int, scale: float) -> None:
        super().__init__()
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.full((channels,), float(scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        return self.weight[None, :, None, None] * (x / norm)


def _vgg(c: tuple[int, ...], fc: int) -> nn.ModuleList:
    # ModuleList indices are the checkpoint's key names (vgg.0, vgg.2, ..., vgg.31, vgg.33).
    layers: list[nn.Module] = []
    c_in = 3
    for block, (width, n_convs) in enumerate(zip(c, (2, 2, 3, 3, 3), strict=True)):
        for _ in range(n_convs):
            layers += [nn.Conv2d(c_in, width, 3, 1, padding=1), nn.ReLU(inplace=True)]
            c_in = width
        layers.append(nn.MaxPool2d(2, 2, ceil_mode=block == 2))
    layers += [nn.Conv2d(c_in, fc, 3, 1, padding=6, dilation=6), nn.ReLU(inplace=True),
               nn.Conv2d(fc, fc, 1, 1), nn.ReLU(inplace=True)]
    return nn.ModuleList(layers)


# vgg indices after which a source is taken: conv3_3 (+ReLU), conv4_3, conv5_3, fc7
_SOURCE_ENDS = (16, 23, 30, 35)


class S3FD(PretrainedComponent, nn.Module):
    """S3FD (``S3FDNet``) with upstream's state-dict keys: ``vgg.*``, ``L2Norm3_3.weight``,
    ``L2Norm4_3.weight``, ``L2Norm5_3.weight``, ``extras.*``, ``loc.*``, ``conf.*``.

    :meth:`forward` returns the raw head outputs; decoding and NMS live in :func:`detect_head`
    so that they can be tested on hand-made tensors.
    """

    weights_entry = "s3fd-sfd-face"
    weights_files = ("sfd_face.pth",)

    def __init__(self, config: S3FDConfig | None = None) -> None:
        nn.Module.__init__(self)
        cfg = config or S3FDConfig()
        self.config = cfg
        v, e = cfg.vgg, cfg.extras
        self.vgg = _vgg(v, cfg.fc)
        self.L2Norm3_3 = L2Norm(v[2], 10)
        self.L2Norm4_3 = L2Norm(v[3], 8)
        self.L2Norm5_3 = L2Norm(v[4], 5)
        self.extras = nn.ModuleList([
            nn.Conv2d(cfg.fc, e[0], 1, 1), nn.Conv2d(e[0], e[1], 3, 2, padding=1),
            nn.Conv2d(e[1], e[2], 1, 1), nn.Conv2d(e[2], e[3], 3, 2, padding=1),
        ])
        sources = (v[2], v[3], v[4], cfg.fc, e[1], e[3])
        self.loc = nn.ModuleList([nn.Conv2d(c, 4, 3, 1, padding=1) for c in sources])
        # stride-4 classifier: 3 background logits (max-out) + 1 face logit
        self.conf = nn.ModuleList([nn.Conv2d(c, 4 if i == 0 else 2, 3, 1, padding=1)
                                   for i, c in enumerate(sources)])
        self.eval()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def sources(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The six feature maps the heads look at (strides 4, 8, 16, 32, 64, 128)."""
        out: list[torch.Tensor] = []
        norms = (self.L2Norm3_3, self.L2Norm4_3, self.L2Norm5_3)
        start = 0
        for k, end in enumerate(_SOURCE_ENDS):
            for layer in self.vgg[start:end]:
                x = layer(x)
            out.append(norms[k](x) if k < 3 else x)
            start = end
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if k % 2 == 1:
                out.append(x)
        return out

    def forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        """(B, 3, H, W) mean-subtracted RGB -> loc (B, P, 4), face/background softmax
        (B, P, 2) and the six feature-map sizes (for :func:`prior_boxes`)."""
        locs, confs, sizes = [], [], []
        for i, s in enumerate(self.sources(x)):
            c = self.conf[i](s)
            if i == 0:  # max-out background label
                c = torch.cat((c[:, 0:3].max(dim=1, keepdim=True).values, c[:, 3:]), dim=1)
            l_ = self.loc[i](s)
            sizes.append((int(l_.shape[2]), int(l_.shape[3])))
            locs.append(l_.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
            confs.append(c.permute(0, 2, 3, 1).reshape(x.shape[0], -1))
        loc = torch.cat(locs, 1).view(x.shape[0], -1, 4)
        conf = torch.softmax(torch.cat(confs, 1).view(x.shape[0], -1, 2), dim=-1)
        return loc, conf, sizes

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], config: S3FDConfig | None = None,
                        source: str = "state dict") -> S3FD:
        """Build from ``sfd_face.pth``'s state dict (a ``module.`` prefix is tolerated)."""
        model = cls(config)
        clean = {k.removeprefix("module."): v for k, v in state.items()}
        load_state_dict_strict(model, clean, f"{source} (S3FD, sfd_face.pth)")
        return model.eval()

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths["sfd_face.pth"]
        state = load_torch_checkpoint(path)
        return cls.from_state_dict(state, kw.get("config"), source=str(path)).to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": S3FDConfig()}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """Full widths by default (about 0.1 s per 160x90 frame on two CPU cores, the size
        :func:`detect` feeds it for a 640x360 frame); ``config=S3FDConfig.tiny()`` gives a
        narrower twin with the same code path.

        The trunk keeps torch's default initialisation (its activations fade through the
        layers, so the un-normalised sources give near-zero offsets and ~0.5 probabilities);
        the heads get He initialisation (classifiers at three times that scale), so the
        L2-normalised stride-4/8/16 sources give moderate box offsets around their priors
        and a few face probabilities above upstream's 0.9 threshold on a real frame.
        """
        model = cls(kw.get("config") or S3FDConfig())
        with torch.no_grad():
            for head in (*model.loc, *model.conf):
                nn.init.kaiming_normal_(head.weight, mode="fan_in", nonlinearity="relu")
                head.bias.zero_()
            for head in model.conf:
                head.weight.mul_(3.0)
        return model.eval().to(device)


# --------------------------------------------------------------------------------------------
# priors, decoding and NMS (box_utils)


def feature_map_sizes(height: int, width: int) -> list[tuple[int, int]]:
    """The six source sizes the network produces for an (height, width) input.

    pool1, pool2, pool4, pool5 floor, pool3 ceils; extras are 3x3 stride-2 pad-1 convs.
    """
    h, w = height, width
    out = []
    for k in range(5):
        h, w = ((h + 1) // 2, (w + 1) // 2) if k == 2 else (h // 2, w // 2)
        if k >= 1:
            out.append((h, w))  # after pool2 = conv3_3's size, etc.
    # out: stride 4 (after pool2), 8, 16, 32 (after pool5 = fc7); add the two extras
    for _ in range(2):
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
        out.append((h, w))
    return out


def prior_boxes(height: int, width: int, sizes: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(P, 4) float32 priors ``[cx, cy, w, h]`` normalised by the input size, row-major per
    source, in the order of the network's concatenated outputs (``PriorBox.forward``).

    Centres are ``(j + 0.5) / (W / step)``: the grid follows the stride, not the feature-map
    size, so priors of a ceil-rounded map may reach past 1. Computed in float64 and rounded
    once to float32, like upstream's Python-float list.
    """
    out = []
    for (fh, fw), step, size in zip(sizes, STEPS, MIN_SIZES, strict=True):
        ii, jj = np.meshgrid(np.arange(fh), np.arange(fw), indexing="ij")
        cx = (jj.ravel() + 0.5) / (width / step)
        cy = (ii.ravel() + 0.5) / (height / step)
        wh = np.broadcast_to([size / width, size / height], (cx.size, 2))
        out.append(np.column_stack([cx, cy, wh]))
    return torch.from_numpy(np.concatenate(out).astype(np.float32))


def decode(loc: torch.Tensor, priors: torch.Tensor,
           variances: tuple[float, float] = VARIANCES) -> torch.Tensor:
    """SSD box decoding: (P, 4) offsets + (P, 4) ``[cx, cy, w, h]`` priors -> (P, 4)
    ``[x0, y0, x1, y1]`` (same operation order as upstream, for bitwise-equal float32)."""
    centre = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    size = priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1])
    x0y0 = centre - size / 2
    return torch.cat((x0y0, size + x0y0), 1)


def nms_head(boxes: torch.Tensor, scores: torch.Tensor, overlap: float = HEAD_NMS,
             top_k: int = HEAD_NMS_TOP_K) -> torch.Tensor:
    """Greedy NMS of ``box_utils.nms``: the ``top_k`` best scores, drop IoU > ``overlap``.

    Returns kept indices (on the CPU), best first. The IoU has no +1 pixel term; a NaN IoU
    (two empty boxes) drops the candidate, as upstream's ``IoU.le(overlap)`` does.

    The loop runs one step per kept box; it runs in float32 numpy on the CPU (the same IEEE
    operations as upstream's torch ones, so the same boxes are kept): one step is a handful of
    tiny array operations, which on a GPU would each cost a kernel launch and a sync.
    """
    if boxes.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    boxes, scores = boxes.detach().cpu(), scores.detach().cpu()
    _, order = scores.sort(0)  # ascending, as upstream
    idx = order[-top_k:].numpy()
    x1, y1, x2, y2 = (np.ascontiguousarray(c) for c in boxes.numpy().T)
    area = (x2 - x1) * (y2 - y1)
    keep = []
    while idx.size > 0:
        i = idx[-1]
        keep.append(int(i))
        idx = idx[:-1]
        if idx.size == 0:
            break
        w = np.maximum(np.minimum(x2[idx], x2[i]) - np.maximum(x1[idx], x1[i]), np.float32(0))
        h = np.maximum(np.minimum(y2[idx], y2[i]) - np.maximum(y1[idx], y1[i]), np.float32(0))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / ((area[idx] - inter) + area[i])
        idx = idx[iou <= overlap]
    return torch.tensor(keep, dtype=torch.long)


def detect_head(loc: torch.Tensor, scores: torch.Tensor, priors: torch.Tensor) -> torch.Tensor:
    """``box_utils.Detect`` for one image: (P, 4) offsets, (P, 2) softmax, (P, 4) priors ->
    (K, 5) ``[score, x0, y0, x1, y1]`` normalised, best first, K <= 750."""
    boxes = decode(loc, priors)
    face = scores[:, 1]
    mask = face.gt(HEAD_CONF)
    face, boxes = face[mask], boxes[mask]
    keep = nms_head(boxes, face)[:HEAD_TOP_K].to(face.device)
    return torch.cat((face[keep, None], boxes[keep]), 1)


def nms_final(dets: np.ndarray, thresh: float = FINAL_NMS) -> np.ndarray:
    """``box_utils.nms_`` (py-faster-rcnn's CPU NMS without the +1): (N, 5) rows
    ``[x0, y0, x1, y1, score]`` -> kept row indices, best first; drops IoU > ``thresh``."""
    x1, y1, x2, y2, s = (dets[:, k] for k in range(5))
    areas = (x2 - x1) * (y2 - y1)
    order = s.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(int(i))
        rest = order[1:]
        w = np.maximum(0.0, np.minimum(x2[i], x2[rest]) - np.maximum(x1[i], x1[rest]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[rest]) - np.maximum(y1[i], y1[rest]))
        inter = w * h
        with np.errstate(divide="ignore", invalid="ignore"):
            ovr = inter / (areas[i] + areas[rest] - inter)
        order = rest[np.where(ovr <= thresh)[0]]
    return np.array(keep, dtype=np.intp)


# --------------------------------------------------------------------------------------------
# detection


def _check_image(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.ndim != 3 or img.shape[2] != 3 or min(img.shape[:2]) < 1:
        raise OmniError(f"s3fd: expected an (H, W, 3) RGB image, got shape {img.shape}")
    return img


def preprocess(image_rgb: np.ndarray, scale: float = FACEDET_SCALE) -> torch.Tensor:
    """RGB (H, W, 3) -> (1, 3, h, w) float32 network input: ``cv2.resize`` by ``scale``
    (bilinear, in the image's own dtype: uint8 for video frames), RGB minus ``MEAN_RGB``."""
    img = _check_image(image_rgb)
    small = cv2.resize(img, dsize=(0, 0), fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
    if small.ndim != 3 or min(small.shape[:2]) < 1:
        raise OmniError(f"s3fd: scale {scale} shrinks a {img.shape[1]}x{img.shape[0]} image "
                        "to nothing")
    x = small.transpose(2, 0, 1).astype(np.float32)
    x -= np.asarray(MEAN_RGB, dtype=np.float32)[:, None, None]
    return torch.from_numpy(np.ascontiguousarray(x))[None]


def _to_pixels(head: torch.Tensor, conf_th: float, width: int, height: int) -> np.ndarray:
    """Rows of ``detect_head`` above ``conf_th`` -> ``[x0, y0, x1, y1, score]`` pixels
    (float32 arithmetic as upstream, then float64)."""
    above = head[head[:, 0] > conf_th]
    pt = above[:, 1:] * torch.tensor([width, height, width, height], dtype=torch.float32)
    return torch.cat((pt, above[:, :1]), 1).numpy().astype(np.float64)


def _scales(scale: float | Sequence[float]) -> list[float]:
    if np.ndim(scale) == 0:  # a Python or numpy scalar
        return [float(scale)]  # type: ignore[arg-type]
    return [float(s) for s in scale]  # type: ignore[union-attr]


def _run(model: S3FD, x: torch.Tensor) -> list[torch.Tensor]:
    """Forward a (B, 3, h, w) batch; per-image ``detect_head`` output on the CPU."""
    with torch.no_grad():
        loc, conf, sizes = model(x.to(model.device))
    priors = prior_boxes(int(x.shape[2]), int(x.shape[3]), sizes)
    loc, conf = loc.float().cpu(), conf.float().cpu()
    return [detect_head(loc[b], conf[b], priors) for b in range(x.shape[0])]


def detect(image_rgb: np.ndarray, model: S3FD, conf_th: float = CONF_TH,
           scale: float | Sequence[float] = FACEDET_SCALE) -> np.ndarray:
    """Faces in one RGB frame: (N, 5) float64 ``[x0, y0, x1, y1, score]`` in the frame's
    pixels, best first (``S3FD.detect_faces(image, conf_th, scales=[scale])``).

    Defaults are ``run_pipeline.py``'s (``conf_th=0.9``, ``facedet_scale=0.25``); a sequence
    of scales runs each and applies the final NMS to all detections together, as upstream.
    """
    img = _check_image(image_rgb)
    height, width = img.shape[:2]
    rows = [_to_pixels(_run(model, preprocess(img, s))[0], conf_th, width, height)
            for s in _scales(scale)]
    dets = np.concatenate(rows) if rows else np.empty((0, 5))
    return dets[nms_final(dets)] if len(dets) else np.empty((0, 5))


def detect_frames(frames: np.ndarray | Sequence[np.ndarray], model: S3FD,
                  conf_th: float = CONF_TH, scale: float = FACEDET_SCALE,
                  batch_size: int = 16) -> list[np.ndarray]:
    """:func:`detect` for many frames of one size, ``batch_size`` frames per forward pass.

    Same numbers as per-frame :func:`detect` up to float rounding of batched convolutions.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    out: list[np.ndarray] = []
    for start in range(0, len(frames), batch_size):
        chunk = [_check_image(f) for f in frames[start:start + batch_size]]
        if len({f.shape for f in chunk}) > 1:
            raise OmniError("s3fd: detect_frames needs frames of one size; use detect()")
        height, width = chunk[0].shape[:2]
        x = torch.cat([preprocess(f, scale) for f in chunk])
        for head in _run(model, x):
            dets = _to_pixels(head, conf_th, width, height)
            out.append(dets[nms_final(dets)] if len(dets) else np.empty((0, 5)))
    return out
