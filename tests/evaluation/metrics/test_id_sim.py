"""ArcFace ID-Sim (evaluation.metrics.id_sim): frame sampling and aggregation math, the score
against the reference scripts' loop run on insightface's own FaceAnalysis, and end to end on the
sample corpus. The face models themselves are tested in tests/omni_core/models/test_face.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation.metrics import id_sim as m
from omni_core.models import face as F


@pytest.fixture(scope="module")
def model():
    return F.BuffaloLFaceModel.debug(seed=0)


@pytest.fixture(scope="module")
def clips(talking_frames):
    """Per talking clip: a few ID-Sim frames, the middle frame and the people's face boxes."""
    return [(c.file, c.frames, c.mid, c.face_boxes) for c in talking_frames]


def _crop(frame: np.ndarray, box: np.ndarray, margin: float = 0.3) -> np.ndarray:
    """A reference image: the face box with ``margin`` of its side around it."""
    x0, y0, x1, y1 = box
    mx, my = margin * (x1 - x0), margin * (y1 - y0)
    h, w = frame.shape[:2]
    return np.ascontiguousarray(frame[max(0, int(y0 - my)):min(h, int(y1 + my)),
                                      max(0, int(x0 - mx)):min(w, int(x1 + mx))])


# --------------------------------------------------------------------------------------------
# protocol math


def test_frame_indices_truncate_like_the_reference_scripts():
    # ConsisID: np.linspace(0, total - 1, 16, dtype=int); OpenS2V-Eval: the same with 32
    assert m.IdSimOptions().num_frames == 32
    idx = m.frame_indices(121, m.IdSimOptions(num_frames=16))
    assert idx.tolist() == np.linspace(0, 120, 16, dtype=int).tolist()
    assert idx[1] == 8  # 8.0; and 120 * 7 / 15 = 56.0, 120 * 11 / 15 = 88.0 ...
    idx = m.frame_indices(100, m.IdSimOptions(num_frames=4))
    assert idx.tolist() == [0, 33, 66, 99]  # 66.67 truncates to 66 (rounding would give 67)
    assert m.frame_indices(5, m.IdSimOptions(num_frames=None)).tolist() == [0, 1, 2, 3, 4]


