"""Cross-pair samples from the corpus: references of the same person from another video, no
masks, readable by ``omni latents``."""

from __future__ import annotations

import pandas as pd

from omni_core.manifests import read_manifest
from omni_core.ray_helpers import shutdown_ray
from omni_model.data import LatentDataset
from omni_model.latents import LatentsConfig, extract_latents
from pipelines.crosspair.identity import RetrievalOptions, find_matches, load_database
from pipelines.crosspair.samples import crosspair_samples, write_crosspair
from pipelines.inpair.score import score_run

#: the debug ArcFace's separation on the corpus (see test_identity.py)
DEBUG_OPTS = RetrievalOptions(threshold=0.93, mutual_top_k=3, min_margin=0.02)


def test_crosspair_samples_take_the_same_person_from_another_video(
        inpair_offline_run, sample_corpus, tmp_path):
    run = inpair_offline_run
    db = load_database([run])
    res = crosspair_samples(run, db, find_matches(db, DEBUG_OPTS))
    inpair = read_manifest(run / "samples.parquet", "samples")
    # measured: 3 of the 6 in-pair samples have every subject matched in another video
    assert len(res.samples) == 3 and sum(res.skipped.values()) == 3
    assert set(res.samples.kind) == {"crosspair"}
    assert set(res.samples.clip_id) <= set(inpair.clip_id)
    clips = read_manifest(run / "clips.parquet", "clips").set_index("clip_id")
    refs = res.references.set_index("reference_id")
    truth = pd.read_parquet(sample_corpus.out / "truth" / "people.parquet")
    source = {(r.file, r.person): r.face_source for r in truth.itertuples()}
    person = {c.identity_id: source.get((c.file, c.face_person))
              for c in score_run(run, sample_corpus.out).identities}
    for s in res.samples.itertuples():
        assert list(s.mask_frames) == [] and list(s.mask_spans) == []
        for k, ident in enumerate(s.identity_ids):
            for ref_id in (s.image_reference_ids[k], s.audio_reference_ids[k]):
                ref = refs.loc[ref_id]
                assert clips.video_id[ref.source_clip_id] != clips.video_id[s.clip_id]
                assert person[ref.identity_id] == person[ident]  # the same face
            assert refs.loc[s.image_reference_ids[k]].kind == "image"
            assert refs.loc[s.audio_reference_ids[k]].kind == "audio"

    out = write_crosspair(run, res, tmp_path / "crosspair")
    try:
        summary = extract_latents(out, tmp_path / "latents", LatentsConfig(), progress=False)
    finally:
        shutdown_ray()
    assert summary.errors == [] and summary.written == 3
    ds = LatentDataset(tmp_path / "latents", micro_batch=1, text_len=16)
    for i in range(3):
        b = ds.load([i])
        assert b.video_mask.sum() == 0 and b.audio_mask.sum() == 0  # stage 2: full loss
