"""The held-out identities of a built benchmark keep its people out of training: ``omni
latents`` and ``omni train`` refuse the samples that show them (error rows, counted), and
refuse loudly a run pointed at the benchmark's own data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from benchmark.build import (
    BuildOptions,
    build_benchmark,
    choose_heldout,
    load_curation,
    read_matches,
)
from omni_cli.main import main
from omni_core.errors import OmniError
from omni_core.heldout import heldout_file, load_heldout
from omni_core.manifests import read_manifest, write_manifest
from omni_core.ray_helpers import shutdown_ray
from omni_model.data import read_index, write_dummy_latents
from omni_model.latents import LatentsConfig, extract_latents, plan_rows, refuse_heldout

ROOT = Path(__file__).resolve().parents[2]

#: the in-pair run and one latent extraction land on the first test
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def bench(inpair_offline_run, crosspair_matches, tmp_path_factory) -> Path:
    """A person seen in several videos held out (co-stars kept): some samples are the
    benchmark's, the others trainable."""
    cur = load_curation([inpair_offline_run])
    matches = read_matches(crosspair_matches)

    def spans_videos(seed: int) -> bool:
        h = choose_heldout(cur, matches, BuildOptions(persons=1, seed=seed, costars="keep"))
        return len({h.video_of[h.clip_of[i]] for i in h.members[h.drawn[0]]}) >= 2

    seed = next(s for s in range(200) if spans_videos(s))
    out = tmp_path_factory.mktemp("heldout_bench") / "bench"
    build_benchmark([inpair_offline_run], out, crosspair=crosspair_matches,
                    options=BuildOptions(persons=1, seed=seed, costars="keep",
                                         mix={"r2av": 1}), progress=False)
    return out


@pytest.fixture(scope="module")
def everyone(inpair_offline_run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("everyone") / "bench"
    build_benchmark([inpair_offline_run], out, options=BuildOptions(
        fraction=1.0, mix={"r2av": 1}), progress=False)
    return out


@pytest.fixture(scope="module")
def latents(inpair_offline_run, tmp_path_factory) -> Path:
    """Latents of all six samples, made without a held-out check."""
    out = tmp_path_factory.mktemp("heldout_latents") / "lat"
    try:
        summary = extract_latents(inpair_offline_run, out, LatentsConfig(
            storage_dtype="float32"), progress=False)
    finally:
        shutdown_ray()
    assert summary.details["written"] == 6
    return out


def benchmark_samples(bench: Path) -> set[str]:
    return set(read_manifest(bench / "bench_sources.parquet", "bench_sources").sample_id)


def test_the_latent_index_records_what_each_sample_shows(latents, inpair_offline_run):
    idx = read_index(latents).set_index("sample_id")
    samples = read_manifest(inpair_offline_run / "samples.parquet", "samples")
    clips = read_manifest(inpair_offline_run / "clips.parquet", "clips").set_index("clip_id")
    for s in samples.itertuples():
        assert list(idx.identity_ids[s.sample_id]) == list(s.identity_ids)  # in-pair refs
        assert list(idx.clip_ids[s.sample_id]) == [s.clip_id]
        assert list(idx.video_ids[s.sample_id]) == [clips.video_id[s.clip_id]]


def test_latents_refuse_the_benchmarks_samples(latents, inpair_offline_run, bench, tmp_path):
    held_samples = benchmark_samples(bench)
    assert 0 < len(held_samples) < 6
    out = tmp_path / "lat"
    shutil.copytree(latents, out)  # its parts are reused: the check needs no encoder
    summary = extract_latents(inpair_offline_run, out, LatentsConfig(
        storage_dtype="float32", heldout=[str(bench)]), progress=False)
    assert summary.counts["heldout"] == len(held_samples)
    assert summary.details["written"] == 6 - len(held_samples)
    assert summary.items["total"] == 6 and summary.items["failed"] == len(held_samples)
    assert summary.details["heldout"] == {"benchmarks": [str(bench)],
                                          "refused": len(held_samples)}
    assert set(read_index(out).sample_id).isdisjoint(held_samples)
    errors = read_manifest(out / "errors.parquet", "errors")
    assert set(errors.item) == held_samples and set(errors.stage) == {"heldout"}
    held = read_manifest(bench / "heldout.parquet", "heldout")
    for e in errors.itertuples():
        ident = e.reason.split("shows identity ")[1].split()[0]
        assert ident in set(held.identity_id)
        assert f"held out by benchmark {bench}" in e.reason
    printed = "\n".join(summary.lines())
    assert f"held out: {len(held_samples)} of 6 samples of {inpair_offline_run} refused" \
        in printed


def test_latents_of_the_benchmarks_own_data_is_an_error(inpair_offline_run, everyone,
                                                        tmp_path):
    with pytest.raises(OmniError, match="this is the benchmark's own data"):
        extract_latents(inpair_offline_run, tmp_path / "lat", LatentsConfig(
            heldout=[str(everyone)]), progress=False)
    assert not (tmp_path / "lat" / "index.parquet").exists()


def test_a_face_from_a_benchmark_clip_is_refused_in_another_sample(inpair_offline_run, bench,
                                                                    tmp_path):
    """A cross-pair sample's identity image comes from another clip: one cut from a
    benchmark clip is refused though the target clip is trainable."""
    run = tmp_path / "run"
    shutil.copytree(inpair_offline_run, run, ignore=shutil.ignore_patterns("_results"))
    samples = read_manifest(run / "samples.parquet", "samples")
    refs = read_manifest(run / "references.parquet", "references")
    held = read_manifest(bench / "heldout.parquet", "heldout")
    taken = refs[(refs.kind == "image") & refs.identity_id.isin(set(held.identity_id))].iloc[0]
    k = next(i for i, s in enumerate(samples.itertuples())
             if s.sample_id not in benchmark_samples(bench))
    keep = samples.sample_id.iloc[k]
    kept, refused = refuse_heldout(plan_rows(str(run)), [str(bench)], "run")
    assert {r.sample_id for r in refused} == benchmark_samples(bench)
    assert keep in {r["sample_id"] for r in kept}
    ids = list(samples.image_reference_ids.iloc[k])
    ids[0] = taken.reference_id
    samples.at[k, "image_reference_ids"] = ids
    write_manifest(samples, "samples", run / "samples.parquet")
    kept, refused = refuse_heldout(plan_rows(str(run)), [str(bench)], "run")
    assert keep not in {r["sample_id"] for r in kept}
    hit = next(r for r in refused if r.sample_id == keep)
    assert (hit.kind, hit.key) == ("identity", taken.identity_id)


def test_train_leaves_the_benchmarks_samples_out(latents, bench, tmp_path, capsys):
    held_samples = benchmark_samples(bench)
    argv = ["train", "--config", str(ROOT / "configs" / "train" / "debug.yaml"), "--stage",
            "1", "--set", f"out={tmp_path}", "--set", f"stages.1.data={latents}",
            "--set", "stages.1.steps=2", "--set", "global_batch=1", "--set", "micro_batch=1",
            "--set", "checkpoint_every=2", "--set", "progress=false"]
    assert main([*argv, "--heldout", str(bench / "heldout.parquet")]) == 0
    captured = capsys.readouterr()
    assert f"{len(held_samples)} held-out sample(s) left out" in captured.out
    assert f"held out: {len(held_samples)} of 6 samples of {latents} refused" in captured.err
    errors = read_manifest(tmp_path / "stage1" / "errors.parquet", "errors")
    assert set(errors.item) == held_samples and set(errors.stage) == {"heldout"}
    assert all(str(bench) in r for r in errors.reason)
    # without the check every sample is trained on, and no errors table is written
    assert main([*argv[:5], "--set", f"out={tmp_path / 'all'}", *argv[7:]]) == 0
    assert not (tmp_path / "all" / "stage1" / "errors.parquet").exists()


def test_train_on_the_benchmarks_own_data_is_refused(latents, everyone, tmp_path):
    from omni_core.config import load_config
    from omni_model.train import TrainConfig, train_loop

    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
        f"out={tmp_path}", f"stages.1.data={latents}", "progress=false"])
    cfg.heldout = [str(everyone)]
    with pytest.raises(OmniError, match="this is the benchmark's own data") as exc:
        train_loop(cfg, 1)
    assert str(everyone) in str(exc.value) and str(latents) in str(exc.value)
    assert not (tmp_path / "stage1" / "checkpoints").exists()


