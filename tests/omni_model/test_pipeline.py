"""From curated samples to scored videos with the debug flavor: latent extraction from a real
in-pair curation run of the sample corpus, training on those latents, sampling the benchmark
fixtures and scoring them with ``omni eval``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file

from omni_core.config import load_config
from omni_core.jobs.summary import KEYS as SUMMARY_KEYS
from omni_core.manifests import read_manifest, write_manifest
from omni_core.media import probe
from omni_core.ray_helpers import shutdown_ray
from omni_model.data import LatentDataset, read_index
from omni_model.flavors import build_model, get_flavor
from omni_model.generate import GenerateConfig, Generator, generate
from omni_model.latents import LatentsConfig, extract_latents, latent_frame
from omni_model.train import TrainConfig, run_training, validation_loss

ROOT = Path(__file__).resolve().parents[2]
DEBUG = get_flavor("debug")


@pytest.fixture(scope="module")
def curated(inpair_offline_run):
    return inpair_offline_run


@pytest.fixture(scope="module")
def latents(curated, tmp_path_factory):
    out = tmp_path_factory.mktemp("latents") / "lat"
    cfg = LatentsConfig(storage_dtype="float32")
    try:
        summary = extract_latents(curated, out, cfg, progress=False)
    finally:
        shutdown_ray()
    assert summary.items["failed"] == 0 and summary.details["written"] == 6
    data = json.loads((out / "summary.json").read_text())
    assert tuple(data) == SUMMARY_KEYS and data["job"] == "latents"
    assert data["provenance"]["inputs"] == [str(curated)]
    return out


def test_latents_of_every_sample_with_masks_where_the_references_were_cut(curated, latents):
    g = DEBUG.geometry
    idx = read_index(latents)
    samples = read_manifest(curated / "samples.parquet", "samples")
    assert sorted(idx.sample_id) == sorted(samples.sample_id)
    task = dict(zip(samples.sample_id, samples.task, strict=True))
    assert [task[s] for s in idx.sample_id] == list(idx.task) == ["r2av"] * 6  # in-pair
    ds = LatentDataset(latents, micro_batch=1, text_len=DEBUG.args.text_len)
    h, w = g.latent_size
    for s in samples.itertuples():
        row = idx.index[idx.sample_id == s.sample_id][0]
        b = ds.load([row])
        k = len(s.identity_ids)
        assert b.video.shape == (1, DEBUG.args.video_channels, g.latent_frames, h, w)
        assert b.audio.shape == (1, g.audio_latents, DEBUG.args.audio_channels)
        assert b.ref_images.shape[2] == k and b.voice_lengths == (g.voice_latents,) * k
        assert b.source_video is not None and not torch.equal(b.source_video, b.video)
        assert torch.isfinite(b.video).all() and torch.isfinite(b.audio).all()
        assert b.text.abs().sum() > 0  # the caption's embedding, then zero padding
        # M_v: a crop taken inside the encoded 9 frames at 8 fps marks its latent frame
        expected = set()
        for f in s.mask_frames:
            frame = round(f / 24.0 * g.fps)
            if frame < g.frames:
                expected.add(latent_frame(frame, g.video_stride[0]))
        marked = {int(i) for i in torch.nonzero(b.video_mask[0].flatten(1).sum(1))}
        assert marked == expected
        # M_a: each timbre span inside the encoded 1.125 s marks its latents
        spans_in = [p for p in s.mask_spans if p[0] * g.sample_rate / g.audio_hop
                    < g.audio_latents]
        assert bool(b.audio_mask.sum() > 0) == bool(spans_in)


def test_the_decoder_option_gives_the_same_latents(curated):
    """``decoder: torchcodec`` (the CPU side of the NVDEC path) decodes the same frames as
    decord, so a sample's latents are the same; NVDEC is refused where there is no GPU."""
    from omni_core.errors import ConfigError
    from omni_model.latents import Encoders, plan_rows

    row = plan_rows(str(curated))[0]
    with torch.no_grad():
        a = Encoders(LatentsConfig(storage_dtype="float32")).sample(row)
        b = Encoders(LatentsConfig(storage_dtype="float32", decoder="torchcodec")).sample(row)
    assert torch.equal(a.video, b.video) and torch.equal(a.source_video, b.source_video)
    if not torch.cuda.is_available():
        from omni_core.media import check_decoder

        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            check_decoder(LatentsConfig(decoder="torchcodec-cuda").decoder)


