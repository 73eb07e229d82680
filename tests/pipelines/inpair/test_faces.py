"""Stage 3 of in-pair curation: face detection, tracking, quality filters, identities.

Real faces in the sample corpus' real clips found by the classical LBP backend, embedded by the
debug (random) ArcFace through insightface's own classes; the debug SCRFD runs the reference
detector's code path. Frames are sampled at 2 fps here (5 by default) to keep the file fast.
"""

from __future__ import annotations

import cv2
import numpy as np
import pandas as pd
import pytest

from omni_core.manifests import get_schema
from omni_core.media import read_frames
from omni_core.models.face import box_iou, face_model_class
from pipelines.inpair.faces import (
    FaceOptions,
    analyze_faces,
    cluster_tracks,
    face_sharpness,
    identity_rows,
    reject_kinds,
    track_rows,
)

FPS = 25.0
LBP = FaceOptions(backend="lbp", sample_fps=2.0)
MULTI = ("talk02_2p", "talk04_3p", "talk05_3p")


@pytest.fixture(scope="module")
def model():
    return face_model_class("buffalo_l").debug(0)


@pytest.fixture(scope="module")
def frames(sample_corpus):
    cache: dict[str, np.ndarray] = {}

    def get(name: str) -> np.ndarray:
        if name not in cache:
            cache[name] = read_frames(sample_corpus.out / "talking" / f"{name}.mp4")
        return cache[name]

    return get


@pytest.fixture(scope="module")
def lbp_results(frames, model):
    return {name: analyze_faces(frames(name), FPS, model, LBP) for name in MULTI}


def _validate(name: str, rows: list[dict]) -> pd.DataFrame:
    schema = get_schema(name)
    return schema.to_table(pd.DataFrame(rows, columns=schema.column_names)).to_pandas()


@pytest.mark.parametrize("name", MULTI)
def test_lbp_finds_tracks_and_one_identity_per_person(name, sample_corpus, lbp_results):
    result = lbp_results[name]
    people = pd.read_parquet(sample_corpus.people_table)
    people = people[people.file == f"talking/{name}.mp4"]
    assert len(result.identities) == len(people) == int(name[-2])
    person_identity = {}
    for p in people.itertuples():
        truth = np.asarray(p.face_box, dtype=np.float64)
        hits: dict[int, int] = {}  # identity -> sampled frames where it covers the person
        for t in result.tracks:
            if not t.passed:
                continue
            n = sum(box_iou(b, truth) >= 0.5 for b in t.boxes)
            hits[t.identity] = hits.get(t.identity, 0) + n
        best = max(hits, key=hits.get)
        recall = hits[best] / len(result.sampled)
        assert recall >= 0.8, (p.person, recall)  # found and tracked for most of the clip
        person_identity[p.person] = best
    assert sorted(person_identity.values()) == list(range(len(people)))  # one each
    for t in result.tracks:  # what passed is a face of the clip, and big and sharp enough
        if t.passed:
            assert t.min_face_px >= 100 and t.median_sharpness >= LBP.min_sharpness
            assert t.duration_s >= LBP.min_track_s
            assert np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-5)
        else:
            assert t.reject_reason and t.identity is None


def test_rows_validate_and_ids_are_deterministic(frames, model, lbp_results):
    result = lbp_results["talk04_3p"]
    tracks = _validate("face_tracks", track_rows("clip-a", result))
    idents = _validate("identities", identity_rows("clip-a", result))
    assert tracks.track_id.is_unique and idents.identity_id.is_unique
    assert len(idents) == 3 and idents.speaker.isna().all()
    passed = tracks[tracks.passed]
    assert passed.identity_id.notna().all() and tracks[~tracks.passed].identity_id.isna().all()
    assert passed.reject_reason.isna().all()
    for ident in idents.itertuples():  # the two tables point at each other
        members = tracks[tracks.identity_id == ident.identity_id]
        assert sorted(members.track_id) == sorted(ident.track_ids)
    for row in passed.itertuples():
        assert len(row.frame_indices) == len(row.boxes) == len(row.det_scores)
        assert np.all(np.diff(row.frame_indices) > 0)
    short = frames("talk04_3p")[:60]
    once, again = (analyze_faces(short, FPS, model, LBP) for _ in range(2))
    assert track_rows("clip-a", again) == track_rows("clip-a", once)
    assert identity_rows("clip-a", again) == identity_rows("clip-a", once)
    assert len(once.identities) == 3
    other = {r["track_id"] for r in track_rows("clip-b", result)}
    assert other.isdisjoint(set(tracks.track_id))  # ids are per clip


