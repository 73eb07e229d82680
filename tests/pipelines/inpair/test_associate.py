"""Stage 4 of in-pair curation: speaker <-> face association.

``assign`` is checked on hand-made matrices. Both backends run on the sample corpus' real
clips (decoded with omni_core.media): the motion backend must pair every speaker with the
right face; the SyncNet backend runs end to end on a debug (random) SyncNet, so only the shape
of its output and its agreement with the evaluator's Sync-C are checked, not its values.
Face tracks and speaker turns come from the corpus' ground truth (test doubles standing in
for the face-tracking and diarization stages).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from omni_core.manifests import read_manifest
from omni_core.media import load_audio, read_frames
from omni_core.models.diarizer import Turn
from omni_core.models.syncnet import SyncNet, sync_scores_from_boxes
from omni_core.samples.corpus import CLIP_PEOPLE
from pipelines.inpair.associate import (
    AssociateOptions,
    assign,
    associate,
    dense_boxes,
    frame_activity,
    merge_dense,
    pair_scores_motion,
    pair_scores_syncnet,
    smooth_boxes,
    speaker_order,
)

CLIPS = [f"talking/talk{i:02d}_{n}p.mp4" for i, n in enumerate(CLIP_PEOPLE)]
MOTION = AssociateOptions(backend="motion")
SYNC = AssociateOptions(backend="syncnet")  # syncnet backend, Sync-C floor 3, margin 1


# --------------------------------------------------------------------------------------------
# assign, by hand


def test_assign_2x2_diagonal():
    a = assign(np.array([[5.0, 1.0], [2.0, 6.0]]), SYNC)
    assert a.pairs == ((0, 0), (1, 1))
    assert a.scores == (5.0, 6.0)
    # (0,0): alternatives row 0 -> 1, column 0 -> 2; (1,1): row 1 -> 2, column 1 -> 1
    assert a.margins == (3.0, 4.0)
    assert a.best == 6.0 and a.kept and a.filtered is None and not a.ambiguous


def test_assign_maximises_the_total_not_greedily():
    # greedy would take 5 then 1 (total 6); the optimum is 4 + 4 = 8
    a = assign(np.array([[5.0, 4.0], [4.0, 1.0]]), SYNC)
    assert a.pairs == ((0, 1), (1, 0))
    assert a.margins == (-1.0, -1.0)  # each chosen 4 has a 5 as alternative
    assert a.ambiguous and not a.kept and a.filtered is None


def test_assign_3x3():
    a = assign(np.array([[9.0, 1.0, 2.0], [1.0, 2.0, 8.0], [2.0, 7.0, 1.0]]), SYNC)
    assert a.pairs == ((0, 0), (1, 2), (2, 1))
    assert a.margins == (7.0, 6.0, 5.0)
    assert a.labelled(["x", "y", "z"]) == {"x": 0, "y": 2, "z": 1}
    assert a.track_of() == {0: 0, 1: 2, 2: 1}


def test_assign_more_faces_than_speakers():
    m = np.array([[1.0, 8.0, 2.0], [7.0, 1.0, 6.5]])
    a = assign(m, SYNC)
    assert a.pairs == ((0, 1), (1, 0))  # track 2 (a listener) stays unassigned
    assert a.margins == (6.0, 0.5)  # speaker 1's runner-up is the unassigned track 2
    assert a.ambiguous  # 0.5 < the syncnet default margin 1.0
    assert not assign(m, AssociateOptions(backend="syncnet", min_margin=0.4)).ambiguous


def test_assign_more_speakers_than_faces():
    a = assign(np.array([[8.0, 1.0], [1.0, 7.0], [5.0, 5.0]]), SYNC)
    assert a.pairs == ((0, 0), (1, 1))  # speaker 2 has no face
    assert a.margins == (3.0, 2.0)
    assert a.kept


def test_assign_ties_are_ambiguous_and_deterministic():
    m = np.full((2, 2), 5.0)
    a, b = assign(m, SYNC), assign(m, SYNC)
    assert a == b
    assert sorted(s for s, _ in a.pairs) == [0, 1] and sorted(t for _, t in a.pairs) == [0, 1]
    assert a.margins == (0.0, 0.0) and a.ambiguous


def test_assign_filters_low_confidence_per_backend():
    a = assign(np.array([[2.0, 0.5], [0.1, 2.9]]), SYNC)
    assert a.pairs == ((0, 0), (1, 1)) and a.best == 2.9
    assert a.filtered is not None and "Sync-C" in a.filtered and "below 3" in a.filtered
    assert not a.kept
    relaxed = AssociateOptions(backend="syncnet", min_sync_conf=1.5)
    assert assign(np.array([[2.0, 0.5]]), relaxed).filtered is None
    low = assign(np.array([[0.08, -0.1]]), MOTION)  # best below the 0.1 floor
    assert low.filtered is not None and "motion correlation" in low.filtered
    one = assign(np.array([[0.5]]), MOTION)  # one speaker, one face: nothing to confuse
    assert one.margins == (math.inf,) and one.kept


def test_assign_skips_unscored_pairs():
    a = assign(np.array([[np.nan, 4.0], [np.nan, np.nan]]), SYNC)
    assert a.pairs == ((0, 1),) and a.margins == (math.inf,) and a.kept
    # NaN is no alternative: (0,0) beats only the scored 1.0 in its column
    b = assign(np.array([[6.0, np.nan], [1.0, np.nan]]), SYNC)
    assert b.pairs == ((0, 0),) and b.margins == (5.0,)
    assert "pair could be scored" in assign(np.full((2, 2), np.nan), SYNC).filtered
    assert assign(np.zeros((0, 2)), SYNC).filtered == "no speakers"
    assert assign(np.zeros((2, 0)), SYNC).filtered == "no face tracks"
    with pytest.raises(ValueError, match="matrix"):
        assign(np.array([1.0, 2.0]), SYNC)


def test_options_validate_and_resolve_defaults():
    with pytest.raises(ValueError, match="backend"):
        AssociateOptions(backend="lips")
    assert SYNC.margin == 1.0 and SYNC.min_conf == 3.0
    assert MOTION.margin == 0.1 and MOTION.min_conf == MOTION.min_motion_corr
    assert AssociateOptions(backend="motion", min_margin=0.3).margin == 0.3


def test_frame_activity_uses_frame_centres():
    act = frame_activity([("a", 0.0, 0.1), ("b", 0.1, 0.2), ("a", 0.19, 0.3)], ["a", "b", "c"],
                         8, 25.0)
    # frame f is centred at (f + 0.5) / 25: 0.02, 0.06, 0.10, 0.14, 0.18, 0.22, 0.26, 0.30
    assert act[0].tolist() == [1, 1, 0, 0, 0, 1, 1, 0]
    assert act[1].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert not act[2].any()
    turns = [Turn("b", 0.1, 0.2), Turn("a", 0.0, 0.1)]  # stage 2's turns are accepted as is
    assert speaker_order(turns) == ["a", "b"]
    assert (frame_activity(turns, ["a", "b"], 8, 25.0)[1] == act[1]).all()


def test_syncnet_backend_resamples_to_25_fps():
    """Frames at 24 fps are brought to 25 fps (ffmpeg -r 25 slots) before SyncNet sees them."""
    from omni_core.models.syncnet import frame_indices_for_fps

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (36, 64, 64, 3), dtype=np.uint8)
    boxes = np.tile([16.0, 16.0, 48.0, 48.0], (36, 1))
    audio = rng.normal(0, 0.1, 24000).astype(np.float32)
    model, segs = SyncNet.debug(0), [("a", 0.0, 9.0)]
    got = pair_scores_syncnet(frames, 24.0, [boxes], audio, segs, model, SYNC)
    idx = frame_indices_for_fps(36, 24.0)
    assert len(idx) == 38
    want = pair_scores_syncnet(frames[idx], 25.0, [boxes[idx]], audio, segs, model, SYNC)
    as_if_25 = pair_scores_syncnet(frames, 25.0, [boxes], audio, segs, model, SYNC)
    assert got[0, 0] == want[0, 0] and np.isfinite(got[0, 0])
    assert got[0, 0] != as_if_25[0, 0]


# --------------------------------------------------------------------------------------------
# the sample corpus, with ground-truth stand-ins for the face and diarization stages


def truth_tracks_double(people, name: str, n_frames: int) -> list[np.ndarray]:
    """Test double for face tracking: each person's static ground-truth face box, p0, p1..."""
    rows = people[people.file == name].sort_values("person")
    return [np.tile(np.asarray(b, dtype=np.float64), (n_frames, 1)) for b in rows.face_box]