def test_a_rerun_does_nothing_and_a_bad_sample_is_an_error_row(curated, latents, tmp_path):
    before = {p.name: p.read_bytes() for p in latents.glob("shard-*.safetensors")}
    summary = extract_latents(curated, latents, LatentsConfig(storage_dtype="float32"),
                              progress=False)
    assert summary.items["skipped"] == 6 and summary.items["failed"] == 0
    assert {p.name: p.read_bytes() for p in latents.glob("shard-*.safetensors")} == before

    broken = tmp_path / "curated"
    shutil.copytree(curated, broken, ignore=shutil.ignore_patterns("_results"))
    samples = read_manifest(broken / "samples.parquet", "samples")
    # a stage-3 sample table: each sample's task goes into the latent index
    samples["task"] = ["r2av", "rv2av", "ra2v", "r2av", "rv2av", "ra2v"]
    write_manifest(samples, "samples", broken / "samples.parquet")
    victim = samples.sample_id.iloc[0]
    (broken / samples.clip_path.iloc[0]).write_bytes(b"not a video")
    try:
        summary = extract_latents(broken, tmp_path / "lat", LatentsConfig(), progress=False)
    finally:
        shutdown_ray()
    assert summary.details["written"] == 5 and summary.items["failed"] == 1
    errors = read_manifest(tmp_path / "lat" / "errors.parquet", "errors")
    assert list(errors.item) == [victim] and set(errors.stage) == {"latents"}
    idx = read_index(tmp_path / "lat")
    assert victim not in set(idx.sample_id)
    task = dict(zip(samples.sample_id, samples.task, strict=True))
    assert list(idx.task) == [task[s] for s in idx.sample_id]
    assert set(idx.task) == {"r2av", "rv2av", "ra2v"}


def test_the_debug_flavor_learns_from_the_corpus_latents(latents, tmp_path):
    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
        f"out={tmp_path}", f"stages.1.data={latents}", "stages.1.steps=100",
        "checkpoint_every=100", "progress=false"])
    result = run_training(cfg, 1)
    data = LatentDataset(latents, 2, DEBUG.args.text_len)
    fresh = build_model(DEBUG.args, seed=0)
    trained = build_model(DEBUG.args, seed=0)
    trained.load_state_dict(load_file(str(Path(result["checkpoint"]) / "model.safetensors")))
    before, after = validation_loss(fresh, data), validation_loss(trained, data)
    # measured: 3.42 -> 1.98 after 100 steps (about 10 s on two CPUs); with the corpus
    # latents of the picture-timeline audio, 3.33 -> 2.57 in a full-suite run (0.77); a model
    # that does not learn stays at 1.0
    assert after < 0.85 * before, (before, after)


def test_lora_fine_tuning_lowers_the_validation_loss_of_its_base(latents, tmp_path):
    """A base trained briefly on the corpus latents, then LoRA adapters (rank 8 on every
    projection, the base frozen) trained from it: the validation loss of base + adapters
    falls below the base's."""
    from omni_model.adapter import checkpoint_state

    def cfg(out, *extra):
        return load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
            f"out={out}", f"stages.1.data={latents}", "checkpoint_every=1000",
            "progress=false", *extra])

    base = run_training(cfg(tmp_path / "base", "stages.1.steps=30"), 1)["checkpoint"]
    # adapters take a larger step size than full training (the usual LoRA practice)
    tuned = run_training(cfg(tmp_path / "lora", "stages.1.steps=100", "lora.enabled=true",
                             "lora.rank=8", "lora.alpha=16", "optim.lr=1.0e-2",
                             f"init={base}", "init_weights=model"), 1)["checkpoint"]
    data = LatentDataset(latents, 2, DEBUG.args.text_len)
    template = build_model(DEBUG.args, "meta").state_dict()
    losses = []
    for ck in (base, tuned):
        model = build_model(DEBUG.args, "meta")
        model.load_state_dict(checkpoint_state(ck, template, "model")[0], assign=True)
        losses.append(validation_loss(model, data))
    # measured 2.153 -> 2.092 and 2.220 -> 2.152 (about 3%: a rank-8 adapter on a 64-wide
    # model; the validation loss is deterministic, so any fall is the adapters' doing)
    assert losses[1] < 0.985 * losses[0], losses


