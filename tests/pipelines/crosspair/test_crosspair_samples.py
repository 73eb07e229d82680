"""Cross-pair samples: faces of the same person from another video, cloned voices, no masks;
the stage-3 table's task mix."""

from __future__ import annotations

from collections import Counter

import pandas as pd
import pytest

from omni_core.manifests import read_manifest
from omni_core.storage import RunFolder
from pipelines.crosspair.identity import RetrievalOptions, find_matches, load_database
from pipelines.crosspair.samples import (
    assign_tasks,
    build_crosspair,
    plan_crosspair,
    stage3_samples,
    write_sample_folder,
)
from pipelines.inpair.score import score_run

#: the debug ArcFace's separation on the corpus (see test_identity.py)
DEBUG_OPTS = RetrievalOptions(threshold=0.93, mutual_top_k=3, min_margin=0.02)


def _voices(plan, failing=()):
    """A voices table as the DAG writes it: every prompt cloned, those in ``failing`` not
    passing their check."""
    rows = []
    for v in plan.voices:
        bad = v["prompt_reference_id"] in failing
        rows.append({"voice_id": "v" + v["prompt_reference_id"], "identity_id": v["identity_id"],
                     "prompt_reference_id": v["prompt_reference_id"],
                     "prompt_clip_id": v["prompt_clip_id"], "backend": "espeak",
                     "text": "Rice is often served in round bowls.", "prompt_text": None,
                     "path": None if bad else f"voices/v{v['prompt_reference_id']}.wav",
                     "duration_s": 2.0, "similarity": 0.2 if bad else 0.9, "wer": None,
                     "transcript": None, "passed": not bad,
                     "reason": "speaker similarity 0.200 < 0.5" if bad else None})
    return pd.DataFrame(rows)


def test_plan_takes_each_subjects_face_from_another_video(inpair_offline_run, sample_corpus):
    run = inpair_offline_run
    db = load_database([run])
    plan = plan_crosspair([run], db, find_matches(db, DEBUG_OPTS))
    inpair = read_manifest(run / "samples.parquet", "samples")
    # measured: 3 of the 6 in-pair samples have every subject matched in another video
    assert len(plan.candidates) == 3 and len(plan.sources) == 3
    assert {s["status"] for s in plan.sources} == {"no_match"}
    assert all("<sub" in s["reason"] for s in plan.sources)
    clips = read_manifest(run / "clips.parquet", "clips").set_index("clip_id")
    refs = plan.references.set_index("reference_id")
    truth = pd.read_parquet(sample_corpus.out / "truth" / "people.parquet")
    source = {(r.file, r.person): r.face_source for r in truth.itertuples()}
    person = {c.identity_id: source.get((c.file, c.face_person))
              for c in score_run(run, sample_corpus.out).identities}
    for c in plan.candidates:
        assert c.sample["sample_id"] in set(inpair.sample_id)
        for ident, image in zip(c.sample["identity_ids"], c.images, strict=True):
            ref = refs.loc[image]
            assert ref.kind == "image"
            assert clips.video_id[ref.source_clip_id] != clips.video_id[c.sample["clip_id"]]
            assert person[ref.identity_id] == person[ident]  # the same face
    # one voice to clone per subject's in-pair timbre reference
    prompts = {p for c in plan.candidates for p in c.prompts}
    assert {v["prompt_reference_id"] for v in plan.voices} == prompts
    assert all(refs.loc[p].kind == "audio" for p in prompts)


def test_a_failed_voice_drops_its_samples_with_the_reason(inpair_offline_run, tmp_path):
    run = inpair_offline_run
    db = load_database([run])
    plan = plan_crosspair([run], db, find_matches(db, DEBUG_OPTS))
    bad = plan.candidates[0].prompts[0]
    samples, refs, sources = build_crosspair(plan, _voices(plan, failing={bad}))
    lost = [c for c in plan.candidates if bad in c.prompts]
    assert len(samples) == 3 - len(lost)
    dropped = [s for s in sources if s["status"] == "no_voice"]
    assert len(dropped) == len(lost) and "speaker similarity" in dropped[0]["reason"]
    assert {s["status"] for s in sources} <= {"sample", "no_voice"}
    for s in samples.itertuples():
        assert list(s.mask_frames) == [] and list(s.mask_spans) == []  # stage 2: full loss
        assert all(a.startswith("v") for a in s.audio_reference_ids)  # the clones
    audio = refs[refs.kind == "audio"]
    assert set(audio.path) <= {f"voices/{v}.wav" for v in audio.reference_id}
    assert audio.start_s.isna().all()  # nothing cut from the target: no mask

    written = write_sample_folder(RunFolder(tmp_path / "x"), "", samples, refs, [run])
    assert sorted(written) == sorted(f"{t}.parquet" for t in (
        "samples", "references", "clips", "identities", "face_tracks"))
    out = tmp_path / "x"
    back = read_manifest(out / "samples.parquet", "samples")
    assert list(back.sample_id) == list(samples.sample_id)
    assert set(read_manifest(out / "clips.parquet", "clips").clip_id) == set(samples.clip_id)


@pytest.mark.parametrize("n", [1, 3, 10, 57, 1000])
def test_assign_tasks_holds_the_mix_exactly(n):
    ids = [f"s{i}" for i in range(n)]
    task = assign_tasks(ids, {"r2av": 4, "rv2av": 3, "ra2v": 3})
    counts = Counter(task.values())
    assert sum(counts.values()) == n
    for t, w in (("r2av", 0.4), ("rv2av", 0.3), ("ra2v", 0.3)):
        assert abs(counts[t] - w * n) < 1  # largest remainder: within one of exact
    assert assign_tasks(list(reversed(ids)), {"r2av": 4, "rv2av": 3, "ra2v": 3}) == task


def test_assign_tasks_is_not_by_input_order_and_honours_zero_weights():
    ids = [f"s{i:03d}" for i in range(100)]
    task = assign_tasks(ids, {"r2av": 1, "rv2av": 0, "ra2v": 1})
    assert set(task.values()) == {"r2av", "ra2v"}
    first = [task[i] for i in ids[:50]]
    assert 10 < first.count("r2av") < 40  # hashed, not the first 50 ids -> r2av


def test_stage3_table_gives_new_ids_and_tasks(inpair_offline_run):
    pool = read_manifest(inpair_offline_run / "samples.parquet", "samples")
    st3 = stage3_samples(pool, {"r2av": 4, "rv2av": 3, "ra2v": 3})
    assert len(st3) == len(pool) and not set(st3.sample_id) & set(pool.sample_id)
    assert Counter(st3.task) == {"r2av": 2, "rv2av": 2, "ra2v": 2}  # 2.4/1.8/1.8 -> 2/2/2
    assert sorted(st3.clip_id) == sorted(pool.clip_id)
    assert list(stage3_samples(pool, {"r2av": 4, "rv2av": 3, "ra2v": 3}).sample_id) == \
        list(st3.sample_id)
