"""``omni benchmark build``: IDBench-Omni instances from the sample corpus's in-pair curation
run (``inpair_offline_run``) and the cross-pair identity matches over it
(``crosspair_matches``), held out by identity, in the released layout that
``benchmark/released.py`` imports back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmark.build import (
    NO_CROSSPAIR,
    BuildOptions,
    build_benchmark,
    choose_heldout,
    load_curation,
    parse_mix,
    read_matches,
)
from benchmark.released import import_released
from omni_cli.main import main
from omni_core.captions import StructuredCaption, parse_caption, read_caption_text
from omni_core.errors import OmniError
from omni_core.manifests import manifest_provenance, read_manifest, stable_id, write_manifest
from omni_core.media import load_audio, probe, read_frames, write_image, write_wav

#: the in-pair run fixture (minutes on 2 CPUs) lands on the first test
pytestmark = pytest.mark.timeout(900)


def seed_for(run, matches_dir, want, **opts) -> int:
    """The first seed whose draw of one person satisfies ``want(holdout)``: ids (and so the
    draw) derive from the session's temporary paths, the structure of the corpus does not."""
    cur = load_curation([run])
    matches = read_matches(matches_dir)
    for seed in range(200):
        if want(choose_heldout(cur, matches, BuildOptions(persons=1, seed=seed, **opts))):
            return seed
    raise AssertionError("no seed draws such a person")


def drawn_members(cur, matches, seed: int, **opts) -> list[str]:
    """The identities of the person one draw with ``seed`` holds out."""
    h = choose_heldout(cur, matches, BuildOptions(persons=1, seed=seed, **opts))
    return h.members[h.drawn[0]]


def spans_videos(h) -> bool:
    (p,) = h.drawn
    return len({h.video_of[h.clip_of[i]] for i in h.members[p]}) >= 2


@pytest.fixture(scope="module")
def truth(inpair_offline_run, sample_corpus) -> dict[str, str]:
    """identity id -> the corpus face (photo) it is, for the identities with a speaker."""
    from pipelines.inpair.score import score_run

    people = pd.read_parquet(sample_corpus.out / "truth" / "people.parquet")
    source = {(r.file, r.person): r.face_source for r in people.itertuples()}
    return {c.identity_id: source[(c.file, c.face_person)]
            for c in score_run(inpair_offline_run, sample_corpus.out).identities
            if (c.file, c.face_person) in source}


@pytest.fixture(scope="module")
def built(inpair_offline_run, crosspair_matches, tmp_path_factory):
    """One person who appears in several videos, held out with ``costars: keep``; every
    task for every benchmark sample."""
    seed = seed_for(inpair_offline_run, crosspair_matches, spans_videos, costars="keep")
    out = tmp_path_factory.mktemp("built") / "bench"
    res = build_benchmark([inpair_offline_run], out, crosspair=crosspair_matches,
                          options=BuildOptions(persons=1, seed=seed, costars="keep",
                                               every_task=True), progress=False)
    return res


def sorted_rows(df: pd.DataFrame) -> list[dict]:
    out = []
    for r in df.sort_values("instance_id").to_dict("records"):
        out.append({k: (list(v) if isinstance(v, (list, np.ndarray)) else
                        None if v is None or (isinstance(v, float) and np.isnan(v)) else v)
                    for k, v in r.items()})
    return out


