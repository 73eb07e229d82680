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


def test_corpus_copies_carry_their_turns(sample_corpus, tmp_path):
    """The copies are a corpus the annotations double reads: every copied video has its
    turns under its new name."""
    import pandas as pd

    from bench.crosspair import replicate_corpus

    talking = replicate_corpus(sample_corpus.out, tmp_path / "c", 2)
    names = sorted(p.name for p in (sample_corpus.out / "talking").glob("*.mp4"))
    assert sorted(p.name for p in talking.iterdir()) == sorted(
        f"{k}_{n}" for k in range(2) for n in names)
    turns = pd.read_parquet(tmp_path / "c" / "truth" / "turns.parquet")
    src = pd.read_parquet(sample_corpus.out / "truth" / "turns.parquet")
    for n in names:
        want = src[src.file == f"talking/{n}"].drop(columns="file").reset_index(drop=True)
        for k in range(2):
            got = turns[turns.file == f"talking/{k}_{n}"].drop(columns="file")
            pd.testing.assert_frame_equal(got.reset_index(drop=True), want)
