"""Still images: reference faces, benchmark identity images, contact sheets. RGB uint8 always."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import MediaError


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image file (PNG, JPEG, ...) as RGB uint8 (H, W, 3); alpha is dropped, grey expanded."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise MediaError(f"{p}: no such file")
    try:
        with Image.open(p) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise MediaError(f"{p}: not a readable image ({exc})") from exc


def write_image(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write RGB uint8 (H, W, 3) atomically; the format follows the suffix (.png, .jpg)."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise MediaError(f"write_image: expected uint8 (H,W,3), got {arr.dtype} {arr.shape}")
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.stem}.tmp{p.suffix}")
    Image.fromarray(arr).save(tmp)
    os.replace(tmp, p)
    return p
