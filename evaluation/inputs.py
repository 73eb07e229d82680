"""One instance's inputs, decoded once and shared by every metric that needs them.

The runner builds one :class:`InstanceInputs` per instance and hands it to each metric in
turn; a metric asks for frames or audio at the rate its protocol wants, and the first ask
decodes (through ``omni_core.media``) while later asks reuse the array. ``decode_seconds``
records the time spent decoding, which the benchmark reports as the decode share.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from omni_core.captions import StructuredCaption, parse_caption
from omni_core.media import MediaInfo, load_audio, probe, read_frames, read_image


@dataclass
class InstanceInputs:
    instance_id: str
    task: str
    split: str
    caption_text: str
    video_path: Path
    audio_path: Path  # the prediction's audio: the mp4 itself or a sibling <id>.wav
    image_refs: list[Path]
    audio_refs: list[Path]
    decode_seconds: float = 0.0
    _audio: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    _frames: dict[tuple, np.ndarray] = field(default_factory=dict, repr=False)
    _refs: dict[str, list[np.ndarray]] = field(default_factory=dict, repr=False)

    @cached_property
    def caption(self) -> StructuredCaption:
        return parse_caption(self.caption_text)

    @cached_property
    def info(self) -> MediaInfo:
        return self._timed(probe, self.video_path)

    @cached_property
    def content_hash(self) -> str:
        """sha256 over the prediction's bytes and the references: the cache key of results."""
        h = hashlib.sha256()
        for p in [self.video_path, self.audio_path, *self.image_refs, *self.audio_refs]:
            h.update(str(p.name).encode())
            with open(p, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
        h.update(self.caption_text.encode())
        return h.hexdigest()

    def frames(self, indices: tuple[int, ...] | None = None) -> np.ndarray:
        """RGB uint8 frames (all of them, or ``indices``); decoded once per distinct request,
        and taken from the all-frames array when that one is already decoded."""
        key = ("all",) if indices is None else tuple(int(i) for i in indices)
        if key not in self._frames:
            if key != ("all",) and ("all",) in self._frames:
                self._frames[key] = self._frames[("all",)][list(key)]
            else:
                self._frames[key] = self._timed(read_frames, self.video_path,
                                                None if key == ("all",) else list(key))
        return self._frames[key]

    def audio(self, sample_rate: int) -> np.ndarray:
        if sample_rate not in self._audio:
            self._audio[sample_rate] = self._timed(load_audio, self.audio_path, sample_rate)
        return self._audio[sample_rate]

    def reference_images(self) -> list[np.ndarray]:
        if "images" not in self._refs:
            self._refs["images"] = [self._timed(read_image, p) for p in self.image_refs]
        return self._refs["images"]

    def reference_audio(self, sample_rate: int) -> list[np.ndarray]:
        key = f"audio{sample_rate}"
        if key not in self._refs:
            self._refs[key] = [self._timed(load_audio, p, sample_rate) for p in self.audio_refs]
        return self._refs[key]

    def _timed(self, fn, *args):
        t = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.decode_seconds += time.perf_counter() - t
