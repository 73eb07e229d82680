"""`omni eval` as a user runs it."""

import json
import os
import subprocess
import sys
from pathlib import Path

OMNI = str(Path(sys.executable).with_name("omni"))


def omni(*args, env=None):
    e = {k: v for k, v in os.environ.items() if not k.startswith("OMNI_JUDGE")}
    return subprocess.run([OMNI, *map(str, args)], capture_output=True, text=True, timeout=600,
                          env={**e, **(env or {})})


def test_list_metrics():
    r = omni("eval", "--list-metrics")
    assert r.returncode == 0, r.stderr
    assert "spk_conf" in r.stdout and "Spk-Conf (lower)" in r.stdout
    lines = {ln.split()[0]: ln for ln in r.stdout.splitlines() if ln.strip()}
    assert "lite ge2e for t_sim, not the paper's" in lines["t_sim_ge2e"]
    assert "lite pocketsphinx for wer, not the paper's" in lines["wer_sphinx"]
    assert lines["wer"].rstrip().endswith("paper")


def test_lite_without_weights_on_real_speech(speech_bench, tmp_path):
    """``--lite`` swaps a paper metric for its lite backend (a real model, no weights
    folder); the first line says it is not the paper's protocol, before any number. (WER's
    lite backend: tests/evaluation/test_lite_end_to_end.py.)"""
    out = tmp_path / "res"
    r = omni("eval", "--bench", speech_bench.instances, "--pred", speech_bench.pred, "--out",
             out, "--metrics", "t_sim", "--lite", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "NOT the paper's protocol (marked †): t_sim_ge2e stands in for t_sim"
    assert "| method | T-Sim (GE2E)† S/M ↑ |" in r.stdout
    assert any(ln.startswith("† Not the paper's protocol") for ln in lines)
    assert "debug weights" not in r.stdout  # nothing ran on a debug twin
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["config"]["metrics"] == ["t_sim_ge2e"]
    assert summary["details"]["counts"]["t_sim_ge2e"] == {"ok": 3}
    assert not summary["details"]["debug_weights"]


def test_eval_released_fixtures(bench_fixtures, tmp_path):
    out = tmp_path / "res"
    r = omni("eval", "--bench", bench_fixtures.bench, "--pred", bench_fixtures.pred, "--out",
             out, "--metrics", "spk_conf", "--quiet", "--name", "corpus-clips")
    assert r.returncode == 0, r.stderr
    assert "| corpus-clips |" in r.stdout and "debug weights" in r.stdout
    for f in ("results.parquet", "summary.json", "table.md", "table.csv", "table.tex"):
        assert (out / f).is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["provenance"]["config"]["metrics"] == ["spk_conf"]
    assert summary["details"]["counts"]["spk_conf"] == {"not_computed": 2}


def test_files_matching_no_instance_are_counted_on_the_console(bench_fixtures, tmp_path):
    import shutil

    pred = tmp_path / "pred"
    shutil.copytree(bench_fixtures.pred, pred)
    (pred / "foo.mp4").write_bytes(b"")
    (pred / "notes.txt").write_text("x")
    (pred / ".hidden").write_text("x")
    r = omni("eval", "--bench", bench_fixtures.bench, "--pred", pred, "--out",
             tmp_path / "res", "--metrics", "spk_conf", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stdout.splitlines() if "matching no instance" in ln]
    assert lines == [f"ignored 2 files in {pred} matching no instance: foo.mp4, notes.txt "
                     "(see summary.json)"]


def test_usage_errors(tmp_path, bench_fixtures):
    assert omni("eval").returncode == 2
    r = omni("eval", "--bench", tmp_path, "--pred", tmp_path, "--out", tmp_path / "o")
    assert r.returncode == 1 and "neither the released layout" in r.stderr
    r = omni("eval", "--bench", bench_fixtures.bench, "--pred", tmp_path, "--out",
             tmp_path / "o", "--metrics", "nope")
    assert r.returncode == 1 and "unknown metric 'nope'" in r.stderr
    r = omni("eval", "--bench", bench_fixtures.bench, "--pred", tmp_path, "--out",
             tmp_path / "o", "--metrics", "spk_conf", "--set", "spk_conf.n_frmaes=3")
    assert r.returncode == 1 and "unknown key 'spk_conf.n_frmaes'" in r.stderr


def test_benchmark_fixtures_and_import(sample_corpus, tmp_path):
    r = omni("benchmark", "fixtures", tmp_path / "fx", "--corpus", sample_corpus.out)
    assert r.returncode == 0, r.stderr
    assert "4 instances" in r.stdout
    r = omni("benchmark", "import", tmp_path / "fx/bench", tmp_path / "inst.parquet")
    assert r.returncode == 0, r.stderr
    from omni_core.manifests import read_manifest

    inst = read_manifest(tmp_path / "inst.parquet", "bench_instances")
    assert sorted(inst.split) == ["M", "M", "S", "S"]
    r = omni("eval", "--bench", tmp_path / "inst.parquet", "--pred", tmp_path / "fx/pred",
             "--out", tmp_path / "res", "--metrics", "wer", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "WER ↓" in r.stdout


def test_real_weights_missing_is_one_line(bench_fixtures, tmp_path):
    r = omni("eval", "--bench", bench_fixtures.bench, "--pred", bench_fixtures.pred, "--out",
             tmp_path / "o", "--metrics", "wer", "--weights", tmp_path / "empty", "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "whisper-large-v3/large-v3.pt" in r.stderr
    assert "omni weights fetch whisper-large-v3" in r.stderr