def test_train_cannot_check_latents_without_identity_keys(bench, tmp_path):
    from omni_core.config import load_config
    from omni_model.train import TrainConfig, train_loop

    dummy = write_dummy_latents(tmp_path / "dummy", n=4)
    cfg = load_config(TrainConfig, ROOT / "configs" / "train" / "debug.yaml", [
        f"out={tmp_path / 'out'}", f"stages.1.data={dummy}", "progress=false"])
    cfg.heldout = [str(bench)]
    with pytest.raises(OmniError, match="cannot be checked against the held-out"):
        train_loop(cfg, 1)
    index = pd.read_parquet(dummy / "index.parquet").drop(columns=["identity_ids"])
    index.to_parquet(dummy / "index.parquet")
    with pytest.raises(OmniError, match="the index has no identity keys"):
        train_loop(cfg, 1)


def test_the_heldout_reader(bench, everyone, inpair_offline_run, shared_dir):
    held = load_heldout([bench, everyone / "heldout.parquet"])
    assert held.benchmarks == sorted([str(bench), str(everyone)])
    table = read_manifest(bench / "heldout.parquet", "heldout")
    one = table[table.held_out].iloc[0]
    hit = held.check("s", identity_ids=[one.identity_id])
    assert hit.kind == "identity" and hit.person_id == one.person_id
    assert "drawn" in hit.message() or "in benchmark clip" in hit.message()
    assert held.check("s", clip_ids=["elsewhere", one.clip_id]).kind == "clip"
    assert held.check("s", video_ids=[one.video_id]).kind == "video"
    assert held.check("s", ["nobody"], ["no-clip"], ["no-video"]) is None
    assert load_heldout([]) is None
    with pytest.raises(OmniError, match="no heldout.parquet"):
        heldout_file(shared_dir / "data" / "release_test_case")
    with pytest.raises(OmniError, match="not found"):
        heldout_file(inpair_offline_run / "nothing.parquet")
