"""Samples during training: fixed benchmark instances generated with the EMA weights every N
steps, their videos and quick scores logged next to the loss."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omni_core.media import probe
from omni_model.data import write_dummy_latents

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs" / "train" / "debug.yaml"


def test_previews_every_n_steps_with_videos_and_lite_scores(bench_fixtures, tmp_path, capsys):
    from omni_cli.main import main

    lat = write_dummy_latents(tmp_path / "lat", n=8)
    out = tmp_path / "run"
    assert main(["train", "--config", str(CONFIG), "--stage", "1", "--set", f"out={out}",
                 "--set", f"stages.1.data={lat}", "--set", "stages.1.steps=4",
                 "--set", "checkpoint_every=100", "--set", "progress=false",
                 "--set", "previews.every=2", "--set", f"previews.instances={bench_fixtures.bench}",
                 "--set", "previews.count=2", "--set", "previews.steps=3"]) == 0
    printed = capsys.readouterr().out
    assert "preview at step 2: 2 videos" in printed and "preview at step 4" in printed
    records = [json.loads(line) for line in (out / "stage1" / "previews.jsonl").read_text()
               .splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    metrics = [json.loads(line) for line in (out / "stage1" / "metrics.jsonl").read_text()
               .splitlines()]
    for r in records:
        assert r["loss"] == metrics[r["step"] - 1]["loss"]  # next to the step's loss
        assert len(r["videos"]) == 2
        for v in r["videos"]:
            info = probe(v)
            assert info.has_video and info.has_audio and Path(v).parent.name == \
                f"step-{r['step']:07d}"
        # the lite metrics (GE2E T-Sim, PocketSphinx WER) scored every preview
        assert set(r["score"]) == {"t_sim_ge2e", "wer_sphinx"}
        # a debug model's noise: a real similarity in [-1, 1], an error rate of 1 or more
        assert -1 <= r["score"]["t_sim_ge2e"] <= 1 and r["score"]["wer_sphinx"] >= 0.5
    assert sorted(p.name for p in (out / "stage1" / "previews").iterdir()) == [
        "step-0000002", "step-0000004"]


def test_previews_need_instances():
    from omni_model.previews import PreviewConfig

    with pytest.raises(ValueError, match="previews.instances is not"):
        PreviewConfig(every=5)


def test_an_instance_that_cannot_be_sampled_is_reported_and_training_goes_on(bench_fixtures,
                                                                               tmp_path):
    from benchmark.compare import bench_instances
    from omni_core.config import load_config
    from omni_core.manifests import write_manifest
    from omni_model.train import TrainConfig, run_training

    instances, _ = bench_instances(bench_fixtures.bench)
    instances = instances.sort_values("instance_id").reset_index(drop=True)
    instances.at[0, "image_refs"] = [str(tmp_path / "gone.png")]  # a photo that is not there
    write_manifest(instances, "bench_instances", tmp_path / "inst.parquet")
    lat = write_dummy_latents(tmp_path / "lat", n=4)
    cfg = load_config(TrainConfig, CONFIG, [
        f"out={tmp_path / 'run'}", f"stages.1.data={lat}", "stages.1.steps=2",
        "checkpoint_every=100", "progress=false", "previews.every=2",
        f"previews.instances={tmp_path / 'inst.parquet'}", "previews.steps=2"])
    assert run_training(cfg, 1)["last"]["step"] == 2
    (rec,) = [json.loads(line) for line in
              (tmp_path / "run" / "stage1" / "previews.jsonl").read_text().splitlines()]
    assert len(rec["videos"]) == 1 and rec["errors"][0]["instance"] == instances.instance_id[0]
    assert "gone.png" in rec["errors"][0]["reason"]
