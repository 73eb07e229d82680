"""The GPU half of the evaluator benchmark, run on the CPU with the cheapest metrics."""

from __future__ import annotations

import numpy as np

from bench.evaluation import PAPER_VIDEO, InMemoryInputs, markdown_real_size, run_real_size


def test_in_memory_inputs_have_the_asked_shapes():
    one = InMemoryInputs("a", 1, seed=0)
    assert one.frames().shape == (121, 704, 1280, 3) and one.frames().dtype == np.uint8
    assert one.info.n_frames == PAPER_VIDEO["frames"] and one.split == "S"
    assert one.audio(16000).shape == (int(121 / 24 * 16000),)
    two = InMemoryInputs("b", 2, seed=1, video={"frames": 30, "height": 90, "width": 160})
    assert two.split == "M" and two.frames((0, 5)).shape == (2, 90, 160, 3)
    assert [len(r) for r in two.reference_audio(16000)] == [48000, 48000]
    assert len(two.reference_images()) == 2
    speech = two.caption.speech()
    assert {u.subject for u in speech} == {"<sub1>", "<sub2>"}
    assert all(u.start_s is not None and u.end_s <= 30 / 24 for u in speech)
    # the face photo is still: the frames differ only by light noise
    assert np.abs(two.frames()[0].astype(int) - two.frames()[1].astype(int)).max() <= 4


def test_run_real_size_reports_each_metric():
    r = run_real_size("cpu", instances=2, metrics=["pq"],
                      video={"frames": 48, "height": 90, "width": 160})
    pq = r["metrics"]["pq"]
    assert pq["instances"] == 2 and pq["seconds_per_instance"] > 0 and not pq["errors"]
    assert pq["parameters"] > 100e6  # WavLM-base + heads, not the debug twin
    assert "| pq | 103.9 |" in markdown_real_size(r)
