"""Compositing real face crops onto a background and animating each mouth from its own speech.

Each person's mouth opens with the smoothed RMS envelope of *that person's* speech track at
video frame rate (a dark, soft-edged ellipse over the photo's mouth), and is closed (the
untouched photo) while the person is silent. The background drifts slowly (a faint moving
shade) so the picture is not perfectly static; faces and mouth regions are unaffected by it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .faces import FaceCrop

MOUTH_COLOUR = np.array([52.0, 16.0, 22.0], dtype=np.float32)
OPEN_FLOOR = 0.08  # envelope values below this draw a closed mouth


def envelope(track: np.ndarray, sample_rate: int, fps: float, n_frames: int) -> np.ndarray:
    """Mouth opening in [0, 1] per video frame from a mono speech track.

    RMS over each frame's window (sample_rate / fps samples), smoothed with a [1, 2, 1] / 4
    kernel, scaled by its 95th percentile over voiced frames, square-rooted (small energies
    still move the mouth visibly) and floored to 0 below :data:`OPEN_FLOOR`.
    """
    hop = sample_rate / fps
    rms = np.zeros(n_frames, dtype=np.float64)
    for i in range(n_frames):
        a, b = int(round(i * hop)), int(round((i + 1) * hop))
        seg = track[a:b]
        if seg.size:
            rms[i] = float(np.sqrt(np.mean(np.square(seg, dtype=np.float64))))
    padded = np.pad(rms, 1)
    smooth = (padded[:-2] + 2 * padded[1:-1] + padded[2:]) / 4
    voiced = smooth[smooth > 1e-4]
    ref = float(np.percentile(voiced, 95)) if voiced.size else 1.0
    opening = np.sqrt(np.clip(smooth / max(ref, 1e-9), 0.0, 1.0))
    opening[opening < OPEN_FLOOR] = 0.0
    return opening.astype(np.float32)


@dataclass(frozen=True)
class Placement:
    """A face crop placed at (x, y) (top-left, integer pixels) in the frame."""

    crop: FaceCrop
    x: int
    y: int

    @property
    def face_box(self) -> tuple[float, float, float, float]:
        b = self.crop.face_box
        return (b[0] + self.x, b[1] + self.y, b[2] + self.x, b[3] + self.y)

    @property
    def face_side(self) -> float:
        b = self.crop.face_box
        return b[2] - b[0]

    @property
    def mouth_centre(self) -> tuple[float, float]:
        return (self.crop.mouth[0] + self.x, self.crop.mouth[1] + self.y)

    @property
    def mouth_axes(self) -> tuple[float, float]:
        """Semi-axes (horizontal, maximal vertical) of the open mouth ellipse."""
        return (0.15 * self.face_side, 0.085 * self.face_side)

    @property
    def mouth_box(self) -> tuple[float, float, float, float]:
        """The pixels the mouth animation may change (integer-aligned, clipped later)."""
        (cx, cy), (ax, ay) = self.mouth_centre, self.mouth_axes
        return (float(np.floor(cx - ax - 2)), float(np.floor(cy - ay - 2)),
                float(np.ceil(cx + ax + 2)), float(np.ceil(cy + ay + 2)))


def layout(crops: list[FaceCrop], width: int, height: int) -> list[Placement]:
    """Left to right, one equal-width slot each, crop centred in its slot, faces at ~48 %
    of the height. Crops never overlap (the caller sizes faces to fit a slot)."""
    n = len(crops)
    slot = width / n
    out = []
    for i, c in enumerate(crops):
        h, w = c.image.shape[:2]
        if w > slot or h > height:
            raise ValueError(f"face crop {w}x{h} does not fit a {slot:.0f}x{height} slot")
        fcx = (c.face_box[0] + c.face_box[2]) / 2
        fcy = (c.face_box[1] + c.face_box[3]) / 2
        x = int(round(slot * (i + 0.5) - fcx))
        y = int(round(height * 0.48 - fcy))
        x = min(max(x, int(np.ceil(slot * i))), int(np.floor(slot * (i + 1))) - w)
        y = min(max(y, 0), height - h)
        out.append(Placement(c, x, y))
    return out


def _feather(h: int, w: int, px: float = 10.0) -> np.ndarray:
    """Alpha (h, w, 1) that is 1 inside and ramps to 0 over ``px`` pixels at the edges."""
    ys = np.minimum(np.arange(h) + 0.5, h - np.arange(h) - 0.5) / px
    xs = np.minimum(np.arange(w) + 0.5, w - np.arange(w) - 0.5) / px
    a = np.clip(np.minimum(ys[:, None], xs[None, :]), 0.0, 1.0)
    return (a * a * (3 - 2 * a)).astype(np.float32)[:, :, None]


def render(placements: list[Placement], openings: list[np.ndarray], width: int, height: int,
           colours: tuple[tuple[int, int, int], tuple[int, int, int]], fps: float,
           phase: float = 0.0) -> np.ndarray:
    """All frames (T, H, W, 3) uint8 of one clip; ``openings[i]`` drives person ``i``."""
    n_frames = len(openings[0]) if openings else 0
    top, bottom = (np.asarray(c, dtype=np.float32) for c in colours)
    t = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    base = (top * (1 - t) + bottom * t) * np.ones((1, width, 1), dtype=np.float32)
    fg = np.zeros((height, width, 3), dtype=np.float32)
    alpha = np.zeros((height, width, 1), dtype=np.float32)
    for p in placements:
        img = p.crop.image.astype(np.float32)
        h, w = img.shape[:2]
        a = _feather(h, w)
        fg[p.y:p.y + h, p.x:p.x + w] = img * a + fg[p.y:p.y + h, p.x:p.x + w] * (1 - a)
        alpha[p.y:p.y + h, p.x:p.x + w] = np.maximum(alpha[p.y:p.y + h, p.x:p.x + w], a)
    inv = 1.0 - alpha  # (H, W, 1): 1 on the background, 0 on the faces
    # fg is already premultiplied by alpha; +0.5 rounds on the final cast to uint8
    still = (base * inv + fg + 0.5).astype(np.float32)
    xs = np.arange(width, dtype=np.float32) / width
    frames = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    frame = np.empty_like(still)
    band = np.empty_like(inv)
    for f in range(n_frames):
        # a faint bright band sweeping across the background every ~6 s
        shade = 10.0 * np.sin(2 * np.pi * (xs - f / (6.0 * fps) + phase))
        np.multiply(inv, shade[None, :, None], out=band)
        np.add(still, band, out=frame)
        for p, op in zip(placements, openings, strict=True):
            if op[f] > 0:
                _draw_mouth(frame, p, float(op[f]))
        np.clip(frame, 0, 255, out=frame)
        frames[f] = frame
    return frames


def _draw_mouth(frame: np.ndarray, p: Placement, opening: float) -> None:
    (cx, cy), (ax, ay_max) = p.mouth_centre, p.mouth_axes
    ay = max(ay_max * opening, 0.6)
    x0, y0, x1, y1 = (int(v) for v in p.mouth_box)
    h, w = frame.shape[:2]
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    r = np.sqrt(((xx + 0.5 - cx) / ax) ** 2 + ((yy + 0.5 - cy) / ay) ** 2)
    # signed distance to the ellipse edge, approximated along the short axis; 1 px soft edge
    a = np.clip((1.0 - r) * ay + 0.5, 0.0, 1.0)[:, :, None] * min(1.0, 0.35 + opening)
    region = frame[y0:y1, x0:x1]
    region *= 1 - a
    region += a * MOUTH_COLOUR