def test_debug_scrfd_path_runs_and_rows_validate(frames, model):
    clip = frames("talk05_3p")[:50]
    result = analyze_faces(clip, FPS, model, FaceOptions(backend="scrfd", sample_fps=5.0))
    assert result.options.backend == "scrfd"
    assert result.sampled.tolist() == [2, 7, 12, 17, 22, 27, 32, 37, 42, 47]
    assert result.tracks  # the debug detector gives boxes on every image (not faces)
    _validate("face_tracks", track_rows("clip-s", result))
    _validate("identities", identity_rows("clip-s", result))
    for t in result.tracks:
        assert t.passed == (t.reject_reason is None)
        assert set(t.frame_indices.tolist()) <= set(result.sampled.tolist())


def test_small_face_rejected_with_reason(frames, model):
    small = np.stack([cv2.resize(f, (320, 180), interpolation=cv2.INTER_AREA)
                      for f in frames("talk00_1p")[:60]])
    result = analyze_faces(small, FPS, model, LBP)
    assert len(result.tracks) == 1 and not result.tracks[0].passed
    assert result.tracks[0].reject_reason.startswith("small_face")
    assert result.identities == []
    looser = analyze_faces(small, FPS, model, FaceOptions(backend="lbp", sample_fps=2.0,
                                                          min_face_px=60))
    assert looser.tracks[0].passed and len(looser.identities) == 1
    row = track_rows("c", result)[0]
    assert row["min_face_px"] < 100 and "small_face" in row["reject_reason"]


def test_blurred_copy_rejected(frames, model):
    clip = frames("talk00_1p")[:60]
    sharp = analyze_faces(clip, FPS, model, LBP)
    assert [t.passed for t in sharp.tracks] == [True]
    blurred = np.stack([cv2.GaussianBlur(f, (0, 0), 2.0) for f in clip])
    result = analyze_faces(blurred, FPS, model, LBP)
    assert result.tracks and not any(t.passed for t in result.tracks)
    assert all("blurred" in t.reject_reason for t in result.tracks)
    assert max(t.median_sharpness for t in result.tracks) < LBP.min_sharpness
    box = sharp.tracks[0].boxes[0]
    assert face_sharpness(clip[0], box) > 3 * face_sharpness(blurred[0], box)


def test_same_person_after_a_gap_is_one_identity(frames, model):
    clip = frames("talk00_1p")[:150].copy()
    clip[50:100] = 128  # 2 s without the face: longer than max_gap_s, so two tracks
    result = analyze_faces(clip, FPS, model, LBP)
    assert len(result.tracks) == 2 and all(t.passed for t in result.tracks)
    assert result.tracks[0].frame_indices[-1] < 50 <= 100 <= result.tracks[1].frame_indices[0]
    assert [i.tracks for i in result.identities] == [(0, 1)]
    strict = analyze_faces(clip, FPS, model, FaceOptions(backend="lbp", sample_fps=2.0,
                                                         identity_threshold=1.0))
    assert [i.tracks for i in strict.identities] == [(0,), (1,)]


def test_cluster_tracks_average_linkage_with_cannot_link():
    e = np.array([[1.0, 0.0, 0.0], [0.95, 0.1, 0.0], [0.0, 1.0, 0.0], [0.1, 0.9, 0.1],
                  [0.0, 0.0, 1.0]])
    free = np.zeros((5, 5), dtype=bool)
    assert cluster_tracks(e, free, 0.5) == [[0, 1], [2, 3], [4]]
    assert cluster_tracks(e, free, -1.0) == [[0, 1, 2, 3, 4]]
    linked = free.copy()
    linked[0, 1] = linked[1, 0] = True  # seen together: two people however alike
    assert cluster_tracks(e, linked, 0.5) == [[0], [1], [2, 3], [4]]
    assert cluster_tracks(np.zeros((0, 3)), np.zeros((0, 0), bool), 0.5) == []


def test_options_are_checked():
    with pytest.raises(ValueError, match="backend"):
        FaceOptions(backend="haar")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_fps"):
        FaceOptions(sample_fps=0)
    with pytest.raises(ValueError, match="det_thresh"):
        FaceOptions(det_thresh=1.5)
    assert FaceOptions().to_dict()["min_face_px"] == 100.0


def test_bad_frames_raise_one_clear_error(model):
    from omni_core.errors import OmniError

    with pytest.raises(OmniError, match="RGB uint8"):
        analyze_faces(np.zeros((4, 32, 32), np.uint8), FPS, model, LBP)
    empty = analyze_faces(np.zeros((0, 32, 32, 3), np.uint8), FPS, model, LBP)
    assert empty.tracks == [] and empty.identities == []


def test_reject_kinds_reads_a_reject_reason():
    assert reject_kinds("small_face 40px < 64px; blurred x; small_face y") == [
        "small_face", "blurred"]
    assert reject_kinds(None) == [] and reject_kinds("") == []
    assert reject_kinds(float("nan")) == []  # a null read back from Parquet by pandas
