"""The registered Sync metric (evaluation.metrics.sync): its options, version, directions and
model loading. The network, crops, MFCC and curve arithmetic are tested with
omni_core.models.syncnet (tests/omni_core/models/test_syncnet.py); the whole pipeline against
the syncnet-python package in test_sync_reference.py."""

from __future__ import annotations

import pytest

from evaluation.metrics import sync as S
from omni_core.errors import OmniError
from omni_core.models.s3fd import S3FD
from omni_core.models.syncnet import SyncNet


def test_options_are_validated_and_recorded():
    o = S.SyncOptions()
    assert (o.crop_scale, o.vshift, o.smooth_kernel, o.detector) == (0.4, 15, 13, "s3fd")
    assert o.to_dict()["channel_order"] == "bgr"
    # run_pipeline's media handling, audio source, tracker and face-size floor by default
    assert (o.media, o.audio_from, o.tracker, o.scene_split) == ("reference", "avi", "joonson",
                                                                   True)
    assert (o.min_track, o.max_gap, o.min_face_size) == (100, 25, 100.0)
    for bad in ({"smooth_kernel": 4}, {"channel_order": "yuv"}, {"vshift": -1},
                {"crop_scale": -0.1}, {"track_aggregate": "max"}, {"media": "memory"},
                {"audio_from": "wav"}, {"tracker": "iou"}, {"min_face_size": -1}):
        with pytest.raises(ValueError):
            S.SyncOptions(**bad)
    assert S.VERSION == "2" and S.DIRECTION == "higher" and S.DIRECTIONS["sync_d"] == "lower"


def test_metric_loads_syncnet_and_its_detector():
    metric = S.Sync(weights="debug")
    metric.setup()
    assert isinstance(metric.model, SyncNet) and metric.model.is_debug
    assert isinstance(metric.s3fd, S3FD) and metric.faces is None  # the default detector
    lbp = S.Sync(weights="debug", options=S.SyncOptions(detector="lbp"))
    lbp.setup()
    assert lbp.s3fd is None and lbp.faces is None and lbp.face_opts.detector == "lbp"
    with pytest.raises(OmniError, match="given"):
        S.Sync(weights="debug", options=S.SyncOptions(detector="given")).setup()
