"""Sync-C / Sync-D: SyncNet's lip-sync confidence and distance, mean over face tracks.

The protocol of ``joonson/syncnet_python`` (``run_pipeline`` + ``SyncNetInstance.evaluate``):
convert the video to 25 fps, detect faces in every frame (S3FD at scale 0.25 and confidence
0.9 by default; insightface SCRFD or the LBP cascade selectable), split it into shots, link
the detections into face tracks, crop every track, score it against the audio of its span,
average over tracks. The media steps, shots and tracking live in
:mod:`omni_core.models.sync_pipeline`; the network, crops, MFCC and curve arithmetic in
:mod:`omni_core.models.syncnet` (shared with the curation pipelines); this module holds the
registered metric and its options (:class:`~omni_core.models.syncnet.SyncOptions`).

Version 2: upstream's media handling by default (``media="reference"``), its ``track_shot``
linking, ``min_face_size`` and shot split; equal to the syncnet-python package's numbers
(tests/evaluation/metrics/test_sync_reference.py). Version 1 scored in-memory crops with an
order-free linker (now ``media="direct"`` for the media; the linker is not kept).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from omni_core.errors import OmniError
from omni_core.models.sync_pipeline import VideoSync, score_decoded, score_video
from omni_core.models.syncnet import (
    FPS,
    SAMPLE_RATE,
    SyncNet,
    SyncOptions,
    frame_indices_for_fps,
    mean_results,
)

from ..registry import Metric, MetricSpec, Output, register

__all__ = ["DIRECTION", "DIRECTIONS", "VERSION", "Sync"]

VERSION = "2"
#: Sync-C is the headline number (higher is better); Sync-D is lower-is-better.
DIRECTION = "higher"
DIRECTIONS = {"sync_c": "higher", "sync_d": "lower"}


# --------------------------------------------------------------------------------------------
# registration with the evaluation harness: detect, track, score every track, average


@register
class Sync(Metric):
    spec = MetricSpec(
        name="sync", version=VERSION, needs=("frames", "audio16k"),
        outputs=(Output("sync_c", "Sync-C", "higher"), Output("sync_d", "Sync-D", "lower")),
        doc="SyncNet confidence (median - min) and minimum distance of the audio-lip offset "
            "curve, mean over face tracks, video at 25 fps")
    Options = SyncOptions

    def setup(self) -> None:
        from omni_core.models.face import IdSimOptions, face_model_class

        if self.options.detector == "given":
            raise OmniError("sync: detector 'given' is for callers that pass boxes themselves")
        self.model = self.load(SyncNet)
        self.s3fd = None
        self.faces = None
        if self.options.detector == "s3fd":
            from omni_core.models.s3fd import S3FD

            self.s3fd = self.load(S3FD)
        else:
            self.face_opts = IdSimOptions(detector=self.options.detector)
            if self.options.detector == "scrfd":
                self.faces = self.load(face_model_class(self.face_opts.pack))

    def detect(self, frames: np.ndarray) -> list[np.ndarray]:
        """Per frame, the (n, 4) face boxes of the configured detector, best first."""
        if self.s3fd is not None:
            from omni_core.models.s3fd import CONF_TH, FACEDET_SCALE, detect_frames

            return [d[:, :4] for d in detect_frames(frames, self.s3fd, CONF_TH, FACEDET_SCALE)]
        from omni_core.models.face import detect_faces

        out = []
        for f in frames:
            faces, _ = detect_faces(f, self.faces, self.face_opts)
            out.append(np.asarray([x.box[:4] for x in faces if not x.padded],
                                  np.float64).reshape(-1, 4))
        return out

    def score(self, inp, workdir: str | Path | None = None) -> VideoSync:
        """Every face track of one instance scored. Reference media runs upstream's steps on
        the files (``workdir`` keeps them); direct media takes the instance's decoded frames
        (resampled to 25 fps) and 16 kHz audio."""
        if self.options.media == "reference":
            return score_video(inp.video_path, inp.audio_path, self.model, self.detect,
                               self.options, workdir)
        idx = frame_indices_for_fps(inp.info.n_frames, inp.info.fps or FPS)
        frames = inp.frames(tuple(int(i) for i in idx))
        return score_decoded(frames, inp.audio(SAMPLE_RATE), SAMPLE_RATE, self.model,
                             self.detect, self.options)

    def means(self, video: VideoSync) -> dict[str, float]:
        """The reported numbers: Sync-C and Sync-D averaged over the face tracks."""
        if not video.results:
            raise OmniError(f"no face track of more than {self.options.min_track} detections "
                            f"(mean size > {self.options.min_face_size:g} px) at 25 fps")
        mean = mean_results(video.results)
        return {"sync_c": mean["sync_c"], "sync_d": mean["sync_d"]}

    def compute(self, inp) -> dict:
        return self.means(self.score(inp))
