"""Sync-C / Sync-D / AV offset with SyncNet, as ``joonson/syncnet_python`` computes them.

Reference: ``SyncNetInstance.evaluate`` (scoring), ``SyncNetModel.S`` (network) and
``run_pipeline.crop_video`` (face-track crops) in https://github.com/joonson/syncnet_python.

Protocol (the defaults of :class:`SyncOptions`):

1. 25 fps video (resample first with :func:`frame_indices_for_fps`) and 16 kHz mono audio.
2. One face track: a box per frame, gaps linearly interpolated, box size and centre smoothed
   with a 13-tap median filter, a square crop of side ``2 * s * (1 + crop_scale)`` (``s`` =
   half the longer box side, ``crop_scale`` 0.4) reaching ``s * (1 + 2 crop_scale)`` below the
   box centre, frames padded with grey 110, resized to 224x224 (:func:`crop_face_track`).
3. The network sees raw 0..255 BGR floats (no normalisation) as 5-frame windows, and the MFCC
   of the int16-scale waveform (python_speech_features defaults: 13 coefficients at 100 Hz)
   as 20-step windows: window ``i`` pairs frames ``i..i+4`` with MFCC steps ``4i..4i+19``.
   Upstream makes ``min(n_frames, n_samples // 640) - 5`` windows; so do we.
4. For every video window ``i`` the L2 distance to the audio features of windows
   ``i - 15 .. i + 15`` (out-of-range audio features are zero vectors, as upstream pads them)
   -> a distance matrix (windows x 31) (:func:`offset_distances`).
5. Mean over windows per offset -> a 31-point curve; Sync-D = its minimum, Sync-C = median
   minus minimum, AV offset = 15 - argmin (:func:`sync_from_distances`).

Upstream reference values (``demo_syncnet.py`` on ``data/example.avi`` with
``syncnet_v2.model``, from the repository README): AV offset 3, min dist (Sync-D) 5.353,
confidence (Sync-C) 10.021. We cannot rerun them offline; the curve arithmetic that turns
distances into these three numbers is tested on a hand-built curve.

Sign of the offset: the minimum at offset ``k`` means video window ``i`` matches audio window
``i - k``: a positive offset says the sound comes ``k`` frames (40 ms each) before the lips.

This module scores crops and audio it is given, in memory. Upstream's media handling (25 fps
MPEG-4 AVI and JPEG frames, XVID crop videos read back through JPEG, ffmpeg's resampler), its
shot split and its face tracker live in :mod:`.sync_pipeline`, which the registered metric
(``evaluation.metrics.sync``) runs; :func:`track_faces` is a different, order-free linker the
curation pipelines use (best IoU per box), not upstream's ``track_shot``.
"""


from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Self

import numpy as np
import torch
from torch import nn

from omni_core.errors import OmniError
from omni_core.weights import PretrainedComponent, load_state_dict_strict, load_torch_checkpoint

__all__ = [
    "FPS",
    "MFCC_PER_FRAME",
    "SAMPLES_PER_FRAME",
    "SAMPLE_RATE",
    "WINDOW_FRAMES",
    "WINDOW_MFCC",
    "FaceTrack",
    "SyncNet",
    "SyncNetConfig",
    "SyncOptions",
    "SyncResult",
    "crop_face_track",
    "frame_indices_for_fps",
    "mean_results",
    "mfcc_features",
    "offset_distances",
    "padded_window",
    "sync_features",
    "sync_from_distances",
    "sync_scores",
    "sync_scores_from_boxes",
    "track_faces",
]

FPS = 25  # the network was trained on 25 fps video: 4 MFCC steps (100 Hz) per frame
SAMPLE_RATE = 16000
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS  # 640, upstream's hard-coded audio/video ratio
MFCC_PER_FRAME = 4
WINDOW_FRAMES = 5
WINDOW_MFCC = 20


# --------------------------------------------------------------------------------------------
# options and results