def test_the_built_folder_imports_back_to_the_same_instances(built, inpair_offline_run):
    root = built.out
    assert built.errors.empty
    inst = read_manifest(root / "bench_instances.parquet", "bench_instances")
    imported, errors = import_released(root)
    assert errors.empty
    assert sorted_rows(imported) == sorted_rows(inst)  # every column, paths included
    sources = read_manifest(root / "bench_sources.parquet", "bench_sources")
    n_samples = sources.sample_id.nunique()
    assert inst.task.value_counts().to_dict() == {"r2av": n_samples, "rv2av": n_samples,
                                                  "ra2v": n_samples}
    samples = read_manifest(inpair_offline_run / "samples.parquet", "samples") \
        .set_index("sample_id")
    refs = read_manifest(inpair_offline_run / "references.parquet", "references") \
        .set_index("reference_id")
    assert sorted(sources.instance_id) == sorted(inst.instance_id)
    for row, src in zip(inst.sort_values("instance_id").itertuples(),
                        sources.sort_values("instance_id").itertuples(), strict=True):
        set_name, case = row.instance_id.split("_", 1)
        s = samples.loc[src.sample_id]
        n = len(s.identity_ids)
        assert set_name == {1: "oneip", 2: "twoip"}[n] and case == f"{src.sample_id}-{row.task}"
        assert row.split == ("S" if n == 1 else "M")
        names = [case] if n == 1 else [str(k) for k in range(n)]
        set_dir = root / set_name
        assert list(row.image_refs) == [str(set_dir / "imgs" / case / f"{x}.png") for x in names]
        assert list(row.audio_refs) == [str(set_dir / "audios" / case / f"{x}.wav")
                                        for x in names]
        for path, rid in zip(row.image_refs, s.image_reference_ids, strict=True):
            assert Path(path).read_bytes() == (inpair_offline_run / refs.path[rid]).read_bytes()
        for path, rid in zip(row.audio_refs, s.audio_reference_ids, strict=True):
            assert Path(path).read_bytes() == (inpair_offline_run / refs.path[rid]).read_bytes()
        assert row.caption == read_caption_text(inpair_offline_run / s.caption_path)
        assert json.loads((set_dir / "captions" / f"{case}.json").read_text()) == row.caption
        assert len(parse_caption(row.caption).subjects) == n
        assert pd.notna(row.source_video) == (row.task == "rv2av")
        assert pd.notna(row.driving_audio) == (row.task == "ra2v")
    prov = manifest_provenance(root / "bench_instances.parquet")
    assert prov["kind"] == "built" and prov["curation"] == [str(inpair_offline_run)]
    assert prov["crosspair"] == str(built.summary.details["crosspair"])
    again = import_released(root)[0].attrs["provenance"]
    assert again["revision_source"] == "omni benchmark build"
    assert again["revision"] == json.loads((root / "summary.json").read_text())["result_key"]


def test_a_person_is_held_out_across_videos(built, inpair_offline_run, truth):
    held = read_manifest(built.out / "heldout.parquet", "heldout")
    drawn = held[held.reason.str.startswith("drawn")]
    assert drawn.person_id.nunique() == 1 and drawn.held_out.all()
    # the drawn person is one face of the corpus, seen in several videos, and every crop of
    # that face the curation made is held out (the debug ArcFace finds them all: see
    # tests/pipelines/crosspair/test_identity.py)
    faces = {truth[i] for i in drawn.identity_id if i in truth}
    assert len(faces) == 1 and drawn.video_id.nunique() >= 2
    refs = read_manifest(inpair_offline_run / "references.parquet", "references")
    cropped = set(refs[refs.kind == "image"].identity_id)
    same_face = {i for i, f in truth.items() if f in faces and i in cropped}
    assert same_face <= set(drawn.identity_id)
    # every clip showing them is a benchmark clip; no sample left for training shows them
    samples = read_manifest(inpair_offline_run / "samples.parquet", "samples")
    sources = read_manifest(built.out / "bench_sources.parquet", "bench_sources")
    shows = samples[[bool(set(ids) & set(drawn.identity_id)) for ids in samples.identity_ids]]
    assert set(shows.sample_id) == set(sources.sample_id)
    trainable = samples[~samples.sample_id.isin(set(sources.sample_id))]
    assert len(trainable) == built.summary.details["samples"]["trainable"] > 0
    assert not {i for ids in trainable.identity_ids for i in ids} & set(held.identity_id)
    # costars: keep: the other people of those clips are listed, not held out as persons
    costars = held[~held.held_out]
    assert len(costars) and costars.reason.str.contains("costars: keep").all()
    assert set(held.clip_id) == set(sources.clip_id)
    # what the curation keys them by: clip, video (path and hash), run, embedding
    idents = read_manifest(inpair_offline_run / "identities.parquet", "identities") \
        .set_index("identity_id")
    videos = read_manifest(inpair_offline_run / "videos.parquet", "videos") \
        .set_index("video_id")
    clips = read_manifest(inpair_offline_run / "clips.parquet", "clips").set_index("clip_id")
    for r in held.itertuples():
        assert r.clip_id == idents.clip_id[r.identity_id]
        assert r.video_id == clips.video_id[r.clip_id]
        assert (r.video_path, r.video_hash) == (videos.path[r.video_id],
                                                videos.content_hash[r.video_id])
        assert r.run == str(inpair_offline_run)
        assert np.allclose(r.embedding, idents.embedding[r.identity_id])
        mine = sources[[r.identity_id in ids for ids in sources.identity_ids]]
        assert sorted(r.instance_ids) == sorted(mine.instance_id)


