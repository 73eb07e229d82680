"""``omni curate``: argument handling through the real console script (the DAG itself is
tested in tests/pipelines/inpair/test_dag.py)."""

from __future__ import annotations

from test_main import omni


def test_usage_and_one_line_errors(tmp_path):
    assert omni("curate", "inpair", "--help").returncode == 0
    assert omni("curate").returncode == 2  # no KIND
    assert omni("curate", "inpair", "--out", tmp_path).returncode == 2  # no --input
    r = omni("curate", "inpair", "--input", tmp_path / "nowhere", "--out", tmp_path / "o")
    assert r.returncode == 1
    assert r.stderr.strip() == f"omni curate: error: input not found: {tmp_path / 'nowhere'}"
    r = omni("curate", "inpair", "--input", tmp_path, "--out", tmp_path / "o",
             "--set", "clip.fps=-1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "fps" in r.stderr


def test_missing_checkpoint_is_one_line_before_any_worker_starts(tmp_path):
    """Issue 14 row 3: a weights folder without the face pack used to give ~200 lines of
    Ray tracebacks after a minute (every actor died loading it); the pre-flight names the
    missing file in one line, before Ray starts (no setup record, no result)."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "talk.mp4").write_bytes(b"not looked at")
    weights = tmp_path / "weights"
    weights.mkdir()
    out = tmp_path / "o"
    r = omni("curate", "inpair", "--input", tmp_path / "in", "--out", out,
             "--set", f"weights={weights}", "--set", "faces.pack=buffalo_l",
             "--set", "models=paper")
    assert r.returncode == 1, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith("omni curate: error: missing pretrained weights: ")
    assert str(weights) in r.stderr and "omni weights fetch" in r.stderr
    assert "Traceback" not in r.stderr and "Actor" not in r.stderr
    assert not (out / "_setup").exists() and not (out / "_results").exists()
