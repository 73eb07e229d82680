"""The training benchmark's CPU half (eager only: compiling is minutes of a CI run)."""

from __future__ import annotations

from bench.training import run


def test_debug_training_throughput_is_measured():
    r = run(steps=1, modes=("eager",))
    assert r["flavor"] == "debug" and r["tokens_per_sample"] == 64 + 66
    assert r["eager"]["tokens_per_s"] > 0 and r["eager"]["step_s"] > 0
    assert "compiled" not in r and "compiled_over_eager" not in r