def test_rv2av_source_is_the_clip_with_the_heads_greyed_and_ra2v_drives_with_its_sound(
        built, inpair_offline_run):
    inst = read_manifest(built.out / "bench_instances.parquet", "bench_instances")
    sources = read_manifest(built.out / "bench_sources.parquet", "bench_sources") \
        .set_index("instance_id")
    idents = read_manifest(inpair_offline_run / "identities.parquet", "identities") \
        .set_index("identity_id")
    tracks = read_manifest(inpair_offline_run / "face_tracks.parquet", "face_tracks") \
        .set_index("track_id")
    two = inst[(inst.task == "rv2av") & (inst.split == "M")].iloc[0]
    clip = sources.clip_path[two.instance_id]
    info, src = probe(clip), probe(two.source_video)
    assert not src.has_audio and src.n_frames == info.n_frames and src.fps == info.fps
    tids = [t for i in sources.identity_ids[two.instance_id] for t in idents.track_ids[i]]
    t = tracks.loc[tids[0]]
    f = int(t.frame_indices[len(t.frame_indices) // 2])
    masked, orig = read_frames(two.source_video, [f])[0], read_frames(clip, [f])[0]
    heads = np.zeros(orig.shape[:2], bool)
    for tid in tids:  # each subject's box at this frame (a detection), widened 1.6 times
        tr = tracks.loc[tid]
        k = int(np.argmin(np.abs(np.asarray(tr.frame_indices) - f)))
        x0, y0, x1, y1 = map(float, tr.boxes[k])
        cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * 0.8, (y1 - y0) * 0.8
        heads[max(0, int(cy - hh)):int(cy + hh), max(0, int(cx - hw)):int(cx + hw)] = True
    x0, y0, x1, y1 = map(float, t.boxes[list(t.frame_indices).index(f)])
    core = masked[int(y0) + 4:int(y1) - 4, int(x0) + 4:int(x1) - 4].astype(float)
    assert np.abs(core - 128).mean() < 3  # the face is grey
    assert np.abs(orig[int(y0):int(y1), int(x0):int(x1)].astype(float) - 128).mean() > 15
    away = ~heads
    assert away.mean() > 0.1  # the backdrop is the clip's own picture
    assert np.abs(masked[away].astype(float) - orig[away].astype(float)).mean() < 6

    ra = inst[inst.task == "ra2v"].iloc[0]
    drive = load_audio(ra.driving_audio, 16000)
    speech = load_audio(sources.clip_path[ra.instance_id], 16000)
    assert abs(len(drive) - len(speech)) <= 1 and probe(ra.driving_audio).channels == 1
    n = min(len(drive), len(speech))
    assert np.corrcoef(drive[:n], speech[:n])[0, 1] > 0.999


def test_without_a_crosspair_run_a_person_is_known_in_one_video(inpair_offline_run,
                                                                  truth, tmp_path):
    # draw a face the corpus shows in several videos: without matches only its own video's
    # clip goes to the benchmark, and the output says the rest may be in training
    many = {f for f in truth.values() if sum(v == f for v in truth.values()) >= 2}
    cur = load_curation([inpair_offline_run])

    seed = next(x for x in range(200) if any(
        truth.get(i) in many for i in drawn_members(cur, None, x, costars="keep")))
    res = build_benchmark([inpair_offline_run], tmp_path / "b",
                          options=BuildOptions(persons=1, seed=seed, costars="keep",
                                               mix={"r2av": 1}), progress=False)
    held = res.heldout[res.heldout.held_out]
    assert len(held) == 1  # the person is that one identity: nothing joins it to others
    assert res.summary.details["benchmark_videos"] == 1 and len(res.instances) == 1
    assert res.summary.details["crosspair"] is None
    assert NO_CROSSPAIR in "\n".join(res.summary.lines())
    face = truth[held.identity_id.iloc[0]]
    assert face in many  # the same face in another video stays trainable: the limitation


def test_by_default_everyone_in_a_benchmark_clip_is_held_out(inpair_offline_run,
                                                             crosspair_matches, tmp_path):
    seed = seed_for(inpair_offline_run, crosspair_matches, spans_videos)
    res = build_benchmark([inpair_offline_run], tmp_path / "b", crosspair=crosspair_matches,
                          options=BuildOptions(persons=1, seed=seed), progress=False)
    held = res.heldout
    assert held.held_out.all()
    d = res.summary.details["persons"]
    assert d["drawn"] == 1 and d["joined_by_closure"] == d["held_out"] - 1 > 0
    joined = held[~held.reason.str.startswith("drawn")]
    assert joined.reason.str.match(r"in benchmark clip \w+, which shows held-out person-").all()
    assert f"{d['joined_by_closure']} joined (seen in a benchmark clip)" in \
        "\n".join(res.summary.lines())
    # closed: no trainable sample shows a person of the benchmark, by any identity of theirs
    samples = read_manifest(inpair_offline_run / "samples.parquet", "samples")
    h = choose_heldout(load_curation([inpair_offline_run]), read_matches(crosspair_matches),
                       BuildOptions(persons=1, seed=seed))
    bench_persons = {h.person_of[i] for i in held.identity_id}
    trainable = samples[~samples.clip_id.isin(set(held.clip_id))]
    assert not {h.person_of[i] for ids in trainable.identity_ids for i in ids} & bench_persons
    # the paper's task mix, dealt per set: R2AV : RV2AV : RA2V = 2 : 1 : 1 within one each
    for set_name, g in res.instances.groupby(res.instances.instance_id.str.split("_").str[0]):
        n = len(g)
        for task, share in (("r2av", 0.5), ("rv2av", 0.25), ("ra2v", 0.25)):
            assert abs((g.task == task).sum() - share * n) < 1, (set_name, task)


def copy_run(run: Path, dst: Path) -> Path:
    shutil.copytree(run, dst, ignore=shutil.ignore_patterns("_results", "report.html"))
    return dst


def test_every_clip_of_a_held_out_video_goes_to_the_benchmark(inpair_offline_run, tmp_path):
    """A video curated into two clips: the person of the second clip is another identity,
    unmatched (cross-pair retrieval only matches across videos); drawing the first clip's
    person takes both clips, and (costars: holdout) whoever the second clip shows."""
    run = copy_run(inpair_offline_run, tmp_path / "run")
    tables = {t: read_manifest(run / f"{t}.parquet", t)
              for t in ("samples", "clips", "identities", "references")}
    samples = tables["samples"]
    s = samples[[len(x) == 1 for x in samples.identity_ids]].iloc[0]
    clip = tables["clips"].set_index("clip_id").loc[s.clip_id]
    ident = s.identity_ids[0]
    new_clip, new_ident = "c2" + s.clip_id[2:], "i2" + ident[2:]
    clips = tables["clips"]
    row = clips[clips.clip_id == s.clip_id].assign(clip_id=new_clip,
                                                   start_s=clip.start_s + 0.5,
                                                   end_s=clip.end_s + 0.5)
    idents = tables["identities"]
    irow = idents[idents.identity_id == ident].assign(identity_id=new_ident, clip_id=new_clip)
    refs = tables["references"]
    rrows = refs[refs.identity_id == ident].assign(identity_id=new_ident,
                                                   source_clip_id=new_clip)
    rrows["reference_id"] = ["r2" + r[2:] for r in rrows.reference_id]
    srow = samples[samples.sample_id == s.sample_id].copy()
    srow["sample_id"] = "s2" + s.sample_id[2:]
    srow["clip_id"] = new_clip
    srow["identity_ids"] = [[new_ident]]
    srow["image_reference_ids"] = [[r for r, k in zip(rrows.reference_id, rrows.kind,
                                                      strict=True) if k == "image"]]
    srow["audio_reference_ids"] = [[r for r, k in zip(rrows.reference_id, rrows.kind,
                                                      strict=True) if k == "audio"]]
    for t, df, extra in (("clips", clips, row), ("identities", idents, irow),
                         ("references", refs, rrows), ("samples", samples, srow)):
        write_manifest(pd.concat([df, extra], ignore_index=True), t, run / f"{t}.parquet")
    cur = load_curation([run])
    seed = next(x for x in range(200) if ident in drawn_members(cur, None, x))
    res = build_benchmark([run], tmp_path / "b", options=BuildOptions(
        persons=1, seed=seed, mix={"r2av": 1}), progress=False)
    src = read_manifest(res.out / "bench_sources.parquet", "bench_sources")
    assert set(src.sample_id) == {s.sample_id, "s2" + s.sample_id[2:]}
    held = res.heldout.set_index("identity_id")
    assert held.reason[ident].startswith("drawn")
    assert held.reason[new_ident] == (f"in benchmark clip {new_clip}, which is in video "
                                      f"{clip.video_id} with held-out {held.person_id[ident]}")
    assert held.held_out.all() and res.summary.details["benchmark_videos"] == 1
    assert res.summary.details["benchmark_clips"] == 2


def test_a_broken_sample_is_an_error_row_and_the_rest_is_built(inpair_offline_run, tmp_path):
    run = copy_run(inpair_offline_run, tmp_path / "run")
    samples = read_manifest(run / "samples.parquet", "samples")
    refs = read_manifest(run / "references.parquet", "references").set_index("reference_id")
    victim = samples.iloc[0]
    (run / refs.path[victim.image_reference_ids[0]]).unlink()
    res = build_benchmark([run], tmp_path / "b", options=BuildOptions(
        fraction=1.0, costars="keep", mix={"r2av": 1}), progress=False)
    assert len(res.errors) == 1 and res.errors.stage.iloc[0] == "build"
    bad = res.errors.item.iloc[0]
    assert bad.endswith(f"{victim.sample_id}-r2av")
    assert refs.path[victim.image_reference_ids[0]] in res.errors.reason.iloc[0]
    set_name, case = bad.split("_", 1)
    assert not (res.out / set_name / "imgs" / case).exists()
    assert not (res.out / set_name / "audios" / case).exists()
    inst, errors = import_released(res.out)
    assert errors.empty and len(inst) == len(samples) - 1 == len(res.instances)
    assert res.summary.items["failed"] == 1
    assert res.summary.errors_by_stage == {"build": 1}


def test_a_rebuild_replaces_the_last_and_a_foreign_folder_is_refused(inpair_offline_run,
                                                                      tmp_path):
    out = tmp_path / "b"
    first = build_benchmark([inpair_offline_run], out, options=BuildOptions(
        fraction=1.0, costars="keep", mix={"r2av": 1}), progress=False)
    second = build_benchmark([inpair_offline_run], out, options=BuildOptions(
        persons=1, seed=0, costars="keep", mix={"ra2v": 1}), progress=False)
    assert len(first.instances) == 6 and set(second.instances.task) == {"ra2v"}
    assert "WARNING: no sample is left for training" in "\n".join(first.summary.lines())
    assert "WARNING" not in "\n".join(second.summary.lines())
    inst, _ = import_released(out)
    assert sorted(inst.instance_id) == sorted(second.instances.instance_id)
    again = build_benchmark([inpair_offline_run], out, options=BuildOptions(
        persons=1, seed=0, costars="keep", mix={"ra2v": 1}), progress=False)
    assert sorted_rows(again.instances) == sorted_rows(second.instances)
    assert again.summary.result_key == second.summary.result_key
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(OmniError, match="not empty and holds no benchmark build"):
        build_benchmark([inpair_offline_run], foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


def test_three_people_go_to_threeip(inpair_offline_run, tmp_path):
    """The corpus's three-person clips have two speakers (a sample of two subjects and a
    silent face). Here the silent face becomes a third subject, its references made from the
    corpus clip (its face at a detection, a stretch of the clip's sound): a real three-person
    sample of the curation's shape."""
    run = copy_run(inpair_offline_run, tmp_path / "run")
    samples = read_manifest(run / "samples.parquet", "samples")
    idents = read_manifest(run / "identities.parquet", "identities")
    tracks = read_manifest(run / "face_tracks.parquet", "face_tracks").set_index("track_id")
    refs = read_manifest(run / "references.parquet", "references")
    per_clip = idents.groupby("clip_id").identity_id.apply(list)
    i = next(k for k, s in enumerate(samples.itertuples())
             if len(per_clip[s.clip_id]) == 3 and len(s.identity_ids) == 2)
    s = samples.iloc[i]
    silent = next(x for x in per_clip[s.clip_id] if x not in set(s.identity_ids))
    t = tracks.loc[idents.set_index("identity_id").track_ids[silent][0]]
    frame_idx, box = int(t.frame_indices[0]), [float(v) for v in t.boxes[0]]
    frame = read_frames(run / s.clip_path, [frame_idx])[0]
    x0, y0, x1, y1 = (int(v) for v in box)
    img_rel = f"references/extra/{silent}.png"
    write_image(run / img_rel, np.ascontiguousarray(frame[max(y0, 0):y1, max(x0, 0):x1]))
    wav_rel = f"references/extra/{silent}.wav"
    write_wav(run / wav_rel, load_audio(run / s.clip_path, 16000)[16000:40000], 16000)
    img_id, wav_id = stable_id("img", silent), stable_id("wav", silent)
    extra = pd.DataFrame([
        {"reference_id": img_id, "identity_id": silent, "kind": "image", "path": img_rel,
         "source_clip_id": s.clip_id, "frame_index": frame_idx, "box": box, "start_s": None,
         "end_s": None, "augment": None},
        {"reference_id": wav_id, "identity_id": silent, "kind": "audio", "path": wav_rel,
         "source_clip_id": s.clip_id, "frame_index": None, "box": None, "start_s": 1.0,
         "end_s": 2.5, "augment": None}])
    write_manifest(pd.concat([refs, extra], ignore_index=True), "references",
                   run / "references.parquet")
    cap = parse_caption(read_caption_text(run / s.caption_path))
    cap.image_captions["<img3>"] = "A person who does not speak, identified as <sub3>."
    (run / s.caption_path).write_text(json.dumps({"caption": cap.render()}))
    three = s.to_dict()
    three.update(identity_ids=[*s.identity_ids, silent],
                 image_reference_ids=[*s.image_reference_ids, img_id],
                 audio_reference_ids=[*s.audio_reference_ids, wav_id],
                 mask_frames=[*s.mask_frames, frame_idx], mask_boxes=[*s.mask_boxes, box],
                 mask_spans=[*s.mask_spans, [1.0, 2.5]])
    write_manifest(pd.DataFrame([three]), "samples", run / "samples.parquet")

    res = build_benchmark([run], tmp_path / "b", options=BuildOptions(
        persons=1, costars="keep", every_task=True), progress=False)
    assert res.errors.empty and len(res.instances) == 3
    assert all(i.startswith("threeip_") for i in res.instances.instance_id)
    inst, errors = import_released(res.out)
    assert errors.empty and sorted_rows(inst) == sorted_rows(res.instances)
    for row in inst.itertuples():
        assert row.split == "M"
        assert [Path(p).name for p in row.image_refs] == ["0.png", "1.png", "2.png"]
        assert [Path(p).name for p in row.audio_refs] == ["0.wav", "1.wav", "2.wav"]
        assert len(parse_caption(row.caption).subjects) == 3
    assert Path(inst.image_refs.iloc[0][2]).read_bytes() == (run / img_rel).read_bytes()
    # the masked source greys the third subject's head as well
    rv = inst[inst.task == "rv2av"].iloc[0]
    masked = read_frames(rv.source_video, [frame_idx])[0]
    core = masked[y0 + 4:y1 - 4, max(x0, 0) + 4:x1 - 4].astype(float)
    assert np.abs(core - 128).mean() < 3


def test_options_are_checked():
    assert parse_mix("r2av=2, rv2av=1,ra2v=1") == {"r2av": 2.0, "rv2av": 1.0, "ra2v": 1.0}
    assert parse_mix("4:3:3") == {"r2av": 4.0, "rv2av": 3.0, "ra2v": 3.0}
    with pytest.raises(OmniError, match="TASK=WEIGHT"):
        parse_mix("t2v=1")
    with pytest.raises(OmniError, match="positive weight"):
        BuildOptions(mix={"r2av": 0})
    with pytest.raises(OmniError, match="--fraction"):
        BuildOptions(fraction=0.0)
    with pytest.raises(OmniError, match="--costars"):
        BuildOptions(costars="drop")


def test_cli_build_and_its_refusals(inpair_offline_run, crosspair_matches, tmp_path, capsys):
    out = tmp_path / "b"
    argv = ["benchmark", "build", "--curation", str(inpair_offline_run), "--crosspair",
            str(crosspair_matches), "--out", str(out), "--persons", "1", "--mix", "r2av=1",
            "--costars", "keep", "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "benchmark: " in printed
    assert "held out: 1 person(s), drawn of the 6 with a sample" in printed
    assert f"pass --heldout {out} to `omni latents` / `omni train`" in printed
    assert NO_CROSSPAIR not in printed
    assert main([*argv[:6], "--out", str(tmp_path / "c"), "--persons", "99", "--quiet"]) == 1
    assert "the runs have 6 person(s) with a sample" in capsys.readouterr().err
    assert main(["benchmark", "build", "--curation", str(tmp_path), "--out",
                 str(tmp_path / "d")]) == 1
    assert "not an in-pair curation run" in capsys.readouterr().err
    assert main([*argv[:6], "--crosspair", str(tmp_path), "--out", str(tmp_path / "e")]) == 1
    assert "not a cross-pair run" in capsys.readouterr().err
    assert main([*argv[:2], "--curation", str(crosspair_matches), "--out",
                 str(tmp_path / "f")]) == 1
    assert "give the runs of `omni curate inpair` as --curation" in capsys.readouterr().err


def test_a_run_without_samples_is_an_error(inpair_offline_run, tmp_path):
    run = copy_run(inpair_offline_run, tmp_path / "run")
    write_manifest(read_manifest(run / "samples.parquet", "samples").iloc[:0], "samples",
                   run / "samples.parquet")
    with pytest.raises(OmniError, match="no sample"):
        build_benchmark([run], tmp_path / "b", progress=False)


def test_caption_subjects_must_match_the_references(inpair_offline_run, tmp_path):
    run = copy_run(inpair_offline_run, tmp_path / "run")
    samples = read_manifest(run / "samples.parquet", "samples")
    s = samples[[len(x) == 1 for x in samples.identity_ids]].iloc[0]
    cap = StructuredCaption(joint="<sub1> says, <S>hi<E> <sub2> says, <S>there<E>")
    (run / s.caption_path).write_text(json.dumps(cap.render()))
    res = build_benchmark([run], tmp_path / "b", options=BuildOptions(
        fraction=1.0, costars="keep", mix={"r2av": 1}), progress=False)
    assert list(res.errors.item) == [f"oneip_{s.sample_id}-r2av"]
    assert "caption names 2 subject(s), the sample has 1" in res.errors.reason.iloc[0]
