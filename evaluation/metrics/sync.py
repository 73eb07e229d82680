"""Sync-C / Sync-D: SyncNet's lip-sync confidence and distance, mean over face tracks.

The protocol of ``joonson/syncnet_python`` (``run_pipeline`` + ``SyncNetInstance.evaluate``):
resample the video to 25 fps, detect faces in every frame (S3FD at scale 0.25 and confidence
0.9 by default; insightface SCRFD or the LBP cascade selectable), link the detections into
face tracks, crop every track, score it against the audio of its span, average over tracks.
The network, the crops, the MFCC, the tracking and the curve arithmetic live in
:mod:`omni_core.models.syncnet` (shared with the curation pipelines); this module holds the
registered metric and its options (:class:`~omni_core.models.syncnet.SyncOptions`).
"""

from __future__ import annotations

import numpy as np

from omni_core.errors import OmniError
from omni_core.models.syncnet import (
    FPS,
    SAMPLE_RATE,
    SyncNet,
    SyncOptions,
    frame_indices_for_fps,
    mean_results,
    sync_scores_from_boxes,
    track_faces,
)

from ..registry import Metric, MetricSpec, Output, register

__all__ = ["DIRECTION", "DIRECTIONS", "VERSION", "Sync"]

VERSION = "1"
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

    def compute(self, inp) -> dict:
        from omni_core.models.face import detect_faces

        idx = frame_indices_for_fps(inp.info.n_frames, inp.info.fps or FPS)
        frames = inp.frames(tuple(int(i) for i in idx))
        if self.s3fd is not None:
            from omni_core.models.s3fd import CONF_TH, FACEDET_SCALE, detect_frames

            per_frame = [[d[:4] for d in dets] for dets in
                         detect_frames(frames, self.s3fd, CONF_TH, FACEDET_SCALE)]
        else:
            per_frame = []
            for f in frames:
                faces, _ = detect_faces(f, self.faces, self.face_opts)
                per_frame.append([np.asarray(x.box[:4], np.float64) for x in faces
                                  if not x.padded])
        tracks = track_faces(per_frame, self.options)
        if not tracks:
            raise OmniError(f"no face track of {self.options.min_track}+ frames at 25 fps")
        audio = inp.audio(SAMPLE_RATE)
        results = [sync_scores_from_boxes(frames, tr, audio, SAMPLE_RATE, self.model,
                                          self.options) for tr in tracks]
        mean = mean_results(results)
        return {"sync_c": mean["sync_c"], "sync_d": mean["sync_d"]}
