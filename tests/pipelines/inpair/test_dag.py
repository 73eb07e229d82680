"""The in-pair DAG end to end on real Ray, real decoders and the debug models."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from omni_core.config import load_config
from omni_core.media import probe
from omni_core.ray_helpers import shutdown_ray
from pipelines.inpair.config import InpairConfig
from pipelines.inpair.dag import TABLES, list_inputs, run_inpair


@pytest.fixture(scope="module")
def inputs(sample_corpus, tmp_path_factory):
    """One talking clip of each kind that yields a clip, the broken files, an audio-only wav."""
    root = tmp_path_factory.mktemp("inpair_in")
    src = sample_corpus.out
    for name in ("talking/talk00_1p.mp4", "talking/talk03_2p.mp4"):
        shutil.copy(src / name, root / name.split("/")[1])
    shutil.copytree(src / "broken", root / "broken")
    shutil.copy(src / "recording" / "sample.wav", root / "sample.wav")
    return root


@pytest.fixture(scope="module")
def run(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("inpair_out")
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        summary = run_inpair(inputs, out, cfg, progress=False)
        first = {t: (out / f"{t}.parquet").read_bytes() for t in TABLES if t != "errors"}
        again = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    return summary, again, out, first


def frames(out):
    return {t: pd.read_parquet(out / f"{t}.parquet") for t in TABLES}


def test_every_input_is_processed_or_an_error_row(inputs, run):
    summary, _, out, _ = run
    f = frames(out)
    every = set(list_inputs(inputs))
    assert summary.inputs == len(every) == 10
    assert set(f["videos"].path) | set(f["errors"].item) == every
    assert not set(f["videos"].path) & set(f["errors"].item)
    errors = f["errors"].set_index("item")
    for name in ("empty", "not_a_video", "truncated_no_moov", "truncated_faststart",
                 "no_audio", "audio_only"):
        assert errors.loc[str(inputs / "broken" / f"{name}.mp4"), "stage"] == "prepare"
    assert "no video stream" in errors.loc[str(inputs / "sample.wav"), "reason"]
    assert summary.errors_by_stage == {"prepare": 7}


def test_clips_are_cut_to_the_model_rate(run):
    _, _, out, _ = run
    clips = frames(out)["clips"]
    assert len(clips) == 2  # one 5.04 s clip from each ~8 s talking clip
    for row in clips.itertuples():
        info = probe(out / row.path)
        assert info.n_frames == 121 and abs(info.fps - 24.0) < 1e-6
        assert info.sample_rate == 16000 and info.channels == 1
        assert abs(row.end_s - row.start_s - 121 / 24) < 1e-6


def test_speech_segments_lie_inside_their_clips(run):
    _, _, out, _ = run
    f = frames(out)
    seg = f["speech_segments"]
    assert len(seg) and set(seg.clip_id) <= set(f["clips"].clip_id)
    assert (seg.start_s >= 0).all() and (seg.end_s <= 121 / 24 + 1 / 16000).all()  # 1 sample
    assert (seg.start_s < seg.end_s).all() and seg.segment_id.is_unique


def test_rerun_skips_everything_and_writes_the_same_manifests(run):
    summary, again, out, first = run
    assert again.skipped_inputs == again.inputs == summary.inputs
    assert again.counts == summary.counts
    for t, data in first.items():  # errors carry the time they happened; all else is equal
        assert (out / f"{t}.parquet").read_bytes() == data, t
    f = frames(out)
    assert f["clips"].clip_id.is_monotonic_increasing


def test_killed_run_resumes_to_the_same_manifests(inputs, run, tmp_path):
    """``kill -9`` of the whole run (driver and its Ray processes) once the first input is
    planned; the rerun finishes the rest and its manifests equal the uninterrupted run's."""
    *_, first = run
    out = tmp_path / "out"
    omni = Path(sys.executable).with_name("omni")
    proc = subprocess.Popen(
        [omni, "curate", "inpair", "--input", inputs, "--out", out, "--quiet",
         "--set", "ray.num_cpus=2", "--set", "ray.include_dashboard=false"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 240
    try:
        while not list(out.glob("_parts/*/inputs/*.json")):
            assert proc.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (out / "clips.parquet").exists()  # killed before the merge
    cfg = load_config(InpairConfig, None, ["ray.num_cpus=2", "ray.include_dashboard=false"])
    try:
        resumed = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    assert 0 < resumed.skipped_inputs < resumed.inputs  # the planned inputs were not redone
    for t, data in first.items():
        assert (out / f"{t}.parquet").read_bytes() == data, t


def test_runs_as_a_ray_job_on_a_local_head(inputs, run, tmp_path):
    """A real head on 127.0.0.1, the DAG submitted through the Job Submission API, then the
    same manifests as the embedded run."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    *_, first = run
    ray_bin = Path(sys.executable).with_name("ray")
    omni = Path(sys.executable).with_name("omni")
    gcs, dash = _free_port(), _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    subprocess.run([ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1",
                    "--port", str(gcs), "--dashboard-host", "127.0.0.1",
                    "--dashboard-port", str(dash), "--num-cpus", "2", "--disable-usage-stats"],
                   check=True, capture_output=True, env=env, timeout=180)
    try:
        client = JobSubmissionClient(f"http://127.0.0.1:{dash}")
        out = tmp_path / "out"
        job = client.submit_job(entrypoint=" ".join(
            [str(omni), "curate", "inpair", "--input", str(inputs), "--out", str(out),
             "--quiet"]))
        deadline = time.monotonic() + 300
        while not (status := client.get_job_status(job)).is_terminal():
            assert time.monotonic() < deadline, "job did not finish"
            time.sleep(1)
        logs = client.get_job_logs(job)
        assert status == JobStatus.SUCCEEDED, logs[-2000:]
        assert "in-pair curation: 10 inputs" in logs
    finally:
        subprocess.run([ray_bin, "stop", "--force"], capture_output=True, env=env, timeout=120)
    for t, data in first.items():
        assert (out / f"{t}.parquet").read_bytes() == data, t


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