@pytest.fixture(scope="module")
def instances(bench_fixtures, sample_corpus, tmp_path_factory):
    """The fixtures' R2AV instances plus an RV2AV and an RA2V one made from the corpus."""
    from benchmark.released import import_released

    inst, _ = import_released(bench_fixtures.bench)
    one = inst.iloc[0]
    talking = sorted((sample_corpus.out / "talking").glob("*.mp4"))[0]
    wav = sorted(sample_corpus.out.rglob("*.wav"))[0]
    extra = pd.DataFrame([
        {**one.to_dict(), "instance_id": "edit_0", "task": "rv2av",
         "source_video": str(talking), "driving_audio": None},
        {**one.to_dict(), "instance_id": "drive_0", "task": "ra2v", "source_video": None,
         "driving_audio": str(wav)}])
    path = tmp_path_factory.mktemp("inst") / "instances.parquet"
    write_manifest(pd.concat([inst, extra], ignore_index=True), "bench_instances", path)
    return path


def test_generate_writes_playable_videos_that_omni_eval_scores(instances, tmp_path):
    from evaluation.runner import evaluate

    cfg = GenerateConfig(steps=4)
    summary = generate(instances, tmp_path / "pred", cfg, progress=False)
    table = read_manifest(instances, "bench_instances")
    assert summary.items["failed"] == 0 and summary.details["written"] == len(table)
    g = DEBUG.geometry
    for iid in table.instance_id:
        info = probe(tmp_path / "pred" / f"{iid}.mp4")
        assert (info.width, info.height, info.n_frames) == (g.width, g.height, g.frames)
        assert info.has_audio and info.sample_rate == g.sample_rate
    again = generate(instances, tmp_path / "pred", cfg, progress=False)
    assert again.items["skipped"] == len(table) and again.details["written"] == 0
    run = evaluate(table, tmp_path / "pred", tmp_path / "eval", ["aes", "pq", "wer"],
                   progress=False)
    res = run.results
    assert set(res.instance_id) == set(table.instance_id)
    assert (res.status == "ok").sum() >= len(table)  # AES and PQ score every video
    assert "missing" not in set(res.status)


@pytest.mark.slow
def test_generate_in_bfloat16_writes_every_instance(instances, tmp_path):
    """``--set dtype=bfloat16`` (how a GPU samples): the model runs in bf16 on every task."""
    cfg = GenerateConfig(steps=2, dtype="bfloat16")
    summary = generate(instances, tmp_path / "pred", cfg, progress=False)
    table = read_manifest(instances, "bench_instances")
    assert read_manifest(tmp_path / "pred" / "errors.parquet", "errors").empty
    assert summary.items["failed"] == 0 and summary.details["written"] == len(table)
    for iid in table.instance_id:
        assert probe(tmp_path / "pred" / f"{iid}.mp4").has_audio


def test_a_failing_instance_is_an_error_row_and_the_others_are_written(instances, tmp_path):
    table = read_manifest(instances, "bench_instances")
    bad = table.iloc[0].to_dict()
    bad.update(instance_id="broken_0", image_refs=[str(tmp_path / "missing.png")])
    path = tmp_path / "instances.parquet"
    write_manifest(pd.concat([table.iloc[:1], pd.DataFrame([bad])], ignore_index=True),
                   "bench_instances", path)
    summary = generate(path, tmp_path / "pred", GenerateConfig(steps=2), progress=False)
    assert summary.details["written"] == 1 and summary.items["failed"] == 1
    assert not (tmp_path / "pred" / "broken_0.mp4").exists()
    errors = read_manifest(tmp_path / "pred" / "errors.parquet", "errors")
    assert list(errors.item) == ["broken_0"] and list(errors.stage) == ["generate"]
    assert "missing.png" in errors.reason[0]