def truth_segments_double(turns, name: str) -> list[tuple[str, float, float]]:
    """Test double for diarization: the generated turns (who speaks when) of one clip."""
    rows = turns[(turns.file == name) & (turns.source == "generated")]
    return [(r.speaker, float(r.start_s), float(r.end_s)) for r in rows.itertuples()]


@pytest.fixture(scope="module")
def corpus(sample_corpus):
    """name -> (frames, audio16k, tracks double, segments double) for every talking clip."""
    people = read_manifest(sample_corpus.people_table)
    turns = read_manifest(sample_corpus.turns_table)
    out = {}
    for name in CLIPS:
        path = sample_corpus.out / name
        frames = read_frames(path)
        out[name] = (frames, load_audio(path, 16000),
                     truth_tracks_double(people, name, len(frames)),
                     truth_segments_double(turns, name))
    return out


@pytest.mark.parametrize("name", CLIPS)
def test_motion_backend_finds_every_speakers_face(corpus, name):
    frames, audio, tracks, segments = corpus[name]
    names, scores, a = associate(frames, 25.0, tracks, audio, segments, MOTION)
    n = len(tracks)
    assert names == [f"p{i}" for i in range(n)]
    assert scores.shape == (n, n) and np.isfinite(scores).all()
    assert a.labelled(names) == {f"p{i}": i for i in range(n)}
    assert a.kept, (scores, a)
    assert min(a.margins) >= MOTION.margin
    # the right face correlates positively; a wrong face is anti-correlated with that speaker
    assert (np.diag(scores) > MOTION.min_motion_corr).all()
    assert (scores[~np.eye(n, dtype=bool)] < 0).all()


