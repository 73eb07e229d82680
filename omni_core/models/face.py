"""insightface face models (SCRFD detector + ArcFace recogniser), an LBP backend, alignment.

What the ArcFace-based measurements of the suite share (the ID-Sim metric,
``evaluation.metrics.id_sim``, and the curation pipelines): detect faces in an RGB image
(:func:`detect_faces`, with the grey-padding retry of the FaceSim-Arc scripts), align each one
with a 5-point similarity transform onto the ArcFace template (:func:`align_face`, equal to
insightface's ``norm_crop``) and embed it (:func:`embed_faces`, :func:`embed_reference`).
Options are :class:`IdSimOptions` (the ID-Sim metric records them with its results).

Models: insightface's ``buffalo_l`` pack (SCRFD-10GF ``det_10g.onnx`` + ArcFace R50 WebFace600K
``w600k_r50.onnx``) by default; ``antelopev2`` (``scrfd_10g_bnkps.onnx`` + ArcFace R100
Glint360K ``glintr100.onnx``) selectable. Both are loaded from the weights folder through
insightface's own model zoo classes (``SCRFD``, ``ArcFaceONNX``), never from insightface's
download path. The ``debug`` twin exports a tiny iResNet-style recogniser and a tiny
SCRFD-style detector (3 strides, 2 anchors, scores/boxes/5 landmarks) to ONNX at build time and
runs them through the very same insightface classes and onnxruntime. Detection alone needs
no recogniser: :class:`ScrfdDetector` loads one SCRFD ONNX file (any pack's detector) and
:func:`detect_faces` takes it as it takes a pack.

``detector="lbp"`` swaps SCRFD for scikit-image's bundled LBP frontal-face cascade (landmarks
from the box through a fixed template, :data:`LBP_KPS_TEMPLATE`): a classical backend that
finds real faces offline, so the demo does real work on real photos. It is not the reference
protocol and its numbers are not comparable with published ones.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal, Self

import cv2
import numpy as np

from omni_core.errors import OmniError, WeightsError
from omni_core.weights import PretrainedComponent, Registry, entry_dir, require

__all__ = [
    "ARCFACE_TEMPLATE",
    "LBP_KPS_TEMPLATE",
    "AntelopeV2FaceModel",
    "BuffaloLFaceModel",
    "DetectedFace",
    "FaceModel",
    "IdSimOptions",
    "NoReferenceFaceError",
    "ScrfdDetector",
    "align_face",
    "box_iou",
    "cosine_matrix",
    "detect_faces",
    "embed_faces",
    "embed_images",
    "embed_reference",
    "face_model_class",
    "kps_from_box",
    "largest_face",
    "similarity_matrix",
]

#: ArcFace's 5-point template in a 112x112 crop: left eye, right eye, nose tip, left and right
#: mouth corner (insightface ``utils.face_align.arcface_dst``; the same numbers since the
#: original MXNet ArcFace release).
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
     [41.5493, 92.3655], [70.7299, 92.2041]], dtype=np.float32)

#: The 5 landmarks as fractions of a face box (x from the left edge, y from the top), used by
#: the ``lbp`` backend, which only gives boxes. Derived from insightface's own ArcFace-aligned
#: sample face (``data/images/Tom_Hanks_54745.png``, 112x112, landmarks = the template by
#: construction), whose LBP-cascade face box is x=19, y=18, side 80 (the sample corpus's
#: hand-checked box): ``(template - (x0, 18)) / 80`` with x0 chosen so that the landmarks are
#: centred horizontally in the box.
LBP_KPS_TEMPLATE = np.stack([
    (ARCFACE_TEMPLATE[:, 0] - float(ARCFACE_TEMPLATE[:, 0].mean())) / 80.0 + 0.5,
    (ARCFACE_TEMPLATE[:, 1] - 18.0) / 80.0,
], axis=1).astype(np.float32)

_PAD_GREY = (128, 128, 128)


class NoReferenceFaceError(OmniError):
    """A reference image in which no face was found: the instance cannot be scored."""


# --------------------------------------------------------------------------------------------
# options and detections


@dataclass(frozen=True)
class IdSimOptions:
    """Every choice that changes an ID-Sim number; recorded with each result.

    Lives with the models because detection (:func:`detect_faces`) and embedding read it; the
    protocol-level fields (``num_frames``, ``clip_negative``, ``no_face_score``) are read by
    ``evaluation.metrics.id_sim`` only.

    Defaults follow the FaceSim-Arc scripts of ConsisID / OpenS2V-Eval (see
    ``evaluation.metrics.id_sim``) with OpenS2V-Eval's 32 frames: DreamID-Omni publishes no
    evaluation code, and OpenS2V-Eval is the subject-to-video harness of its time; ConsisID
    used 16.
    """

    #: insightface model pack: ``buffalo_l`` (SCRFD-10GF + ArcFace R50 WebFace600K, the
    #: ``FaceAnalysis`` default both scripts load) or ``antelopev2`` (ArcFace R100 Glint360K).
    pack: Literal["buffalo_l", "antelopev2"] = "buffalo_l"
    #: ``scrfd``: the pack's detector (reference). ``lbp``: scikit-image's LBP frontal-face
    #: cascade with :data:`LBP_KPS_TEMPLATE` landmarks (offline demo backend, not comparable).
    detector: Literal["scrfd", "lbp"] = "scrfd"
    #: frames sampled per video with truncated linspace (ConsisID 16, OpenS2V-Eval 32);
    #: ``None`` scores every frame.
    num_frames: int | None = 32
    #: SCRFD input size (width, height); both scripts call ``prepare(det_size=(320, 320))``.
    det_size: tuple[int, int] = (320, 320)
    #: SCRFD score threshold (insightface's default, used by both scripts).
    det_thresh: float = 0.5
    #: when no face is found, pad the image by ``pad_scale - 1`` of its size on every side with
    #: grey and detect again (both scripts, for the reference image and for every frame).
    pad_retry: bool = True
    pad_scale: float = 1.25
    #: per-frame scores ``max(0, cos)`` (both scripts).
    clip_negative: bool = True
    #: the score of a video none of whose sampled frames has a face (both scripts: 0.0).
    #: ``nan`` leaves such videos out of the average instead.
    no_face_score: float = 0.0
    #: ``lbp`` backend: cascade scale steps whose detections are pooled (the cascade is
    #: brittle about the step), and the smallest and largest face side as a fraction of the
    #: image's shorter side.
    lbp_scale_factors: tuple[float, ...] = (1.1, 1.15, 1.2)
    lbp_min_size: float = 0.15
    lbp_max_size: float = 1.0

    def __post_init__(self) -> None:
        if self.pack not in _PACKS:
            raise ValueError(f"pack must be one of {', '.join(_PACKS)}, got {self.pack!r}")
        if self.detector not in ("scrfd", "lbp"):
            raise ValueError(f"detector must be 'scrfd' or 'lbp', got {self.detector!r}")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError("num_frames must be positive (or None for every frame)")
        if len(self.det_size) != 2 or min(self.det_size) < 32:
            raise ValueError(f"det_size must be (width, height) >= 32, got {self.det_size}")
        if not 0.0 < self.det_thresh < 1.0:
            raise ValueError("det_thresh must be in (0, 1)")
        if self.pad_scale < 1.0:
            raise ValueError("pad_scale must be >= 1")
        if not self.lbp_scale_factors or min(self.lbp_scale_factors) <= 1.0:
            raise ValueError("lbp_scale_factors must be > 1")
        if not 0.0 < self.lbp_min_size <= self.lbp_max_size:
            raise ValueError("need 0 < lbp_min_size <= lbp_max_size")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class DetectedFace:
    """One face: box ``(x0, y0, x1, y1)``, detector score, 5 landmarks ``(5, 2)`` (all in the
    input image's pixels) and, once embedded, the recogniser's raw (unnormalised) embedding."""

    box: np.ndarray
    score: float
    kps: np.ndarray
    embedding: np.ndarray | None = None
    padded: bool = False  # found only after the grey-padding retry

    @property
    def area(self) -> float:
        return float((self.box[2] - self.box[0]) * (self.box[3] - self.box[1]))


# --------------------------------------------------------------------------------------------
# alignment (no model)


def similarity_matrix(kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The 2x3 least-squares similarity transform (Umeyama 1991) taking the 5 landmarks onto
    the ArcFace template scaled to ``image_size`` (a multiple of 112, or of 128 with the 8 px
    x-shift insightface uses for 128-based crops).

    Computed in the landmarks' own dtype (float32 from SCRFD) as scikit-image's
    ``SimilarityTransform.estimate`` does, so that it matches insightface's ``estimate_norm``.
    """
    src = np.asarray(kps)
    if src.shape != (5, 2):
        raise ValueError(f"expected 5 landmarks (5, 2), got {src.shape}")
    if image_size % 112 == 0:
        ratio, dx = image_size / 112.0, 0.0
    elif image_size % 128 == 0:
        ratio = image_size / 128.0
        dx = 8.0 * ratio
    else:
        raise ValueError(f"image_size must be a multiple of 112 or 128, got {image_size}")
    dst = ARCFACE_TEMPLATE * ratio
    dst[:, 0] += dx
    n, dim = src.shape
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    a = dst_c.T @ src_c / n
    d = np.ones(dim, dtype=np.float64)
    if np.linalg.det(a) < 0:
        d[-1] = -1
    t = np.eye(dim + 1, dtype=np.float64)
    u, s, v = np.linalg.svd(a)
    rank = int(np.count_nonzero(s > s.max() * max(a.shape) * np.finfo(float).eps))
    if rank == 0:
        return np.full((2, 3), np.nan)
    if rank == dim - 1 and np.linalg.det(u) * np.linalg.det(v) <= 0:
        keep, d[-1] = d[-1], -1
        t[:dim, :dim] = u @ np.diag(d) @ v
        d[-1] = keep
    elif rank == dim - 1:
        t[:dim, :dim] = u @ v
    else:
        t[:dim, :dim] = u @ np.diag(d) @ v
    scale = 1.0 / src_c.var(axis=0).sum() * (s @ d)
    t[:dim, dim] = dst_mean - scale * (t[:dim, :dim] @ src_mean.T)
    t[:dim, :dim] *= scale
    return t[:2, :]


def align_face(image: np.ndarray, kps: np.ndarray, image_size: int = 112) -> np.ndarray:
    """The ArcFace crop: ``image`` warped (bilinear, black border) so that ``kps`` land on the
    template; equal to insightface's ``face_align.norm_crop``. Channel order is kept."""
    m = similarity_matrix(kps, image_size)
    if not np.isfinite(m).all():
        raise OmniError("ID-Sim: degenerate face landmarks (all points coincide)")
    return cv2.warpAffine(image, m, (image_size, image_size), borderValue=0.0)


def kps_from_box(box: Sequence[float] | np.ndarray) -> np.ndarray:
    """5 landmarks ``(5, 2)`` float32 placed in a face box with :data:`LBP_KPS_TEMPLATE`."""
    x0, y0, x1, y1 = (float(v) for v in box)
    wh = np.array([x1 - x0, y1 - y0], dtype=np.float32)
    return (np.array([x0, y0], dtype=np.float32) + LBP_KPS_TEMPLATE * wh).astype(np.float32)


def largest_face(faces: Sequence[DetectedFace]) -> DetectedFace | None:
    """The face with the largest box area; on ties the later one, as ``sorted(...)[-1]``."""
    best = None
    for f in faces:
        if best is None or f.area >= best.area:
            best = f
    return best


def cosine_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of every row of ``a`` (m, d) with every row of ``b`` (n, d)."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float64))
    b = np.atleast_2d(np.asarray(b, dtype=np.float64))
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


# --------------------------------------------------------------------------------------------
# the model: insightface's SCRFD + ArcFaceONNX over onnxruntime


def _providers(device: str) -> list[Any]:
    import onnxruntime

    dev = str(device)
    if dev.startswith("cuda"):
        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            idx = int(dev.split(":", 1)[1]) if ":" in dev else 0
            return [("CUDAExecutionProvider", {"device_id": idx}), "CPUExecutionProvider"]
        warnings.warn("ID-Sim: onnxruntime has no CUDAExecutionProvider (onnxruntime-gpu is not "
                      "installed); running insightface on the CPU", RuntimeWarning, stacklevel=3)
    return ["CPUExecutionProvider"]


def _session_options() -> Any:
    import onnxruntime

    so = onnxruntime.SessionOptions()
    so.log_severity_level = 3  # as FaceAnalysis: no per-node provider chatter
    return so


def _load_scrfd(path: Path, providers: list[Any]) -> Any:
    """insightface's ``model_zoo.SCRFD`` of one ONNX file (routed by ``model_zoo.get_model``
    with an explicit ``root``, so insightface never looks at ``~/.insightface``); a file that
    is not an SCRFD detector with 5 landmarks is a :class:`WeightsError`."""
    from insightface.model_zoo import model_zoo

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        det = model_zoo.get_model(str(path), providers=providers, root=str(Path(path).parent),
                                  sess_options=_session_options())
    if not isinstance(det, model_zoo.SCRFD):
        raise WeightsError(f"{path} is not an SCRFD face detector "
                           f"(insightface routed it to {type(det).__name__})")
    if not det.use_kps:
        raise WeightsError(f"{path} predicts no landmarks; ID-Sim needs 5")
    return det


class ScrfdDetector:
    """insightface's SCRFD face detector on its own, without a recogniser.

    What face *detection* needs (:func:`detect_faces` takes one wherever it takes a
    :class:`FaceModel`, which holds one): any SCRFD ONNX file with 5 landmarks, e.g. a pack's
    ``det_10g.onnx`` (buffalo_l), ``det_2.5g.onnx`` (buffalo_m) or ``det_500m.onnx``
    (buffalo_s / buffalo_sc), run through insightface's own ``SCRFD`` class.
    """

    def __init__(self, detector: Any, path: Path | None = None) -> None:
        if getattr(detector, "taskname", None) != "detection" or not hasattr(detector, "detect"):
            raise WeightsError(f"{detector!r} is not an insightface face detector")
        self.detector = detector
        self.path = path

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], device: str = "cpu") -> ScrfdDetector:
        """The detector of one SCRFD ONNX file (never downloaded: a missing file is one
        :class:`WeightsError` naming it)."""
        p = Path(path)
        if not p.is_file():
            raise WeightsError(f"SCRFD face detector not found: {p}")
        return cls(_load_scrfd(p, _providers(device)), p)

    def detect(self, image_bgr: np.ndarray, det_size: tuple[int, int],
               det_thresh: float) -> list[DetectedFace]:
        """SCRFD on a BGR uint8 image (insightface's ``SCRFD.detect``, every face kept)."""
        det, kpss = self.detector.detect(np.ascontiguousarray(image_bgr),
                                         input_size=tuple(det_size), det_thresh=det_thresh)
        return [DetectedFace(box=det[i, :4].astype(np.float32), score=float(det[i, 4]),
                             kps=np.asarray(kpss[i], dtype=np.float32))
                for i in range(det.shape[0])]


