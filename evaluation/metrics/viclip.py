"""ViCLIP text-video similarity: VBench ``overall_consistency`` with InternVid's ViCLIP-L.

Protocol (VBench ``vbench/overall_consistency.py``, ``third_party/ViCLIP``), as the paper ran it:

1. 8 frames: the video is cut into 8 equal segments (``linspace(0, n, 9)`` truncated to int)
   and the middle frame ``(start + end - 1) // 2`` of each is taken; a video shorter than 8
   frames repeats its last sampled frame (VBench ``get_frame_indices(sample="middle")``,
   :func:`frame_indices`);
2. VBench ``clip_transform(224)`` on uint8 frames (decord's torch bridge): bicubic resize of
   the shorter side, rounded back to uint8, center crop, ``/255``, CLIP mean/std;
3. video feature: ViCLIP's ViT-L/14 over all 8 x 256 patch tokens (spatial + temporal
   position embeddings, one class token), projected to 768-d, L2 normalised;
4. text feature: CLIP BPE tokens in a 32-token context (SOT, text, EOT; a longer text is cut
   to 32 tokens and its last one replaced by EOT), CLIP text transformer, EOT feature,
   projected, L2 normalised;
5. score: the cosine of the two (raw, in -1..1: it can be negative). The paper's tables report
   it x100; the tables do that, not this module.

Which text (which caption field) is scored is the harness's decision; this module scores the
string it is given.

The network, its tokenizer and its checkpoint: :mod:`evaluation.models.viclip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from omni_core.media import sample_indices

from ..models.clip_vit import clip_preprocess
from ..models.viclip import ViCLIPModel
from ..registry import Metric, MetricSpec, Output, register
from ..texts import caption_text

__all__ = [
    "DIRECTION",
    "VERSION",
    "ViCLIPOptions",
    "ViCLIPResult",
    "frame_indices",
    "score_clip",
    "score_video",
]

VERSION = "1"
DIRECTION = "higher"


@dataclass(frozen=True)
class ViCLIPOptions:
    """Protocol choices of the ViCLIP metric (defaults: VBench ``overall_consistency``)."""

    #: Frames per video (ViCLIP-L was trained with 8; its temporal embedding has 8 rows).
    num_frames: int = 8
    #: Side of the square input.
    image_size: int = 224
    #: Antialiased bicubic resize (VBench's torchvision < 0.16 did not antialias tensors).
    antialias: bool = False
    #: Text context in tokens, SOT and EOT included (ViCLIP's ``max_txt_l``).
    context_length: int = 32
    #: which part of the structured caption is the text (``evaluation.texts``): ``visual``
    #: (scene, appearance, actions), ``scene``, ``actions``, ``audio`` or ``prompt``.
    text_field: str = "visual"

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.image_size < 1 or self.context_length < 2:
            raise ValueError("num_frames, image_size must be >= 1 and context_length >= 2")


@dataclass(frozen=True)
class ViCLIPResult:
    """Raw cosine (not x100) between the video and the text, with what produced it."""

    score: float
    frame_indices: tuple[int, ...]
    n_text_tokens: int  # SOT and EOT included, after the cut
    truncated: bool  # the text did not fit in the context and was cut
    text: str = field(repr=False, default="")


def frame_indices(n_frames: int, num_frames: int = 8) -> list[int]:
    """VBench ``get_frame_indices(num_frames, n_frames, sample="middle")``: see
    ``omni_core.media.sample_indices(..., "segment_middle")``."""
    if n_frames < 1:
        raise ValueError("the video has no frames")
    return [int(i) for i in sample_indices(n_frames, num_frames, "segment_middle")]


# --------------------------------------------------------------------------------------------
# scoring


def score_clip(
    frames: np.ndarray,
    text: str,
    model: ViCLIPModel,
    options: ViCLIPOptions | None = None,
    indices: Sequence[int] | None = None,
) -> ViCLIPResult:
    """ViCLIP score of already-sampled frames ``(num_frames, H, W, 3)`` uint8 and ``text``.

    ``indices`` only labels the result (which frames of the video these were).
    """
    opt = options or ViCLIPOptions()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] != opt.num_frames:
        raise ValueError(f"expected ({opt.num_frames}, H, W, 3) frames, got {frames.shape}")
    if opt.context_length != model.cfg.text.context_length:
        raise ValueError(f"context_length {opt.context_length} does not match the model's "
                         f"{model.cfg.text.context_length}")
    video = clip_preprocess(frames, opt.image_size, quantize=True, antialias=opt.antialias)
    v = model.video_features(video.unsqueeze(0))
    ids = model.tokenizer.encode(text)
    tokens = model.tokenizer.tokenize(text, opt.context_length)
    t = model.text_features(tokens)
    score = float((v @ t.T)[0, 0])
    return ViCLIPResult(
        score=score,
        frame_indices=tuple(int(i) for i in (indices if indices is not None
                                             else range(opt.num_frames))),
        n_text_tokens=min(len(ids) + 2, opt.context_length),
        truncated=len(ids) + 2 > opt.context_length,
        text=text,
    )


def score_video(
    frames: np.ndarray,
    text: str,
    model: ViCLIPModel,
    options: ViCLIPOptions | None = None,
) -> ViCLIPResult:
    """ViCLIP score of a whole video (all its frames, ``(N, H, W, 3)`` uint8) and ``text``.

    Picks the frames with :func:`frame_indices`; a caller that decodes only those frames
    passes them to :func:`score_clip` instead.
    """
    opt = options or ViCLIPOptions()
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise ValueError(f"expected a non-empty (N, H, W, 3) frame array, got {frames.shape}")
    idx = frame_indices(frames.shape[0], opt.num_frames)
    return score_clip(frames[idx], text, model, opt, indices=idx)


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness


@register
class ViCLIP(Metric):
    spec = MetricSpec(
        name="viclip", version=VERSION, needs=("frames", "caption"),
        outputs=(Output("viclip", "ViCLIP", DIRECTION, scale=100.0),),
        doc="ViCLIP-L cosine between 8 segment-middle frames and the caption text (x100)")
    Options = ViCLIPOptions

    def setup(self) -> None:
        self.model = self.load(ViCLIPModel)

    def compute(self, inp) -> dict:
        idx = frame_indices(inp.info.n_frames, self.options.num_frames)
        text = caption_text(inp.caption, self.options.text_field)
        res = score_clip(inp.frames(tuple(idx)), text, self.model, self.options, indices=idx)
        return {"viclip": float(res.score)}