def test_motion_backend_follows_when_people_talk(corpus):
    """Relabelling the turns moves the speakers to other faces: timing decides, not voice."""
    frames, audio, tracks, segments = corpus["talking/talk04_3p.mp4"]
    shift = {"p0": "p1", "p1": "p2", "p2": "p0"}
    relabelled = [(shift[s], a, b) for s, a, b in segments]
    names, _, a = associate(frames, 25.0, tracks, audio, relabelled, MOTION)
    assert a.labelled(names) == {"p1": 0, "p2": 1, "p0": 2}


def test_motion_backend_with_gaps_and_an_empty_track(corpus):
    frames, audio, tracks, segments = corpus["talking/talk05_3p.mp4"]
    gappy = [t.copy() for t in tracks]
    gappy[1][:40] = np.nan  # face 1 found late
    gappy[2][100:130] = np.nan  # face 2 lost for a while
    empty = np.full_like(tracks[0], np.nan)  # a track with no box at all
    scores = pair_scores_motion(frames, 25.0, gappy + [empty], audio, segments, MOTION)
    assert scores.shape == (3, 4) and np.isnan(scores[:, 3]).all()
    a = assign(scores, MOTION)
    assert a.pairs == ((0, 0), (1, 1), (2, 2)) and a.kept


@pytest.fixture(scope="module")
def sync_run(corpus):
    """The SyncNet backend with a debug SyncNet on the first 4.4 s of a 2-person clip (a turn
    of each speaker), rows p0, p1, a speaker with no segment and one talking throughout."""
    frames, audio, tracks, segments = corpus["talking/talk02_2p.mp4"]
    n = 110
    frames, audio, tracks = frames[:n], audio[:n * 640], [t[:n] for t in tracks]
    model = SyncNet.debug(0)
    scores = pair_scores_syncnet(frames, 25.0, tracks, audio, [*segments, ("all", 0.0, 1e9)],
                                 model, SYNC, speakers=["p0", "p1", "ghost", "all"])
    return frames, audio, tracks, model, scores