@dataclass(frozen=True)
class SyncOptions:
    """Every choice that changes Sync-C/Sync-D; defaults are syncnet_python's.

    Attributes:
        detector: the face detector of the registered metric: "s3fd" (the original
            pipeline's, :mod:`.s3fd`, scale 0.25, confidence 0.9), "scrfd" (insightface's, as
            Verse-Bench), "lbp" (scikit-image's cascade, offline), "given" (boxes supplied by
            the caller of :func:`sync_scores_from_boxes`).
        media: "reference" (default): decode, crop and read back through the same ffmpeg and
            OpenCV steps as upstream (25 fps MPEG-4 AVI and JPEG frames, XVID crop videos,
            pcm_s16le audio; :mod:`.sync_pipeline`), so the numbers are upstream's; "direct":
            frames, audio and crops in memory (no codec losses, no shot split; faster).
        audio_from: with reference media, where the 16 kHz audio comes from: "avi" (default,
            run_pipeline: the 25 fps AVI's track, which ffmpeg's AVI muxer re-encodes as MP3)
            or "source" (the input's own audio, as the syncnet-python 0.2.3 / MoChaBench port
            does).
        scene_split: with reference media, track faces within the shots PySceneDetect's
            ContentDetector finds, as run_pipeline does (shots shorter than ``min_track``
            frames are skipped).
        min_track, max_gap, track_iou, tracker, min_face_size: face tracking as upstream
            ``run_pipeline.track_shot`` (:func:`.sync_pipeline.track_shot`): greedy passes
            linking a box to the track's last box by IoU above ``track_iou`` (0.5) within
            ``max_gap`` (``--num_failed_det`` 25) frames; a track is kept with more than
            ``min_track`` (``--min_track`` 100) detections and a mean box width or height
            above ``min_face_size`` (``--min_face_size`` 100) pixels. ``tracker``: "joonson"
            (default) tries a frame's next box after an IoU miss, "mochabench" (the
            syncnet-python package) moves on to the next frame.
        crop_scale: margin around the face box (upstream ``--crop_scale`` 0.40; Verse-Bench
            0.3).
        smooth_kernel: median-filter taps for box size and centre over the track (upstream 13;
            1 turns smoothing off). Uses ``scipy.signal.medfilt``, zero-padded at the ends,
            as upstream does.
        crop_size: side of the square crop fed to the lip stream (224; the network's last lip
            convolution is sized for it).
        pad_value: grey level of the border added before cropping (upstream 110).
        vshift: largest offset searched, in frames, both ways (upstream ``--vshift`` 15).
        batch_size: windows per forward pass (memory only; upstream 20).
        channel_order: channel order the network sees; upstream reads frames with OpenCV, so
            "bgr". Our frames are RGB and are flipped when this is "bgr".
        int16_audio: scale the [-1, 1] waveform to int16 values (round, clip) before the MFCC,
            as upstream computes the MFCC of ``wavfile.read`` of a pcm_s16le wav. The scale
            shifts the log-energy coefficients, so it changes the numbers.
        framewise_kernel: median-filter taps of the per-window confidence kept for debugging
            (upstream prints ``medfilt(conf, 9)``).
        track_aggregate: how several face tracks of one video are combined by
            :func:`mean_results` ("mean" over tracks; Verse-Bench averages per scene, which
            is the same thing with one track per scene).
    """

    detector: str = "s3fd"
    media: str = "reference"
    audio_from: str = "avi"
    scene_split: bool = True
    min_track: int = 100
    max_gap: int = 25
    track_iou: float = 0.5
    tracker: str = "joonson"
    min_face_size: float = 100.0
    crop_scale: float = 0.4
    smooth_kernel: int = 13
    crop_size: int = 224
    pad_value: int = 110
    vshift: int = 15
    batch_size: int = 20
    channel_order: str = "bgr"
    int16_audio: bool = True
    framewise_kernel: int = 9
    track_aggregate: str = "mean"

    def __post_init__(self) -> None:
        if self.detector not in ("scrfd", "lbp", "s3fd", "given"):
            raise ValueError(f"detector must be scrfd, lbp, s3fd or given, got {self.detector!r}")
        if self.media not in ("reference", "direct"):
            raise ValueError(f"media must be 'reference' or 'direct', got {self.media!r}")
        if self.audio_from not in ("avi", "source"):
            raise ValueError(f"audio_from must be 'avi' or 'source', got {self.audio_from!r}")
        if self.tracker not in ("joonson", "mochabench"):
            raise ValueError(f"tracker must be 'joonson' or 'mochabench', got {self.tracker!r}")
        if self.min_track < 1 or self.max_gap < 0 or not 0 < self.track_iou < 1:
            raise ValueError("need min_track >= 1, max_gap >= 0 and 0 < track_iou < 1")
        if self.min_face_size < 0:
            raise ValueError(f"min_face_size must be >= 0, got {self.min_face_size}")
        if self.crop_scale < 0:
            raise ValueError(f"crop_scale must be >= 0, got {self.crop_scale}")
        if self.smooth_kernel < 1 or self.smooth_kernel % 2 == 0:
            raise ValueError(f"smooth_kernel must be an odd number >= 1, got {self.smooth_kernel}")
        if self.framewise_kernel < 1 or self.framewise_kernel % 2 == 0:
            raise ValueError(
                f"framewise_kernel must be an odd number >= 1, got {self.framewise_kernel}"
            )
        if self.vshift < 0:
            raise ValueError(f"vshift must be >= 0, got {self.vshift}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {self.channel_order!r}")
        if self.track_aggregate != "mean":
            raise ValueError(f"track_aggregate must be 'mean', got {self.track_aggregate!r}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for the results' provenance."""
        return asdict(self)


@dataclass(frozen=True)
class SyncResult:
    """Sync-C, Sync-D and the AV offset of one face track, plus what explains them.

    ``mean_dists[j]`` is the mean distance at offset ``vshift - j`` (so ``offsets`` runs from
    +vshift down to -vshift, upstream's order); ``dists`` is the full windows x offsets matrix;
    ``framewise_conf`` is upstream's per-window confidence at the best offset (median filtered).
    """

    sync_c: float
    sync_d: float
    av_offset: int
    mean_dists: np.ndarray = field(repr=False)
    dists: np.ndarray = field(repr=False)
    framewise_conf: np.ndarray = field(repr=False)
    n_windows: int = 0
    track_start: int = 0  # first video frame of the track (after 25 fps resampling)

    @property
    def offsets(self) -> np.ndarray:
        v = (len(self.mean_dists) - 1) // 2
        return np.arange(v, -v - 1, -1)

    def scores(self) -> dict[str, float]:
        """The numbers a results table holds."""
        return {"sync_c": self.sync_c, "sync_d": self.sync_d, "av_offset": float(self.av_offset)}


@dataclass(frozen=True)
class FaceTrack:
    """224x224 RGB uint8 crops of one face over video frames ``start .. stop - 1``."""

    crops: np.ndarray = field(repr=False)
    start: int
    stop: int
    boxes: np.ndarray = field(repr=False)  # (n, 3): smoothed half-size s, centre x, centre y


# --------------------------------------------------------------------------------------------
# the curve arithmetic (upstream calc_pdist + the end of evaluate)


def offset_distances(
    video_feat: torch.Tensor | np.ndarray, audio_feat: torch.Tensor | np.ndarray, vshift: int
) -> np.ndarray:
    """(windows, 2 vshift + 1) L2 distances between each video feature and shifted audio.

    Column ``j`` compares video window ``i`` with audio window ``i + j - vshift``; audio
    windows outside the clip are zero vectors (upstream pads with zeros, and those distances
    count in the mean). Distances use ``pairwise_distance`` (``||v - a + 1e-6||``) as upstream.
    """
    v = torch.as_tensor(video_feat, dtype=torch.float32)
    a = torch.as_tensor(audio_feat, dtype=torch.float32)
    if v.ndim != 2 or v.shape != a.shape:
        raise ValueError(f"need two (windows, dim) features of one shape, got "
                         f"{tuple(v.shape)} and {tuple(a.shape)}")
    win = 2 * vshift + 1
    padded = nn.functional.pad(a, (0, 0, vshift, vshift))
    shifted = padded.unfold(0, win, 1).permute(0, 2, 1)  # (windows, win, dim)
    d = nn.functional.pairwise_distance(v[:, None, :].expand_as(shifted), shifted)
    return d.numpy().astype(np.float64)


def _lower_median(x: np.ndarray) -> float:
    """``torch.median`` semantics: the lower of the two middle values for an even count."""
    s = np.sort(np.asarray(x, dtype=np.float64))
    return float(s[(len(s) - 1) // 2])


def _medfilt(x: np.ndarray, kernel: int) -> np.ndarray:
    """``scipy.signal.medfilt`` (zero-padded ends, as upstream), quiet on short inputs."""
    from scipy import signal

    x = np.asarray(x, dtype=np.float64)
    if kernel <= 1 or len(x) == 0:
        return x.copy()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "kernel_size exceeds volume extent")
        return signal.medfilt(x, kernel_size=kernel)


def sync_from_distances(
    dists: np.ndarray, vshift: int | None = None, *, framewise_kernel: int = 9,
    track_start: int = 0,
) -> SyncResult:
    """Sync-C, Sync-D and the AV offset from a (windows, 2 vshift + 1) distance matrix.

    ``mean = dists.mean(0)``; Sync-D = ``min(mean)``; Sync-C = ``median(mean) - min(mean)``
    (lower median, as ``torch.median``); AV offset = ``vshift - argmin(mean)`` (first minimum).

    Upstream example (``demo_syncnet.py``, ``data/example.avi``, ``syncnet_v2.model``):
    AV offset 3, min dist 5.353, confidence 10.021.
    """
    d = np.asarray(dists, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, :]
    if d.ndim != 2 or d.shape[0] == 0 or d.shape[1] % 2 == 0:
        raise ValueError(f"need a (windows >= 1, odd number of offsets) matrix, got {d.shape}")
    v = (d.shape[1] - 1) // 2
    if vshift is not None and vshift != v:
        raise ValueError(f"matrix has {d.shape[1]} offsets, expected {2 * vshift + 1}")
    mean = d.mean(axis=0)
    best = int(np.argmin(mean))
    dmin = float(mean[best])
    med = _lower_median(mean)
    fconf = _medfilt(med - d[:, best], framewise_kernel)
    return SyncResult(sync_c=med - dmin, sync_d=dmin, av_offset=v - best, mean_dists=mean,
                      dists=d, framewise_conf=fconf, n_windows=int(d.shape[0]),
                      track_start=track_start)


def mean_results(results: Sequence[SyncResult]) -> dict[str, float]:
    """Mean Sync-C, Sync-D and AV offset over the face tracks (or scenes) of one video."""
    if not results:
        raise ValueError("no face tracks to average")
    return {
        "sync_c": float(np.mean([r.sync_c for r in results])),
        "sync_d": float(np.mean([r.sync_d for r in results])),
        "av_offset": float(np.mean([r.av_offset for r in results])),
    }


# --------------------------------------------------------------------------------------------
# frame rate, crops, MFCC


def frame_indices_for_fps(
    n_frames: int, source_fps: float, target_fps: float = FPS
) -> np.ndarray:
    """Source frame indices that make a ``target_fps`` (25) video, like ``ffmpeg -r 25``.

    Upstream converts every input with ``ffmpeg -r 25`` (the fps filter, constant frame rate):
    each source frame ``i`` lands on output slot ``round(i * target / source)`` (half away
    from zero), an output slot shows the last source frame that landed on or before it
    (frames are duplicated to fill gaps and dropped when several land on one slot), and the
    output lasts ``round(n_frames * target / source)`` frames. Feed the result to
    ``omni_core.media.read_frames(path, indices=...)``. Identity at 25 fps.
    """
    if n_frames <= 0:
        raise ValueError("n_frames must be positive")
    if source_fps <= 0 or target_fps <= 0:
        raise ValueError("frame rates must be positive")
    ratio = target_fps / source_fps
    slots = np.floor(np.arange(n_frames) * ratio + 0.5).astype(np.int64)
    n_out = max(1, int(math.floor(n_frames * ratio + 0.5)))
    idx = np.searchsorted(slots, np.arange(n_out), side="right") - 1
    return np.clip(idx, 0, n_frames - 1)


def _interpolate_boxes(boxes: np.ndarray) -> tuple[np.ndarray, int, int]:
    """Linear interpolation over missing (NaN) rows between the first and last detection."""
    ok = np.isfinite(boxes).all(axis=1)
    if not ok.any():
        raise OmniError("sync: no face box in any frame; cannot build a face track")
    found = np.flatnonzero(ok)
    start, stop = int(found[0]), int(found[-1]) + 1
    frames = np.arange(start, stop)
    out = np.stack([np.interp(frames, found, boxes[found, k]) for k in range(4)], axis=1)
    return out, start, stop


def padded_window(frame: np.ndarray, pad: int, value: int, rows: tuple[int, int],
                  cols: tuple[int, int]) -> np.ndarray:
    """``np.pad(frame, pad, constant value)[r0:r1, c0:c1]`` without padding the whole frame.

    Python's slice rules apply to the padded size (negative bounds count from the end, as
    they do upstream), so the window is the one upstream cuts, pixel for pixel.
    """
    h, w = frame.shape[:2]
    r0, r1, _ = slice(*rows).indices(h + 2 * pad)
    c0, c1, _ = slice(*cols).indices(w + 2 * pad)
    out = np.full((max(0, r1 - r0), max(0, c1 - c0), *frame.shape[2:]), value,
                  dtype=frame.dtype)
    y0, y1 = max(r0 - pad, 0), min(r1 - pad, h)
    x0, x1 = max(c0 - pad, 0), min(c1 - pad, w)
    if y1 > y0 and x1 > x0:
        out[y0 + pad - r0:y1 + pad - r0, x0 + pad - c0:x1 + pad - c0] = frame[y0:y1, x0:x1]
    return out


def crop_face_track(
    frames: np.ndarray, boxes: np.ndarray, options: SyncOptions | None = None
) -> FaceTrack:
    """The 224x224 face crops SyncNet scores, built like upstream ``crop_video``.

    ``frames``: (T, H, W, 3) uint8 at 25 fps. ``boxes``: (T, 4) ``x0, y0, x1, y1`` in pixels,
    a NaN row where the detector found nothing; the track spans the first to the last frame
    with a box, gaps interpolated. Per frame: ``s`` = half the longer box side, centre
    ``(x, y)``, each median filtered over the track; the frame is padded by
    ``int(s (1 + 2 cs))`` with ``pad_value``; the crop is rows
    ``[y - s, y + s (1 + 2 cs))`` and columns ``[x - s (1 + cs), x + s (1 + cs))``
    (integer-truncated, in padded coordinates), resized with bilinear interpolation.
    """
    import cv2

    opt = options or SyncOptions()
    frames = np.asarray(frames)
    b = np.asarray(boxes, dtype=np.float64)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if b.shape != (len(frames), 4):
        raise ValueError(f"boxes must be ({len(frames)}, 4), got {b.shape}")
    track, start, stop = _interpolate_boxes(b)
    s = np.maximum(track[:, 3] - track[:, 1], track[:, 2] - track[:, 0]) / 2
    cy = (track[:, 1] + track[:, 3]) / 2
    cx = (track[:, 0] + track[:, 2]) / 2
    s, cx, cy = (_medfilt(v, opt.smooth_kernel) for v in (s, cx, cy))
    cs = opt.crop_scale
    size = opt.crop_size
    crops = np.empty((stop - start, size, size, 3), dtype=np.uint8)
    for k, t in enumerate(range(start, stop)):
        bs = float(s[k])
        pad = int(bs * (1 + 2 * cs))
        my, mx = cy[k] + pad, cx[k] + pad
        face = padded_window(frames[t], pad, opt.pad_value,
                             (int(my - bs), int(my + bs * (1 + 2 * cs))),
                             (int(mx - bs * (1 + cs)), int(mx + bs * (1 + cs))))
        if face.size == 0:
            raise OmniError(f"sync: empty face crop at frame {t} (box half-size {bs:.1f})")
        crops[k] = cv2.resize(face, (size, size))
    return FaceTrack(crops=crops, start=start, stop=stop, boxes=np.stack([s, cx, cy], axis=1))


def mfcc_features(
    audio: np.ndarray, sample_rate: int = SAMPLE_RATE, options: SyncOptions | None = None
) -> np.ndarray:
    """(13, steps) MFCC at 100 Hz of a mono [-1, 1] waveform, as SyncNet was trained on.

    Resamples to 16 kHz if needed; with ``int16_audio`` the waveform is first scaled like
    ffmpeg's float -> s16 conversion (``clip(round(x * 32768))``), because upstream computes
    ``python_speech_features.mfcc`` (all defaults) on the int16 samples of a pcm_s16le wav.
    """
    import python_speech_features

    opt = options or SyncOptions()
    x = np.asarray(audio, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"audio must be mono (n,), got {x.shape}")
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    y = x.astype(np.float64)
    if opt.int16_audio:
        y = np.clip(np.round(y * 32768.0), -32768, 32767)
    return python_speech_features.mfcc(y, SAMPLE_RATE).T


# --------------------------------------------------------------------------------------------
# the network


@dataclass(frozen=True)
class SyncNetConfig:
    """Channel widths of SyncNetModel.S; the defaults are the released ``syncnet_v2.model``.

    Kernel sizes, strides and layer order are fixed (they tie the 224x224x5 lip input and the
    13x20 MFCC input to 1x1 feature maps), so the debug twin only narrows the channels.
    """

    audio_channels: tuple[int, int, int, int, int, int] = (64, 192, 384, 256, 256, 512)
    lip_channels: tuple[int, int, int, int, int, int] = (96, 256, 256, 256, 256, 512)
    fc_hidden: int = 512
    embed_dim: int = 1024

    @classmethod
    def tiny(cls) -> SyncNetConfig:
        return cls((4, 8, 8, 8, 8, 16), (4, 8, 8, 8, 8, 16), 16, 32)


def _audio_cnn(c: tuple[int, ...]) -> nn.Sequential:
    # Indices of the Sequential are the checkpoint's key names: keep the pooling layers
    # (even the 1x1 one) where upstream has them.
    return nn.Sequential(
        nn.Conv2d(1, c[0], 3, 1, 1), nn.BatchNorm2d(c[0]), nn.ReLU(inplace=True),
        nn.MaxPool2d(1, 1),
        nn.Conv2d(c[0], c[1], 3, 1, 1), nn.BatchNorm2d(c[1]), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, (1, 2)),
        nn.Conv2d(c[1], c[2], 3, padding=1), nn.BatchNorm2d(c[2]), nn.ReLU(inplace=True),
        nn.Conv2d(c[2], c[3], 3, padding=1), nn.BatchNorm2d(c[3]), nn.ReLU(inplace=True),
        nn.Conv2d(c[3], c[4], 3, padding=1), nn.BatchNorm2d(c[4]), nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(c[4], c[5], (5, 4)), nn.BatchNorm2d(c[5]), nn.ReLU(),
    )


def _lip_cnn(c: tuple[int, ...]) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(3, c[0], (5, 7, 7), (1, 2, 2)), nn.BatchNorm3d(c[0]), nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(c[0], c[1], (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(c[1]),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
        nn.Conv3d(c[1], c[2], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[2]),
        nn.ReLU(inplace=True),
        nn.Conv3d(c[2], c[3], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[3]),
        nn.ReLU(inplace=True),
        nn.Conv3d(c[3], c[4], (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(c[4]),
        nn.ReLU(inplace=True),
        nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
        nn.Conv3d(c[4], c[5], (1, 6, 6)), nn.BatchNorm3d(c[5]), nn.ReLU(inplace=True),
    )


def _head(c_in: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                         nn.Linear(hidden, out))


class SyncNet(PretrainedComponent, nn.Module):
    """SyncNet v2 (``SyncNetModel.S``): a lip stream and an audio stream into one space.

    State-dict keys are upstream's (``netcnnaud.*``, ``netfcaud.*``, ``netcnnlip.*``,
    ``netfclip.*``). ``syncnet_v2.model`` is a plain state dict (upstream's
    ``loadParameters`` iterates ``torch.load(path).items()`` and copies by name; its ~52 MB
    match the 13.6 M float32 parameters of this architecture). It predates torch 0.4, so it
    is expected in the legacy (non-zip) format and without BatchNorm ``num_batches_tracked``
    buffers; legacy and zip files both load through ``torch.load(weights_only=True)``, so no
    pickled code runs, and missing ``num_batches_tracked`` are ignored (unused in eval mode).
    A file holding a pickled module instead is refused with a WeightsError.
    """

    weights_entry = "syncnet-v2"
    weights_files = ("syncnet_v2.model",)

    def __init__(self, config: SyncNetConfig | None = None) -> None:
        nn.Module.__init__(self)
        cfg = config or SyncNetConfig()
        self.config = cfg
        self.netcnnaud = _audio_cnn(cfg.audio_channels)
        self.netfcaud = _head(cfg.audio_channels[-1], cfg.fc_hidden, cfg.embed_dim)
        self.netfclip = _head(cfg.lip_channels[-1], cfg.fc_hidden, cfg.embed_dim)
        self.netcnnlip = _lip_cnn(cfg.lip_channels)
        self.eval()

    def embed_audio(self, mfcc: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 20) MFCC windows -> (B, embed_dim)."""
        mid = self.netcnnaud(mfcc)
        return self.netfcaud(mid.flatten(1))

    def embed_lip(self, frames: torch.Tensor) -> torch.Tensor:
        """(B, 3, 5, 224, 224) raw 0..255 frame windows -> (B, embed_dim)."""
        mid = self.netcnnlip(frames)
        return self.netfclip(mid.flatten(1))

    def embed_lip_sequence(self, frames: torch.Tensor) -> torch.Tensor:
        """(3, T, 224, 224) frames -> (T - 4, embed_dim): ``embed_lip`` of every 5-frame window.

        Only the first convolution looks across time (kernel 5, no padding); every later layer
        has a temporal kernel of 1 and BatchNorm is per channel in eval mode, so one pass over
        the sequence gives each window's feature without copying each frame into 5 windows.
        """
        mid = self.netcnnlip(frames[None])  # (1, C, T - 4, 1, 1)
        return self.netfclip(mid[0].flatten(2).permute(1, 0, 2).flatten(1))

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any], config: SyncNetConfig | None = None,
                        source: str = "state dict") -> SyncNet:
        """Build from an upstream state dict (``__S__.`` / ``module.`` prefixes tolerated)."""
        model = cls(config)
        clean = {k.removeprefix("module.").removeprefix("__S__."): v for k, v in state.items()}
        # num_batches_tracked is not in the 2017 checkpoint and unused in eval mode
        load_state_dict_strict(model, clean, f"{source} (SyncNet v2)",
                               ignore=lambda k: k.endswith("num_batches_tracked"))
        return model.eval()

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        path = paths["syncnet_v2.model"]
        state = load_torch_checkpoint(path)
        return cls.from_state_dict(state, kw.get("config"), source=str(path)).to(device)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"config": SyncNetConfig()}  # the released syncnet_v2 widths

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        model = cls(kw.get("config") or SyncNetConfig.tiny())
        # random BatchNorm statistics so the eval-mode path is exercised, not the identity
        with torch.no_grad():
            for m in model.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.running_mean.normal_(0, 0.1)
                    m.running_var.uniform_(0.5, 2.0)
        return model.eval().to(device)


# --------------------------------------------------------------------------------------------
# scoring


def _n_windows(n_frames: int, n_samples: int) -> int:
    # upstream: min_length = min(frames, floor(samples / 640)); lastframe = min_length - 5
    return min(n_frames, n_samples // SAMPLES_PER_FRAME) - WINDOW_FRAMES


@torch.inference_mode()
def sync_features(
    crops: np.ndarray, mfcc: np.ndarray, model: SyncNet, options: SyncOptions | None = None,
    n_windows: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(windows, D) lip and audio features: window ``i`` = frames ``i..i+4``, MFCC ``4i..4i+19``.

    ``crops``: (T, S, S, 3) uint8 RGB face crops at 25 fps; ``mfcc``: (13, steps) from
    :func:`mfcc_features` of the same span. ``n_windows`` defaults to every window both
    streams cover; :func:`sync_scores` passes upstream's ``min(T, samples // 640) - 5``.
    """
    opt = options or SyncOptions()
    crops = np.asarray(crops)
    if crops.ndim != 4 or crops.shape[-1] != 3:
        raise ValueError(f"crops must be (T, S, S, 3), got {crops.shape}")
    cover = min(len(crops) - WINDOW_FRAMES + 1,
                (mfcc.shape[1] - WINDOW_MFCC) // MFCC_PER_FRAME + 1)
    n = cover if n_windows is None else n_windows
    if n > cover:
        raise ValueError(f"{n} windows asked, the inputs cover {cover}")
    if n < 1:
        raise OmniError(f"sync: clip too short ({len(crops)} frames, {mfcc.shape[1]} MFCC steps);"
                        f" SyncNet needs at least {WINDOW_FRAMES + 1} frames at {FPS} fps")
    dev = model.device
    video = torch.from_numpy(np.ascontiguousarray(crops[: n + WINDOW_FRAMES - 1]))
    if opt.channel_order == "bgr":
        video = video.flip(-1)
    video = video.permute(3, 0, 1, 2).float()  # (3, T, S, S), raw 0..255
    audio = torch.from_numpy(np.asarray(mfcc, dtype=np.float32))  # (13, steps)
    lip_feats, aud_feats = [], []
    for i in range(0, n, opt.batch_size):
        j = min(n, i + opt.batch_size)
        lip = video[:, i:j + WINDOW_FRAMES - 1].to(dev)  # windows i..j-1 share their frames
        aud = torch.stack([audio[None, :, MFCC_PER_FRAME * t:MFCC_PER_FRAME * t + WINDOW_MFCC]
                           for t in range(i, j)]).to(dev)
        lip_feats.append(model.embed_lip_sequence(lip).float().cpu())
        aud_feats.append(model.embed_audio(aud).float().cpu())
    return torch.cat(lip_feats), torch.cat(aud_feats)


def sync_scores(
    crops: np.ndarray, audio: np.ndarray, sample_rate: int, model: SyncNet,
    options: SyncOptions | None = None, *, track_start: int = 0,
) -> SyncResult:
    """Sync-C / Sync-D / AV offset of face crops (25 fps) and the audio of the same span.

    ``audio`` is mono float in [-1, 1]; at least ``6`` frames (and ``6 * 640`` samples at
    16 kHz) are needed. Upstream uses ``min(frames, samples // 640) - 5`` windows.
    """
    opt = options or SyncOptions()
    x = np.asarray(audio, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    n = _n_windows(len(crops), len(x))
    if n < 1:
        raise OmniError(f"sync: clip too short ({len(crops)} frames, {len(x)} samples at "
                        f"{SAMPLE_RATE} Hz); SyncNet needs at least {WINDOW_FRAMES + 1} frames")
    mfcc = mfcc_features(x, SAMPLE_RATE, opt)
    lip, aud = sync_features(crops, mfcc, model, opt, n_windows=n)
    dists = offset_distances(lip, aud, opt.vshift)
    return sync_from_distances(dists, opt.vshift, framewise_kernel=opt.framewise_kernel,
                               track_start=track_start)


def sync_scores_from_boxes(
    frames: np.ndarray, boxes: np.ndarray, audio: np.ndarray, sample_rate: int, model: SyncNet,
    options: SyncOptions | None = None,
) -> SyncResult:
    """Crop one face track from 25 fps ``frames`` and score it against the matching audio.

    ``boxes``: (T, 4) per-frame face box of the person to score (NaN rows where none); for a
    multi-person video, the box of the person who speaks. The audio is cut to the track span,
    ``[start / 25, stop / 25)`` seconds, as upstream cuts its wav for each track.
    """
    opt = options or SyncOptions()
    x = np.asarray(audio, dtype=np.float32)
    if sample_rate != SAMPLE_RATE:
        from omni_core.media.audio import resample

        x = resample(x, sample_rate, SAMPLE_RATE)
    track = crop_face_track(frames, boxes, opt)
    seg = x[track.start * SAMPLES_PER_FRAME:track.stop * SAMPLES_PER_FRAME]
    return sync_scores(track.crops, seg, SAMPLE_RATE, model, opt, track_start=track.start)


# --------------------------------------------------------------------------------------------
# face linking for the curation pipelines (upstream's track_shot: sync_pipeline.track_shot)


def track_faces(boxes_per_frame: Sequence[Sequence[np.ndarray]], options: SyncOptions
                ) -> list[np.ndarray]:
    """Link per-frame detections into tracks; each track is a (T, 4) array, NaN where absent.

    Each box joins the open track (last box within ``max_gap`` frames) it overlaps most, above
    ``track_iou``; tracks spanning fewer than ``min_track`` frames are dropped. Used by the
    curation pipelines; the Sync metric links faces with upstream's order-dependent
    :func:`.sync_pipeline.track_shot` instead."""
    from .face import box_iou

    n = len(boxes_per_frame)
    tracks: list[dict[int, np.ndarray]] = []
    for t, boxes in enumerate(boxes_per_frame):
        for box in boxes:
            best, best_iou = None, options.track_iou
            for tr in tracks:
                last = max(tr)
                if t - last > options.max_gap or t in tr:
                    continue
                iou = box_iou(tr[last], box)
                if iou > best_iou:
                    best, best_iou = tr, iou
            if best is None:
                tracks.append({t: np.asarray(box, np.float64)})
            else:
                best[t] = np.asarray(box, np.float64)
    out = []
    for tr in tracks:
        if max(tr) - min(tr) + 1 < options.min_track:
            continue
        arr = np.full((n, 4), np.nan)
        for t, b in tr.items():
            arr[t] = b
        out.append(arr)
    return out