class FaceModel(PretrainedComponent):
    """An insightface detector + recogniser pair (base of the packs; use a subclass).

    ``detector`` is insightface's ``model_zoo.SCRFD``, ``recognizer`` its ``ArcFaceONNX``; both
    are built by ``model_zoo.get_model`` (the router ``FaceAnalysis`` uses) from explicit file
    paths with an explicit ``root``, so insightface never looks at ``~/.insightface``.
    """

    pack: ClassVar[str] = ""
    detector_file: ClassVar[str] = ""
    recognizer_file: ClassVar[str] = ""

    def __init__(self, detector: Any, recognizer: Any, folder: Path | None = None) -> None:
        if getattr(detector, "taskname", None) != "detection" or not hasattr(detector, "detect"):
            raise WeightsError(f"{self.pack}: {detector!r} is not an insightface face detector")
        if getattr(recognizer, "taskname", None) != "recognition":
            raise WeightsError(f"{self.pack}: {recognizer!r} is not an insightface recogniser")
        self.detector = detector
        self.scrfd = ScrfdDetector(detector)
        self.recognizer = recognizer
        self.folder = folder
        size = recognizer.input_size
        self.crop_size = int(size[0])
        batch = recognizer.input_shape[0]
        self._max_batch = batch if isinstance(batch, int) and batch > 0 else 64

    # -- construction ------------------------------------------------------------------------

    @classmethod
    def locate(cls, folder: Path) -> dict[str, Path]:
        """The pack's two ONNX files under ``folder`` (at its root or one folder down: the
        antelopev2 zip is known to extract into a nested ``antelopev2/``)."""
        out: dict[str, Path] = {}
        for role, name in (("detector", cls.detector_file), ("recognizer", cls.recognizer_file)):
            hits = [folder / name, folder / cls.pack / name]
            if folder.is_dir():
                hits += sorted(p / name for p in folder.iterdir() if p.is_dir())
            found = next((p for p in hits if p.is_file()), None)
            if found is not None:
                out[role] = found
        return out

    @classmethod
    def weight_paths(cls, root: str | os.PathLike[str] | None = None, *,
                     registry: Registry | None = None, **kw: Any
                     ) -> tuple[Mapping[str, Path], Path | None]:
        """The pack's detector and recognizer under ``<weights root>/<entry>/`` (flat, in a
        pack subfolder or in any one subfolder), never from the network."""
        if cls.weights_entry is None:
            raise TypeError("use BuffaloLFaceModel or AntelopeV2FaceModel")
        folder = entry_dir(cls.weights_entry, root)
        found = cls.locate(folder)
        paths: dict[str, Path] = {}
        for role, name in (("detector", cls.detector_file), ("recognizer", cls.recognizer_file)):
            if role not in found:  # one clear error naming the file and the fetch command
                require(cls.weights_entry, name, root, registry=registry)
            rel = found[role].relative_to(folder).as_posix()
            paths[role] = require(cls.weights_entry, rel, root, registry=registry)
        return paths, folder

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        from insightface.model_zoo import model_zoo

        providers = _providers(device)
        root = str(Path(paths["recognizer"]).parent)
        det = _load_scrfd(Path(paths["detector"]), providers)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            rec = model_zoo.get_model(str(paths["recognizer"]), providers=providers, root=root,
                                      sess_options=_session_options())
        if not isinstance(rec, model_zoo.ArcFaceONNX):
            raise WeightsError(f"{paths['recognizer']} is not an ArcFace recogniser "
                               f"(insightface routed it to {type(rec).__name__})")
        return cls(det, rec, Path(paths["recognizer"]).parent)

    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"size": "real"}

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        """Tiny random SCRFD-style detector and iResNet-style recogniser, exported to ONNX in a
        private temporary folder (removed with the object) and loaded through :meth:`_load`.

        ``size="real"``: an iResNet-50 recogniser (w600k_r50's stages and widths) and a
        detector of about det_10g's compute at 640x640 (:func:`_export_debug_detector`), for
        throughput measurements.
        """
        size = kw.get("size", "debug")
        if size not in ("debug", "real"):
            raise ValueError(f"size must be 'debug' or 'real', got {size!r}")
        folder = Path(tempfile.mkdtemp(prefix=f"omni-idsim-{size}-{seed}-"))
        try:
            det_path = folder / cls.detector_file
            rec_path = folder / cls.recognizer_file
            if size == "real":
                _export_debug_detector(det_path, width=128, depth=3)
                _export_debug_recognizer(rec_path, widths=(64, 128, 256, 512),
                                         blocks=(3, 4, 14, 3))
            else:
                _export_debug_detector(det_path)
                _export_debug_recognizer(rec_path)
            obj = cls._load({"detector": det_path, "recognizer": rec_path}, device)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        weakref.finalize(obj, shutil.rmtree, str(folder), True)
        return obj

    # -- inference ---------------------------------------------------------------------------

    def detect(self, image_bgr: np.ndarray, det_size: tuple[int, int],
               det_thresh: float) -> list[DetectedFace]:
        """SCRFD on a BGR uint8 image (:meth:`ScrfdDetector.detect`)."""
        return self.scrfd.detect(image_bgr, det_size, det_thresh)

    def embed(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """ArcFace embeddings (n, d) of aligned BGR crops (insightface's ``get_feat``, which
        normalises with the model's mean/std and swaps to RGB)."""
        if not crops:
            return np.zeros((0, self.embedding_dim), dtype=np.float32)
        out = [self.recognizer.get_feat(list(crops[i:i + self._max_batch]))
               for i in range(0, len(crops), self._max_batch)]
        return np.concatenate(out, axis=0).astype(np.float32)

    @property
    def embedding_dim(self) -> int:
        shape = self.recognizer.output_shape
        return int(shape[-1]) if isinstance(shape[-1], int) else 512


class BuffaloLFaceModel(FaceModel):
    """insightface ``buffalo_l``: SCRFD-10GF + ArcFace ResNet50 (WebFace600K). Default."""

    weights_entry = "insightface-buffalo-l"
    pack = "buffalo_l"
    detector_file = "det_10g.onnx"
    recognizer_file = "w600k_r50.onnx"


class AntelopeV2FaceModel(FaceModel):
    """insightface ``antelopev2``: SCRFD-10GF + ArcFace ResNet100 (Glint360K)."""

    weights_entry = "insightface-antelopev2"
    pack = "antelopev2"
    detector_file = "scrfd_10g_bnkps.onnx"
    recognizer_file = "glintr100.onnx"


_PACKS: dict[str, type[FaceModel]] = {"buffalo_l": BuffaloLFaceModel,
                                      "antelopev2": AntelopeV2FaceModel}


def face_model_class(pack: str) -> type[FaceModel]:
    """The wrapper class of an insightface pack name (``IdSimOptions.pack``)."""
    try:
        return _PACKS[pack]
    except KeyError:
        raise ValueError(f"unknown insightface pack {pack!r}; use {', '.join(_PACKS)}") from None


# --------------------------------------------------------------------------------------------
# detection and embedding


@cache
def _lbp_cascade() -> Any:
    from skimage import data
    from skimage.feature import Cascade

    return Cascade(data.lbp_frontal_face_cascade_filename())


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (x0, y0, x1, y1) boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _detect_lbp(image_rgb: np.ndarray, opts: IdSimOptions) -> list[DetectedFace]:
    """LBP cascade detections pooled over ``lbp_scale_factors`` and merged: boxes overlapping
    (IoU >= 0.3) a kept box are averaged into it; score = pooled detection count."""
    short = min(image_rgb.shape[:2])
    lo = max(24, int(round(opts.lbp_min_size * short)))
    hi = max(lo, int(round(opts.lbp_max_size * short)))
    cascade = _lbp_cascade()
    raw = []
    for sf in opts.lbp_scale_factors:
        for d in cascade.detect_multi_scale(img=image_rgb, scale_factor=sf, step_ratio=1,
                                            min_size=(lo, lo), max_size=(hi, hi)):
            raw.append([d["c"], d["r"], d["c"] + d["width"], d["r"] + d["height"]])
    boxes = sorted((np.asarray(b, dtype=np.float64) for b in raw),
                   key=lambda b: (-(b[2] - b[0]) * (b[3] - b[1]), b[0], b[1]))
    groups: list[list[np.ndarray]] = []
    for b in boxes:
        for g in groups:
            if box_iou(g[0], b) >= 0.3:
                g.append(b)
                break
        else:
            groups.append([b])
    faces = []
    for g in groups:
        box = np.mean(g, axis=0).astype(np.float32)
        faces.append(DetectedFace(box=box, score=float(len(g)), kps=kps_from_box(box)))
    return faces


def _pad(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[int, int]]:
    h, w = image.shape[:2]
    top, left = int(h * (scale - 1.0)), int(w * (scale - 1.0))
    padded = cv2.copyMakeBorder(image, top, top, left, left, cv2.BORDER_CONSTANT,
                                value=_PAD_GREY)
    return padded, (left, top)


def _bgr(image_rgb: np.ndarray) -> np.ndarray:
    img = np.asarray(image_rgb)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise OmniError(f"ID-Sim: expected an RGB uint8 (H, W, 3) image, got {img.dtype} "
                        f"{img.shape}")
    return np.ascontiguousarray(img[:, :, ::-1])


def detect_faces(image_rgb: np.ndarray, model: FaceModel | ScrfdDetector | None,
                 options: IdSimOptions | None = None) -> tuple[list[DetectedFace], np.ndarray]:
    """Faces in one RGB image, with the grey-padding retry; returns the faces and the BGR image
    their embeddings must be computed on (the padded one after a retry). Boxes and landmarks
    are in that image's pixels; :func:`embed_faces` maps them back. ``model`` is a pack or a
    bare :class:`ScrfdDetector`; it may be ``None`` with ``detector="lbp"``."""
    opts = options or IdSimOptions()
    if model is None and opts.detector != "lbp":
        raise ValueError("detect_faces: the scrfd detector needs a FaceModel or ScrfdDetector")
    bgr = _bgr(image_rgb)

    def run(img: np.ndarray) -> list[DetectedFace]:
        if opts.detector == "lbp":
            return _detect_lbp(np.ascontiguousarray(img[:, :, ::-1]), opts)
        return model.detect(img, opts.det_size, opts.det_thresh)  # type: ignore[union-attr]

    faces = run(bgr)
    if faces or not opts.pad_retry:
        return faces, bgr
    padded, _ = _pad(bgr, opts.pad_scale)
    return [DetectedFace(f.box, f.score, f.kps, padded=True) for f in run(padded)], padded


def embed_faces(image_rgb: np.ndarray, model: FaceModel, options: IdSimOptions | None = None,
                largest_only: bool = True) -> list[DetectedFace]:
    """Detect (with the padding retry), align and embed the faces of one RGB image; the
    largest only (single-person protocol) or all of them (multi-person). Boxes and landmarks
    are returned in the original image's pixels."""
    return embed_images([image_rgb], model, options, largest_only)[0]


def embed_images(images: Sequence[np.ndarray], model: FaceModel,
                 options: IdSimOptions | None = None,
                 largest_only: bool = True) -> list[list[DetectedFace]]:
    """:func:`embed_faces` of several RGB images, with one recogniser pass over all crops."""
    opts = options or IdSimOptions()
    found: list[list[DetectedFace]] = []
    crops: list[np.ndarray] = []
    for image in images:
        faces, bgr = detect_faces(image, model, opts)
        if largest_only and faces:
            faces = [largest_face(faces)]  # type: ignore[list-item]
        for f in faces:
            crops.append(align_face(bgr, f.kps, model.crop_size))
        if faces and faces[0].padded:
            h, w = np.asarray(image).shape[:2]
            off = np.array([int(w * (opts.pad_scale - 1.0)), int(h * (opts.pad_scale - 1.0))],
                           dtype=np.float32)
            faces = [DetectedFace(f.box - np.tile(off, 2), f.score, f.kps - off, padded=True)
                     for f in faces]
        found.append(faces)
    emb = model.embed(crops)
    out, k = [], 0
    for faces in found:
        out.append([DetectedFace(f.box, f.score, f.kps, emb[k + i], f.padded)
                    for i, f in enumerate(faces)])
        k += len(faces)
    return out


def embed_reference(image_rgb: np.ndarray, model: FaceModel,
                    options: IdSimOptions | None = None) -> DetectedFace:
    """The reference identity: the largest face of a reference image, embedded. Raises
    :class:`NoReferenceFaceError` when there is none (the instance is then not scored)."""
    faces = embed_faces(image_rgb, model, options, largest_only=True)
    if not faces:
        raise NoReferenceFaceError("ID-Sim: no face found in the reference image (also after "
                                   "padding); the instance cannot be scored")
    return faces[0]


# --------------------------------------------------------------------------------------------
# debug twins: tiny ONNX models with the input/output contract of the real packs


def _export_debug_recognizer(path: Path, widths: tuple[int, ...] = (8, 16, 16, 32),
                              blocks: tuple[int, ...] = (1, 1, 1, 1)) -> None:
    """An iResNet-style recogniser (conv-BN-PReLU stem, IBasicBlocks with stride-2 stages,
    BN-dropout-FC-BN1d head) with w600k_r50's contract: input ``input.1`` (N, 3, 112, 112)
    float, output (N, 512); no Sub/Mul in the first nodes, so ArcFaceONNX uses mean/std 127.5.
    ``widths``/``blocks`` per stage: (64, 128, 256, 512) / (3, 4, 14, 3) is iResNet-50."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.bn1 = nn.BatchNorm2d(cin)
            self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.prelu = nn.PReLU(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, stride, 1, bias=False)
            self.bn3 = nn.BatchNorm2d(cout)
            self.downsample = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                             nn.BatchNorm2d(cout))
                               if stride != 1 or cin != cout else nn.Identity())

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
            return y + self.downsample(x)

    class TinyIResNet(nn.Module):
        def __init__(self, dim: int = 512) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.prelu = nn.PReLU(widths[0])
            chans = (widths[0], *widths)
            stages = []
            for cin, cout, n in zip(chans, widths, blocks, strict=False):
                stages.append(Block(cin, cout, 2))
                stages += [Block(cout, cout, 1) for _ in range(n - 1)]
            self.layers = nn.Sequential(*stages)
            self.bn2 = nn.BatchNorm2d(widths[-1])
            self.dropout = nn.Dropout(0.0)
            self.fc = nn.Linear(widths[-1] * 7 * 7, dim)
            self.features = nn.BatchNorm1d(dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.layers(self.prelu(self.bn1(self.conv1(x))))
            x = self.dropout(torch.flatten(self.bn2(x), 1))
            return self.features(self.fc(x))

    net = TinyIResNet()
    _randomise_bn(net)
    net.eval()
    with torch.no_grad():  # centre the embedding on a photo's: random nets otherwise map
        net.features.bias.zero_()  # every input to nearly the same direction
        net.features.running_mean.zero_()
        x = torch.nn.functional.interpolate(_calibration_blob(), size=(112, 112),
                                            mode="bilinear", align_corners=False)
        feats = net.fc(torch.flatten(net.bn2(net.layers(net.prelu(net.bn1(net.conv1(x))))), 1))
        net.features.running_mean.copy_(feats[0])
    _onnx_export(net, torch.zeros(1, 3, 112, 112), path, ["input.1"], ["embedding"],
                 {"input.1": {0: "batch"}, "embedding": {0: "batch"}})


#: Debug detector: score logits are shifted so that the image's best anchor sits at this value
#: (sigmoid 0.73 > det_thresh 0.5): every image then has at least one box.
_DEBUG_DET_MARGIN = 1.0


def _export_debug_detector(path: Path, width: int = 16, depth: int = 0) -> None:
    """An SCRFD-style detector with det_10g's contract: input ``input.1`` (1, 3, H, W) with
    dynamic H, W; nine outputs, scores (N, 1) for strides 8/16/32, then boxes (N, 4), then
    5-point landmarks (N, 10), N = (H/s)(W/s) x 2 anchors, location-major, anchor-minor.

    Heads are shared across strides (as SCRFD's). Box distances go through softplus so random
    weights still give well-formed boxes. Scores are normalised per image inside the graph
    (logit minus the image's maximal logit plus :data:`_DEBUG_DET_MARGIN`, with the logit scale
    set so that 0.2 % of the anchors of scikit-image's astronaut photo pass): random weights then
    give a handful of boxes on every image instead of thousands on some and none on others.
    Random boxes are not faces; the point is the code path. ``width`` channels throughout and
    ``depth`` extra 3x3 conv layers at stride 8: (128, 3) costs about 10 GFLOPs at 640x640,
    det_10g's budget (a stand-in of that cost, not its graph).
    """
    import torch
    import torch.nn.functional as F  # noqa: N812
    from torch import nn

    class TinySCRFD(nn.Module):
        def __init__(self, c: int = width, anchors: int = 2) -> None:
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.Conv2d(8, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU(),
                nn.Conv2d(c, c, 3, 2, 1), nn.BatchNorm2d(c), nn.ReLU())
            self.down16 = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1), nn.ReLU())
            self.down32 = nn.Sequential(nn.Conv2d(c, c, 3, 2, 1), nn.ReLU())
            self.cls = nn.Conv2d(c, anchors, 3, 1, 1)
            self.reg = nn.Conv2d(c, anchors * 4, 3, 1, 1)
            self.kps = nn.Conv2d(c, anchors * 10, 3, 1, 1)
            self.deep = nn.Sequential(*(m for _ in range(depth)
                                        for m in (nn.Conv2d(c, c, 3, 1, 1), nn.ReLU())))

        def levels(self, x: torch.Tensor) -> list[torch.Tensor]:
            f8 = self.deep(self.stem(x))
            f16 = self.down16(f8)
            return [f8, f16, self.down32(f16)]

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            feats = self.levels(x)

            def flat(t: torch.Tensor, k: int) -> torch.Tensor:
                return t.permute(0, 2, 3, 1).reshape(-1, k)

            logits = [flat(self.cls(f), 1) for f in feats]
            top = torch.cat(logits).max()
            scores = [torch.sigmoid(t - top + _DEBUG_DET_MARGIN) for t in logits]
            boxes = [flat(F.softplus(self.reg(f)) * 1.5 + 0.5, 4) for f in feats]
            kps = [flat(self.kps(f), 10) for f in feats]
            return (*scores, *boxes, *kps)

    net = TinySCRFD()
    _randomise_bn(net)
    net.eval()
    with torch.no_grad():  # scale the logits so that 0.2 % of a real photo's anchors pass
        net.cls.bias.zero_()
        logits = torch.cat([net.cls(f).flatten() for f in net.levels(_calibration_blob())])
        gap = float(logits.max() - torch.quantile(logits, 0.998))
        net.cls.weight.mul_(_DEBUG_DET_MARGIN / max(gap, 1e-6))
    names = [f"{kind}_{s}" for kind in ("score", "bbox", "kps") for s in (8, 16, 32)]
    axes: dict[str, dict[int, str]] = {"input.1": {2: "height", 3: "width"}}
    axes.update({n: {0: f"anchors_{n.split('_')[1]}"} for n in names})
    _onnx_export(net, torch.zeros(1, 3, 320, 320), path, ["input.1"], names, axes)


def _calibration_blob() -> Any:
    """skimage's astronaut photo as SCRFD would see it at 320x320 (BGR->RGB swap cancels)."""
    import torch
    from skimage import data

    img = cv2.resize(np.asarray(data.astronaut()), (320, 320)).astype(np.float32)
    return torch.from_numpy((img - 127.5) / 128.0).permute(2, 0, 1)[None].contiguous()


def _randomise_bn(net: Any) -> None:
    import torch
    from torch import nn

    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.1)
                m.running_mean.normal_(0.0, 0.1)
                m.running_var.uniform_(0.5, 1.5)


def _onnx_export(net: Any, example: Any, path: Path, inputs: list[str], outputs: list[str],
                 axes: dict[str, dict[int, str]]) -> None:
    import torch

    with warnings.catch_warnings():  # the TorchScript exporter is deprecated, not removed;
        warnings.simplefilter("ignore")  # the dynamo one needs onnxscript, not a dependency
        torch.onnx.export(net, (example,), str(path), input_names=inputs, output_names=outputs,
                          dynamic_axes=axes, opset_version=13, dynamo=False,
                          do_constant_folding=True)
