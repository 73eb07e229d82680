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
