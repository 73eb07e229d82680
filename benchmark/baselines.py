"""Baselines built from an instance's own inputs, for the comparison's lower bounds.

``copy_paste``: the reference photos, side by side and still, over the reference voices. The
voices are placed at the caption's speaker turns when every speaker has timestamps (each
speaker's reference looped or cut to fill their turns), else played one after the other; an
RA2V instance keeps its driving audio. It has the references' identity and timbre by
construction and no motion, lip sync or caption-following at all: ID-Sim and T-Sim near the
ceiling, Sync-C near chance, WER high. A model that does not beat it on the generation metrics
has learned nothing beyond copying its inputs.

Videos go to ``folder/<instance_id>.mp4`` (25 fps, 16 kHz mono AAC); a rerun keeps a video
whose inputs and baseline version are unchanged (:class:`omni_core.jobs.ResultStore`).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd

from omni_core.captions import parse_caption
from omni_core.errors import OmniError
from omni_core.jobs import ResultStore
from omni_core.media import load_audio, read_image, write_mp4

FPS = 25
SAMPLE_RATE = 16000
HEIGHT = 256  # each photo's height in the still frame
MAX_SECONDS = 20.0
VERSION = "1"
JOB = "baseline"


def copy_paste(inst: dict) -> tuple[np.ndarray, np.ndarray]:
    """(frames (T, H, W, 3) uint8, audio (n,) float32 at 16 kHz) of one instance."""
    photos = [_fit_height(read_image(p), HEIGHT) for p in inst["image_refs"]]
    if not photos:
        raise OmniError(f"{inst['instance_id']}: no reference photo")
    still = np.concatenate(photos, axis=1)
    still = still[: still.shape[0] // 2 * 2, : still.shape[1] // 2 * 2]
    if inst.get("task") == "ra2v" and _path(inst.get("driving_audio")):
        audio = load_audio(inst["driving_audio"], SAMPLE_RATE)
    else:
        audio = _voices(inst)
    audio = audio[: int(MAX_SECONDS * SAMPLE_RATE)]
    n = max(1, int(np.ceil(len(audio) / SAMPLE_RATE * FPS)))
    return np.repeat(still[None], n, axis=0), audio.astype(np.float32)


def _voices(inst: dict) -> np.ndarray:
    voices = [load_audio(p, SAMPLE_RATE) for p in inst["audio_refs"]]
    if not voices:
        raise OmniError(f"{inst['instance_id']}: no reference voice")
    stamps = parse_caption(inst["caption"]).speaker_timestamps
    subjects = [f"<sub{k}>" for k in range(1, len(voices) + 1)]
    if not all(stamps.get(s) for s in subjects):
        return np.concatenate(voices)
    end = max(b for s in subjects for _, b in stamps[s])
    out = np.zeros(int(np.ceil(min(end, MAX_SECONDS) * SAMPLE_RATE)), np.float32)
    for s, voice in zip(subjects, voices, strict=True):
        for a, b in stamps[s]:
            i, j = int(a * SAMPLE_RATE), min(int(b * SAMPLE_RATE), len(out))
            if j > i and len(voice):
                out[i:j] = np.resize(voice, j - i)  # looped to fill the turn
    return out


def _fit_height(img: np.ndarray, height: int) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    width = max(2, int(round(w * height / h)))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


BASELINES = {"copy_paste": copy_paste}


def build_baseline(name: str, instances: pd.DataFrame, folder: str | os.PathLike[str]) -> dict:
    """``folder/<instance_id>.mp4`` of baseline ``name`` for every instance (an instance that
    fails is left out: a missing prediction). {written, kept, failed, errors}."""
    make = BASELINES[name]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = ResultStore(folder, JOB)
    written = kept = 0
    errors: dict[str, str] = {}
    for inst in instances.to_dict("records"):
        iid = str(inst["instance_id"])
        dest = folder / f"{iid}.mp4"
        try:
            key = _key(name, inst)
            if store.done(name, iid, key):
                kept += 1
                continue
            frames, audio = make(inst)
            tmp = dest.with_name(f".{iid}.tmp.mp4")
            write_mp4(tmp, frames, FPS, audio, SAMPLE_RATE)
            os.replace(tmp, dest)
        except (OmniError, OSError) as exc:
            errors[iid] = str(exc)
            dest.unlink(missing_ok=True)
            continue
        store.put(name, iid, key, {"file": dest.name}, outputs=[dest.name])
        written += 1
    return {"written": written, "kept": kept, "failed": len(errors), "errors": errors}


def _path(v) -> str | None:
    """A path column's value (pandas gives NaN for a missing one)."""
    return v if isinstance(v, str) and v else None


def _key(name: str, inst: dict) -> str:
    h = hashlib.sha256(f"{name}/{VERSION}/{inst['task']}/{inst['caption']}".encode())
    for p in [*inst["image_refs"], *inst["audio_refs"], _path(inst.get("driving_audio"))]:
        if p:
            st = Path(p).stat()
            h.update(f"{p}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]
