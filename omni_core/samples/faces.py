"""Real face photos that ship inside installed packages, with verified face and mouth boxes.

Sources (all offline, no download):

- ``skimage.data.astronaut()`` (scikit-image's sample image);
- insightface's ``data/images/Tom_Hanks_54745.png`` (a 112x112 aligned face) and
  ``data/images/t1.jpg`` (a group photo; four of its faces).

The face boxes were located once with scikit-image's LBP frontal-face cascade
(``skimage.feature.Cascade(skimage.data.lbp_frontal_face_cascade_filename())``; OpenCV 5 no
longer ships ``CascadeClassifier``) and checked by eye; the mouth centres were placed by eye
on the same crops. They are hard-coded so that the corpus does not depend on a detector.
Faces that this frontal cascade misses at some scales once their mouth opens (the profile in
``skimage.data.camera()``, the strongly tilted second face of t1.jpg) are left out, so that
the classical detector backend finds every placed face.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import OmniError
from ..media.image import read_image


@dataclass(frozen=True)
class FaceSource:
    """One real person's photo: where it comes from and where the face and mouth are."""

    key: str  # short name used in file descriptions
    source: str  # stable description written to corpus_people.face_source
    loader: str  # "skimage:<function>" or "insightface:<relative path>"
    box: tuple[int, int, int]  # x, y, side of the (square) face box in the photo's pixels
    mouth: tuple[float, float]  # mouth centre as a fraction of the face box (x, y)
    gender: str  # "f" or "m": picks a matching espeak-ng voice


_T1 = "insightface:data/images/t1.jpg"

FACES: tuple[FaceSource, ...] = (
    FaceSource("astronaut", "skimage.data.astronaut", "skimage:astronaut", (175, 70, 93),
               (0.50, 0.80), "f"),
    FaceSource("hanks", "insightface:data/images/Tom_Hanks_54745.png",
               "insightface:data/images/Tom_Hanks_54745.png", (19, 18, 80), (0.50, 0.90), "m"),
    FaceSource("t1_a", f"{_T1}#box=53,270,107", _T1, (53, 270, 107), (0.74, 0.85), "f"),
    FaceSource("t1_c", f"{_T1}#box=446,274,140", _T1, (446, 274, 140), (0.45, 0.81), "m"),
    FaceSource("t1_d", f"{_T1}#box=739,362,103", _T1, (739, 362, 103), (0.47, 0.79), "m"),
    FaceSource("t1_e", f"{_T1}#box=1111,273,123", _T1, (1111, 273, 123), (0.50, 0.79), "f"),
)


def _package_file(package: str, rel: str) -> Path:
    spec = importlib.util.find_spec(package)  # no import: insightface pulls onnxruntime
    if spec is None or not spec.submodule_search_locations:
        raise OmniError(f"sample corpus: package {package!r} is not installed (needed for {rel})")
    path = Path(next(iter(spec.submodule_search_locations))) / rel
    if not path.is_file():
        raise OmniError(f"sample corpus: {path} is missing from the installed {package}")
    return path


@cache
def load_photo(loader: str) -> np.ndarray:
    """The photo as RGB uint8 (H, W, 3). Cached: t1.jpg is shared by five people."""
    kind, _, name = loader.partition(":")
    if kind == "skimage":
        from skimage import data

        img = np.asarray(getattr(data, name)())
    elif kind == "insightface":
        img = read_image(_package_file("insightface", name))
    else:
        raise ValueError(f"unknown photo loader {loader!r}")
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    img = np.ascontiguousarray(img[:, :, :3], dtype=np.uint8)
    img.setflags(write=False)
    return img


@dataclass(frozen=True)
class FaceCrop:
    """A scaled crop around a face; boxes are in the crop's own pixel coordinates."""

    image: np.ndarray  # RGB uint8 (h, w, 3)
    face_box: tuple[float, float, float, float]  # x0, y0, x1, y1
    mouth: tuple[float, float]  # mouth centre x, y


def face_crop(face: FaceSource, face_px: float, margin: float = 0.3) -> FaceCrop:
    """Crop ``face`` with ``margin`` (fraction of the face side) around it, scaled so that the
    face box is ``face_px`` pixels tall. The margin is clamped at the photo's edges."""
    img = load_photo(face.loader)
    x, y, s = face.box
    m = margin * s
    h, w = img.shape[:2]
    x0, y0 = max(0, int(round(x - m))), max(0, int(round(y - m)))
    x1, y1 = min(w, int(round(x + s + m))), min(h, int(round(y + s + m)))
    scale = face_px / s
    out_w, out_h = int(round((x1 - x0) * scale)), int(round((y1 - y0) * scale))
    crop = cv2.resize(np.ascontiguousarray(img[y0:y1, x0:x1]), (out_w, out_h),
                      interpolation=cv2.INTER_CUBIC)
    fx0, fy0 = (x - x0) * scale, (y - y0) * scale
    box = (fx0, fy0, fx0 + s * scale, fy0 + s * scale)
    mouth = (fx0 + face.mouth[0] * s * scale, fy0 + face.mouth[1] * s * scale)
    return FaceCrop(crop, box, mouth)
