"""Each instance is decoded once and shared by the metrics that need it."""

from pathlib import Path

import numpy as np

from benchmark.released import import_released
from evaluation.inputs import InstanceInputs


def test_decode_once_and_share(bench_fixtures, monkeypatch):
    inst, _ = import_released(bench_fixtures.bench)
    row = inst[inst.split == "M"].iloc[0]
    video = bench_fixtures.pred / f"{row.instance_id}.mp4"
    inp = InstanceInputs(row.instance_id, row.task, row.split, row.caption, video, video,
                         [Path(p) for p in row.image_refs], [Path(p) for p in row.audio_refs])
    calls = []
    import evaluation.inputs as mod

    for name in ("read_frames", "load_audio", "read_image"):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    everything = inp.frames()
    some = inp.frames((0, 5, 9))
    assert np.array_equal(some, everything[[0, 5, 9]])
    inp.audio(16000), inp.audio(16000), inp.reference_images(), inp.reference_images()
    inp.reference_audio(16000), inp.reference_audio(16000)
    assert calls.count("read_frames") == 1  # the subset came from the full decode
    assert calls.count("load_audio") == 1 + len(row.audio_refs)
    assert calls.count("read_image") == len(row.image_refs)
    assert inp.decode_seconds > 0