def test_syncnet_backend_end_to_end_on_debug_weights(sync_run):
    scores = sync_run[-1][:3]
    assert scores.shape == (3, 2)
    assert np.isfinite(scores[:2]).all() and (scores[:2] >= 0).all()  # median - min >= 0
    assert np.isnan(scores[2]).all()  # a speaker with no segment is not scored
    a = assign(scores, SYNC)
    assert len(a.pairs) == 2
    assert sorted(t for _, t in a.pairs) == [0, 1] and all(s < 2 for s, _ in a.pairs)
    assert (a.filtered is not None) == (a.best < SYNC.min_sync_conf)
    assert a.ambiguous == (min(a.margins) < SYNC.margin)


def test_syncnet_pooled_over_the_whole_clip_is_the_evaluators_sync_c(sync_run):
    """A speaker talking throughout pools every window: Sync-C equals the evaluator's."""
    frames, audio, tracks, model, scores = sync_run
    ref = sync_scores_from_boxes(frames, tracks[0], audio, 16000, model, SYNC.sync)
    assert scores[3, 0] == pytest.approx(ref.sync_c, rel=1e-6, abs=1e-9)
    # the speakers' own segments pool fewer windows, hence other curves
    assert scores[0, 0] != pytest.approx(ref.sync_c, rel=1e-6, abs=1e-9)


def test_dense_boxes_interpolate_inside_and_nan_outside():
    d = dense_boxes([2, 6], np.array([[0, 0, 10, 10], [4, 8, 14, 18]], np.float32), 9)
    assert np.isnan(d[:2]).all() and np.isnan(d[7:]).all()
    np.testing.assert_allclose(d[4], [2, 4, 12, 14])
    np.testing.assert_allclose(d[[2, 6]], [[0, 0, 10, 10], [4, 8, 14, 18]])
    assert np.isnan(dense_boxes([], np.zeros((0, 4)), 3)).all()
    other = dense_boxes([7, 8], np.array([[1, 1, 2, 2], [1, 1, 2, 2]]), 9)
    merged = merge_dense([d, other])
    np.testing.assert_allclose(merged[6], d[6])  # the first track keeps its frames
    np.testing.assert_allclose(merged[8], [1, 1, 2, 2])
    assert np.isnan(merged[:2]).all()


def test_smooth_boxes_fixes_size_and_median_filters_centres_per_run():
    rng = np.random.default_rng(0)
    n = 50
    boxes = np.tile([100.0, 100.0, 200.0, 200.0], (n, 1))
    boxes += rng.normal(0, 3, (n, 4))  # detector jitter in position and size
    boxes[20:23] = np.nan  # a gap splits the track into two runs
    out = smooth_boxes(boxes, 25.0, 0.4)
    assert np.isnan(out[20:23]).all() and np.isfinite(out[:20]).all()
    size = out[:, 2:] - out[:, :2]
    for run in (slice(0, 20), slice(23, n)):  # one size per run: its median
        np.testing.assert_allclose(size[run], np.broadcast_to(
            np.median(boxes[run, 2:] - boxes[run, :2], axis=0), size[run].shape))
    centre = (out[:, :2] + out[:, 2:]) / 2
    raw = (boxes[:, :2] + boxes[:, 2:]) / 2
    assert np.nanstd(np.diff(centre[:20], axis=0)) < np.std(np.diff(raw[:20], axis=0))
    np.testing.assert_allclose(smooth_boxes(boxes, 25.0, 0.0), boxes)  # 0 s: unchanged
