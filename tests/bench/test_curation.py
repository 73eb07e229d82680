"""The curation benchmark's parts: corpus copies, the GPU busy sampler and the real-size run
(here on the CPU with debug weights, the same code path)."""

from __future__ import annotations

import os
import stat

from bench.curation import GpuBusy, markdown_real_size, replicate, run_real_size
from pipelines.inpair.dag import STAGES


def test_replicate_copies_every_video_under_new_names(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (src / name).write_bytes(name.encode())
    (src / "notes.txt").write_text("not a video")
    out = replicate(src, tmp_path / "out", 3)
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{k}_{n}" for k in range(3) for n in ("a.mp4", "b.mp4")]
    assert (out / "2_b.mp4").read_bytes() == b"b.mp4"


def test_gpu_busy_averages_nvidia_smi_samples(tmp_path, monkeypatch):
    # a stand-in nvidia-smi speaking the real CSV protocol (no GPU on this machine)
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\nprintf '100\\n50\\n[N/A]\\n0\\n'\nsleep 30\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with GpuBusy(period_ms=50) as busy:
        import time

        deadline = time.monotonic() + 10
        while len(busy.samples) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert busy.samples == [100.0, 50.0, 0.0]
    assert busy.share == 0.5
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with GpuBusy() as none:
        pass
    assert none.share is None


def test_run_real_size_reports_every_stage_on_the_cpu():
    r = run_real_size("cpu", inputs=1, weights="debug")
    assert r["inputs"] == 1 and r["clips"] >= 1 and r["gpu_busy_share"] is None
    assert list(r["stages"]) == [st for s in STAGES for st in s.step_names()]
    prep, audio = r["stages"]["prepare"], r["stages"]["audio"]
    assert prep["in"] == 1 and prep["out"] == r["clips"] and prep["items_per_s"] > 0
    assert audio["in"] == r["clips"] and audio["seconds"] > 0
    assert r["setup_seconds"]["audio"] > 0
    md = markdown_real_size(r)
    assert "GPU busy n/a" in md and "| audio | " in md
