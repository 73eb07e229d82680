"""The cross-pair benchmark's real-size run, here on the CPU with debug weights (the same code
path: F5-TTS's debug twin clones, the debug verifier and Whisper check)."""

from __future__ import annotations

from bench.crosspair import markdown_real_size, run_real_size


def test_run_real_size_reports_every_voice_step_on_the_cpu(inpair_offline_run):
    r = run_real_size("cpu", weights="debug", backend="f5-tts", inpair=inpair_offline_run)
    assert r["gpu_busy_share"] is None and r["backend"] == "f5-tts"
    assert r["voices"] == 4 and r["inpair_samples"] == 6
    steps = r["stages"]
    assert list(steps) == ["retrieval", "labels", "prompt", "clone", "enhance", "check",
                           "samples"]
    for name in ("prompt", "clone", "check"):
        assert steps[name]["in"] == 4 and steps[name]["seconds"] > 0
        assert steps[name]["items_per_s"] > 0
    assert r["setup_seconds"]["voices"] > 0 and r["wall_over_compute"] > 0
    md = markdown_real_size(r)
    assert "GPU busy n/a" in md and "| clone | 4 |" in md and "f5-tts" in md