def test_another_checkpoint_regenerates_every_video_and_the_same_one_none(instances,
                                                                          tmp_path):
    """A folder never mixes two models' videos: generating into it with another checkpoint
    replaces every video (and the summary names that checkpoint); the same checkpoint and
    settings generate nothing; going back to the first checkpoint regenerates again."""
    import hashlib

    from safetensors.torch import save_file

    table = read_manifest(instances, "bench_instances").iloc[:2]
    path = tmp_path / "instances.parquet"
    write_manifest(table, "bench_instances", path)
    ckpts = {}
    for seed in (1, 2):
        model = build_model(DEBUG.args, seed=seed)
        with torch.no_grad():  # a fresh model's zero head would make every checkpoint agree
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))
        ckpts[seed] = tmp_path / f"ckpt{seed}"
        ckpts[seed].mkdir()
        save_file({k: v.contiguous() for k, v in model.state_dict().items()},
                  str(ckpts[seed] / "model.safetensors"))
    pred = tmp_path / "pred"

    def run(seed):
        s = generate(path, pred, GenerateConfig(steps=2, checkpoint=str(ckpts[seed])),
                     progress=False)
        videos = {i: hashlib.sha256((pred / f"{i}.mp4").read_bytes()).hexdigest()
                  for i in table.instance_id}
        return s, videos

    first, a = run(1)
    assert first.items == {"total": 2, "done": 2, "skipped": 0, "failed": 0}
    second, b = run(2)
    assert second.items["done"] == 2 and second.details["written"] == 2
    assert all(a[i] != b[i] for i in a)  # every video is the second checkpoint's
    data = json.loads((pred / "summary.json").read_text())
    assert tuple(data) == SUMMARY_KEYS and data["job"] == "generate"
    assert data["details"]["checkpoint"]["path"] == str(ckpts[2].resolve())
    assert data["provenance"]["config"]["checkpoint"] == str(ckpts[2])
    third, c = run(2)
    assert third.items["skipped"] == 2 and third.details["written"] == 0 and c == b
    back, d = run(1)
    assert back.items["done"] == 2 and d == a  # deterministic: the first model's videos
    again = generate(path, pred, GenerateConfig(steps=3, checkpoint=str(ckpts[1])),
                     progress=False)
    assert again.items["done"] == 2  # a sampler setting is part of the key too


def test_sampling_is_deterministic_and_both_guidance_forms_run(instances):
    table = read_manifest(instances, "bench_instances").set_index("instance_id")
    inst = {"instance_id": "twoip", **table.iloc[2].to_dict()}
    gen = Generator(GenerateConfig(steps=3))
    with torch.no_grad():  # a fresh model's zero head would make every branch agree
        for p in gen.model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(1)))
    cond = gen.conditions(inst, Path("/"))
    assert cond.ref_images.shape[2] == 2 and cond.voice_lengths == (31, 31)
    v1, a1 = gen.sample(cond, seed=7)
    v2, a2 = gen.sample(cond, seed=7)
    assert torch.equal(v1, v2) and torch.equal(a1, a2)
    v3, _ = gen.sample(cond, seed=8)
    assert not torch.equal(v1, v3)
    release = Generator(GenerateConfig(steps=3, guidance="release"), model=gen.model)
    assert len(release._branches(cond)) == 4 and len(gen._branches(cond)) == 3
    vr, ar = release.sample(cond, seed=7)
    assert vr.shape == v1.shape and not torch.equal(vr, v1)
    assert np.isfinite(ar.numpy()).all()


def test_generate_reads_a_training_checkpoint(latents, tmp_path):
    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
        f"out={tmp_path}", f"stages.1.data={latents}", "stages.1.steps=2",
        "checkpoint_every=2", "progress=false"])
    ck = Path(run_training(cfg, 1)["checkpoint"])
    from omni_model.generate import load_model

    model = load_model(GenerateConfig(checkpoint=str(ck)))
    ema = load_file(str(ck / "ema.safetensors"))
    assert all(torch.equal(v, ema[k]) for k, v in model.state_dict().items())
    state = json.loads((ck / "trainer.json").read_text())
    assert state["step"] == 2