def _unit(*v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def test_single_aggregation_clips_skips_and_averages():
    e1, e2 = _unit(1, 0, 0), _unit(0, 1, 0)
    frames = [e1[None] * 3.0, -e1[None], np.zeros((0, 3)), (0.6 * e1 + 0.8 * e2)[None]]
    r = m.aggregate(e1[None], frames, m.IdSimOptions())
    assert r.score == pytest.approx((1.0 + 0.0 + 0.6) / 3)
    assert r.n_frames == 4 and r.n_frames_skipped == 1
    assert r.faces_per_frame == (1, 1, 0, 1)
    assert math.isnan(r.frame_scores[0, 2]) and r.frame_scores[0, 1] == 0.0
    r = m.aggregate(e1[None], frames, m.IdSimOptions(clip_negative=False))
    assert r.score == pytest.approx((1.0 - 1.0 + 0.6) / 3)


def test_video_without_faces_scores_like_the_reference_or_is_left_out():
    empty = [np.zeros((0, 3))] * 3
    r = m.aggregate(_unit(1, 0, 0)[None], empty, m.IdSimOptions())
    assert r.score == 0.0 and r.n_frames_skipped == 3  # both scripts: 0.0
    r = m.aggregate(_unit(1, 0, 0)[None], empty, m.IdSimOptions(no_face_score=float("nan")))
    assert math.isnan(r.score)


def test_multi_aggregation_matches_each_reference_to_its_best_face():
    e1, e2, e3 = _unit(1, 0, 0), _unit(0, 1, 0), _unit(0, 0, 1)
    frames = [np.stack([e2, e1]),  # both present, in any order: 1 and 1
              e1[None],  # only person 1: ref 2's best face is e1, cos 0
              np.zeros((0, 3)),  # skipped for every reference
              np.stack([_unit(1, 1, 0), e3])]  # ref 1 and ref 2 both best match (1,1,0)/sqrt2
    r = m.aggregate(np.stack([e1, e2]), frames, m.IdSimOptions(), mode="multi")
    s = 1 / math.sqrt(2)
    assert r.per_reference == pytest.approx(((1 + 1 + s) / 3, (1 + 0 + s) / 3))
    assert r.score == pytest.approx(np.mean(r.per_reference))
    assert r.n_frames_skipped == 1 and r.frame_scores.shape == (2, 4)


def test_options_are_validated_and_recordable():
    with pytest.raises(ValueError, match="pack"):
        m.IdSimOptions(pack="buffalo_s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="detector"):
        m.IdSimOptions(detector="mtcnn")  # type: ignore[arg-type]
    d = m.IdSimOptions().to_dict()
    assert d["det_size"] == (320, 320) and d["pack"] == "buffalo_l" and d["pad_retry"]
    assert m.face_model_class("antelopev2") is F.AntelopeV2FaceModel
    assert m.DIRECTION == "higher" and m.VERSION == "1"


# --------------------------------------------------------------------------------------------
# the score against the reference scripts' loop on insightface's own FaceAnalysis



def _consisid_arc_score(app, frames, reference):
    """ConsisID's FaceSim-Arc loop (eval/get_facesim_fid.py), rewritten from its protocol."""
    import cv2

    def area(f):
        return (f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1])

    def largest(bgr):
        faces = app.get(bgr)
        if faces:
            return sorted(faces, key=area)[-1]
        h, w = bgr.shape[:2]
        padded = cv2.copyMakeBorder(bgr, int(h * 0.25), int(h * 0.25), int(w * 0.25),
                                    int(w * 0.25), cv2.BORDER_CONSTANT, value=(128, 128, 128))
        faces = app.get(padded)
        return sorted(faces, key=area)[-1] if faces else None

    ref = largest(np.ascontiguousarray(reference[:, :, ::-1]))
    scores = []
    for frame in frames:
        f = largest(np.ascontiguousarray(frame[:, :, ::-1]))
        if f is None:
            continue
        cos = float(np.dot(ref.embedding, f.embedding)
                    / (np.linalg.norm(ref.embedding) * np.linalg.norm(f.embedding)))
        scores.append(max(0.0, cos))
    return float(np.mean(scores)) if scores else 0.0


@pytest.mark.filterwarnings("ignore:`estimate` is deprecated:FutureWarning")
def test_single_score_equals_the_reference_script_loop(model, face_analysis, clips):
    for _, frames, mid, boxes in clips[::2]:
        reference = _crop(mid, boxes[0])
        ours = m.id_sim_single(frames, reference, model, m.IdSimOptions(num_frames=4))
        assert ours.score == pytest.approx(_consisid_arc_score(face_analysis, frames, reference),
                                           abs=1e-6)


# --------------------------------------------------------------------------------------------
# end to end on the sample corpus


def test_debug_end_to_end_on_sample_corpus(model, clips):
    opts = m.IdSimOptions(num_frames=4)
    modes = set()
    for name, frames, mid, boxes in clips:
        refs = [_crop(mid, b) for b in boxes]
        r = m.id_sim(frames, refs, model, opts)
        modes.add(r.mode)
        assert r.mode == ("single" if len(boxes) == 1 else "multi"), name
        assert 0.0 <= r.score <= 1.0 and math.isfinite(r.score), (name, r.details())
        assert len(r.per_reference) == len(boxes) and r.n_frames == 4
        assert all(0.0 <= s <= 1.0 for s in r.per_reference)
        assert r.frame_scores.shape == (len(boxes), 4)
    assert modes == {"single", "multi"}


def test_deterministic_across_builds(model, clips):
    name, frames, mid, boxes = clips[2]
    refs = [_crop(mid, b) for b in boxes]
    again = F.BuffaloLFaceModel.debug(seed=0)
    a = m.id_sim(frames, refs, model, m.IdSimOptions(num_frames=4))
    b = m.id_sim(frames, refs, again, m.IdSimOptions(num_frames=4))
    assert a.score == b.score and a.per_reference == b.per_reference, name
    np.testing.assert_array_equal(a.frame_scores, b.frame_scores)
    assert (model.folder / model.detector_file).read_bytes() == (
        again.folder / again.detector_file).read_bytes()
    img = frames[0][:112, :112]
    other = F.BuffaloLFaceModel.debug(seed=1)
    assert not np.allclose(model.embed([img]), other.embed([img]))


def test_lbp_end_to_end_and_missing_reference_face(model, clips):
    name, frames, mid, boxes = clips[0]
    opts = m.IdSimOptions(detector="lbp")
    r = m.id_sim_single(frames, _crop(mid, boxes[0]), model, opts)
    assert r.n_frames_skipped == 0 and 0.0 <= r.score <= 1.0, (name, r.details())
    with pytest.raises(F.NoReferenceFaceError, match="no face"):
        m.id_sim_single(frames, np.full((200, 200, 3), 128, np.uint8), model, opts)


def test_pack_mismatch_is_refused(model, clips):
    _, frames, mid, boxes = clips[0]
    with pytest.raises(ValueError, match="antelopev2"):
        m.id_sim_single(frames, mid, model, m.IdSimOptions(pack="antelopev2"))
