"""SyncNet Sync-C / Sync-D / AV offset (omni_core.models.syncnet) against syncnet_python.

Here the network is checked against the checkpoint layout read from upstream's
``SyncNetModel.py`` (key names and shapes, legacy torch file without ``num_batches_tracked``),
the curve arithmetic against a hand-built distance curve carrying the README's example numbers,
and the debug twin end to end on sample-corpus clips. The whole pipeline is compared with the
executable port on PyPI (syncnet-python 0.2.3) in
tests/evaluation/metrics/test_sync_reference.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import python_speech_features
import torch

from omni_core.errors import OmniError, WeightsError
from omni_core.models import syncnet as S

# --------------------------------------------------------------------------------------------
# the upstream checkpoint layout, transcribed from SyncNetModel.S (syncnet_python @ 6efbb1c)

_CONV = "conv"
_BN = "bn"
UPSTREAM_LAYERS: dict[str, tuple[str, tuple[int, ...]]] = {
    # audio CNN over (1, 13, 20) MFCC windows
    "netcnnaud.0": (_CONV, (64, 1, 3, 3)), "netcnnaud.1": (_BN, (64,)),
    "netcnnaud.4": (_CONV, (192, 64, 3, 3)), "netcnnaud.5": (_BN, (192,)),
    "netcnnaud.8": (_CONV, (384, 192, 3, 3)), "netcnnaud.9": (_BN, (384,)),
    "netcnnaud.11": (_CONV, (256, 384, 3, 3)), "netcnnaud.12": (_BN, (256,)),
    "netcnnaud.14": (_CONV, (256, 256, 3, 3)), "netcnnaud.15": (_BN, (256,)),
    "netcnnaud.18": (_CONV, (512, 256, 5, 4)), "netcnnaud.19": (_BN, (512,)),
    # lip CNN over (3, 5, 224, 224) frame windows (3 colour channels, 5 frames)
    "netcnnlip.0": (_CONV, (96, 3, 5, 7, 7)), "netcnnlip.1": (_BN, (96,)),
    "netcnnlip.4": (_CONV, (256, 96, 1, 5, 5)), "netcnnlip.5": (_BN, (256,)),
    "netcnnlip.8": (_CONV, (256, 256, 1, 3, 3)), "netcnnlip.9": (_BN, (256,)),
    "netcnnlip.11": (_CONV, (256, 256, 1, 3, 3)), "netcnnlip.12": (_BN, (256,)),
    "netcnnlip.14": (_CONV, (256, 256, 1, 3, 3)), "netcnnlip.15": (_BN, (256,)),
    "netcnnlip.18": (_CONV, (512, 256, 1, 6, 6)), "netcnnlip.19": (_BN, (512,)),
    # the two fully connected heads: 512 -> 512 -> BN -> 1024
    "netfcaud.0": (_CONV, (512, 512)), "netfcaud.1": (_BN, (512,)),
    "netfcaud.3": (_CONV, (1024, 512)),
    "netfclip.0": (_CONV, (512, 512)), "netfclip.1": (_BN, (512,)),
    "netfclip.3": (_CONV, (1024, 512)),
}


def upstream_state_dict() -> dict[str, torch.Tensor]:
    """What syncnet_v2.model holds: 88 tensors, no num_batches_tracked (pre-0.4 torch).

    Every tensor gets its own constant so the test can see that each one lands in its slot.
    """
    out: dict[str, torch.Tensor] = {}
    k = 0
    for name, (kind, shape) in UPSTREAM_LAYERS.items():
        if kind == _CONV:
            parts = {"weight": shape, "bias": shape[:1]}
        else:
            parts = {"weight": shape, "bias": shape, "running_mean": shape, "running_var": shape}
        for p, shp in parts.items():
            k += 1
            val = 1.0 if p == "running_var" else k / 1000
            out[f"{name}.{p}"] = torch.full(shp, val)
    return out


def save_legacy(state: dict[str, torch.Tensor], path) -> None:
    """Save like a 2017 torch: the legacy (non-zip) serialisation of a plain dict."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path, _use_new_zipfile_serialization=False)


def test_checkpoint_layout_loads_through_weights_registry(tmp_path):
    state = upstream_state_dict()
    assert len(state) == 88
    save_legacy(state, tmp_path / "syncnet-v2" / "syncnet_v2.model")
    model = S.SyncNet.from_pretrained(root=tmp_path)
    assert not model.is_debug and "syncnet-v2" in model.describe()
    own = model.state_dict()
    assert {k for k in own if not k.endswith("num_batches_tracked")} == set(state)
    for k, v in state.items():
        assert torch.equal(own[k], v), k
    # the full-size network maps the protocol's inputs to the 1024-d space
    with torch.no_grad():
        assert model.embed_lip(torch.zeros(1, 3, 5, 224, 224)).shape == (1, 1024)
        assert model.embed_audio(torch.zeros(1, 1, 13, 20)).shape == (1, 1024)


def test_checkpoint_variants_and_errors(tmp_path):
    state = upstream_state_dict()
    # a SyncNetInstance state dict (``__S__.`` prefix) and a zip-format file load too
    prefixed = {f"__S__.{k}": v for k, v in state.items()}
    torch.save(prefixed, tmp_path / "prefixed.pt")
    m = S.SyncNet.from_state_dict(torch.load(tmp_path / "prefixed.pt", weights_only=True))
    assert torch.equal(m.netfclip[3].bias, state["netfclip.3.bias"])

    with pytest.raises(WeightsError, match="syncnet_v2.model"):
        S.SyncNet.from_pretrained(root=tmp_path / "empty")
    bad = dict(state)
    bad["netcnnlip.0.weight"] = torch.zeros(96, 1, 5, 7, 7)  # grayscale input: wrong net
    with pytest.raises(WeightsError, match=r"netcnnlip\.0\.weight has shape"):
        S.SyncNet.from_state_dict(bad)
    missing = {k: v for k, v in state.items() if not k.startswith("netfcaud")}
    with pytest.raises(WeightsError, match="missing"):
        S.SyncNet.from_state_dict(missing)
    # a pickled nn.Module is refused by weights_only loading (one clear error, no code run)
    save_legacy(S.SyncNet.debug(0), tmp_path / "mod" / "syncnet-v2" / "syncnet_v2.model")
    with pytest.raises(WeightsError, match="safely"):
        S.SyncNet.from_pretrained(root=tmp_path / "mod")


def test_debug_twin_is_the_same_architecture_narrowed():
    a, b = S.SyncNet.debug(3), S.SyncNet.debug(3)
    assert a.is_debug and "not meaningful" in a.describe()
    full_keys = {k for k in S.SyncNet().state_dict() if not k.endswith("num_batches_tracked")}
    tiny = a.state_dict()
    assert {k for k in tiny if not k.endswith("num_batches_tracked")} == full_keys
    for k in tiny:
        assert torch.equal(tiny[k], b.state_dict()[k])
    # same kernels: only channel counts differ
    assert tiny["netcnnlip.0.weight"].shape[2:] == (5, 7, 7)
    assert tiny["netcnnaud.18.weight"].shape[2:] == (5, 4)
    # one pass over a frame sequence = upstream's stack of 5-frame windows
    video = torch.rand(3, 9, 224, 224) * 255
    with torch.no_grad():
        seq = a.embed_lip_sequence(video)
        win = a.embed_lip(torch.stack([video[:, t:t + 5] for t in range(5)]))
    assert seq.shape == (5, 32)
    torch.testing.assert_close(seq, win, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------------------------
# the curve arithmetic


def test_curve_hand_built_reproduces_upstream_example_numbers():
    """A curve with min 5.353 at offset +3 and median 15.374 gives the README's numbers."""
    mean = np.linspace(15.0, 21.0, 31)
    mean[15] = 15.374  # the median of the 31 values (15 below it, 15 above)
    mean[:15] = np.linspace(9.0, 15.2, 15)
    mean[12] = 5.353  # column 12 = offset 15 - 12 = +3
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.5, (40, 31))
    dists = mean + noise - noise.mean(axis=0)  # per-window scatter, same mean curve
    r = S.sync_from_distances(dists, vshift=15)
    assert r.av_offset == 3
    assert r.sync_d == pytest.approx(5.353, abs=1e-9)
    assert r.sync_c == pytest.approx(10.021, abs=1e-9)
    assert r.offsets[12] == 3 and r.offsets[0] == 15 and r.offsets[-1] == -15
    np.testing.assert_allclose(r.mean_dists, mean, atol=1e-12)
    from scipy.signal import medfilt

    np.testing.assert_allclose(r.framewise_conf, medfilt(15.374 - dists[:, 12], 9))
    assert r.n_windows == 40
    assert r.scores() == {"sync_c": r.sync_c, "sync_d": r.sync_d, "av_offset": 3.0}


def test_curve_ties_median_and_shape_checks():
    # first minimum wins (torch.min / argmin); a flat curve has Sync-C 0 and offset +vshift
    r = S.sync_from_distances(np.ones((3, 7)))
    assert (r.av_offset, r.sync_c, r.sync_d) == (3, 0.0, 1.0)
    r = S.sync_from_distances(np.array([4.0, 1.0, 3.0, 1.0, 9.0]))
    assert r.av_offset == 1 and r.sync_c == pytest.approx(3.0 - 1.0)
    with pytest.raises(ValueError):
        S.sync_from_distances(np.ones((3, 6)))
    with pytest.raises(ValueError):
        S.sync_from_distances(np.ones((3, 7)), vshift=15)
    m = S.mean_results([S.sync_from_distances(np.array([2.0, 1.0, 3.0])),
                        S.sync_from_distances(np.array([1.0, 2.0, 5.0]))])
    assert m == {"sync_c": 1.0, "sync_d": 1.0, "av_offset": 0.5}


def test_offset_distances_matches_a_direct_loop_and_sign_convention():
    rng = np.random.default_rng(1)
    n, dim, vshift, k = 30, 8, 5, 2
    audio = rng.normal(size=(n, dim)).astype(np.float32)
    video = rng.normal(size=(n, dim)).astype(np.float32)
    video[k:] = audio[:-k]  # lips at window i match the sound at window i - k
    d = S.offset_distances(video, audio, vshift)
    assert d.shape == (n, 2 * vshift + 1)
    padded = np.concatenate([np.zeros((vshift, dim)), audio, np.zeros((vshift, dim))])
    for i in range(n):
        for j in range(2 * vshift + 1):
            expect = np.linalg.norm(video[i] - padded[i + j] + 1e-6)
            assert d[i, j] == pytest.approx(expect, rel=1e-5)
    r = S.sync_from_distances(d, vshift)
    assert r.av_offset == k  # positive: the sound comes first


# --------------------------------------------------------------------------------------------
# preprocessing: frame rate, MFCC, crops


def test_frame_indices_for_fps():
    np.testing.assert_array_equal(S.frame_indices_for_fps(7, 25), np.arange(7))
    np.testing.assert_array_equal(S.frame_indices_for_fps(10, 50), [0, 2, 4, 6, 8])
    np.testing.assert_array_equal(S.frame_indices_for_fps(3, 12.5), [0, 0, 1, 1, 2, 2])
    np.testing.assert_array_equal(S.frame_indices_for_fps(6, 30), [0, 1, 2, 4, 5])
    idx = S.frame_indices_for_fps(300, 29.97)
    assert len(idx) == round(300 * 25 / 29.97) and np.all(np.diff(idx) >= 1)
    with pytest.raises(ValueError):
        S.frame_indices_for_fps(0, 25)


def test_mfcc_is_python_speech_features_on_int16_samples():
    rng = np.random.default_rng(2)
    m = 12
    audio = (0.2 * rng.standard_normal(640 * m)).astype(np.float32)
    ours = S.mfcc_features(audio)
    pcm = np.clip(np.round(audio.astype(np.float64) * 32768), -32768, 32767).astype(np.int16)
    ref = python_speech_features.mfcc(pcm, 16000).T  # upstream: mfcc(wavfile.read(...))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-10)
    assert ours.shape == (13, 4 * m - 1)  # 100 Hz; covers the last window 4(m-6) + 20
    # the int16 scale only moves the log-energy coefficient, by log(32768^2)
    unscaled = S.mfcc_features(audio, options=S.SyncOptions(int16_audio=False))
    np.testing.assert_allclose(ours[1:], unscaled[1:], atol=1e-3)
    np.testing.assert_allclose(ours[0] - unscaled[0], 2 * math.log(32768), atol=1e-3)
    # other sample rates are resampled to 16 kHz first
    assert S.mfcc_features(np.zeros(48000 // 2, np.float32), 48000).shape[1] == 49


def test_crop_geometry_matches_crop_video():
    import cv2

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 255, (20, 400, 400, 3), dtype=np.uint8)
    boxes = np.tile([100.0, 120.0, 200.0, 220.0], (20, 1))  # s = 50, centre (150, 170)
    boxes[:2] = np.nan  # no face yet: the track starts at frame 2
    boxes[9:12] = np.nan  # a gap, interpolated
    boxes[-1] = np.nan
    tr = S.crop_face_track(frames, boxes)
    assert (tr.start, tr.stop) == (2, 19) and tr.crops.shape == (17, 224, 224, 3)
    # pad int(50 * 1.8) = 90; rows [170 - 50, 170 + 90), cols [150 - 70, 150 + 70)
    for k, t in enumerate(range(2, 19)):
        np.testing.assert_array_equal(tr.crops[k], cv2.resize(frames[t, 120:260, 80:220],
                                                              (224, 224)))
    # a face at the border pulls in the grey padding
    edge = np.tile([0.0, 0.0, 60.0, 60.0], (20, 1))
    crop = S.crop_face_track(frames, edge, S.SyncOptions(smooth_kernel=1)).crops[0]
    assert (crop[:20, :20] == 110).all()
    with pytest.raises(OmniError, match="no face box"):
        S.crop_face_track(frames, np.full((20, 4), np.nan))
    with pytest.raises(ValueError):
        S.crop_face_track(frames, boxes[:5])


# --------------------------------------------------------------------------------------------
# the debug twin end to end on the sample corpus


def _clip(sample_corpus, name: str, seconds: float = 2.0):
    from omni_core.media import load_audio, probe, read_frames

    path = sample_corpus.out / name
    info = probe(path)
    n = int(seconds * S.FPS)
    idx = S.frame_indices_for_fps(info.n_frames, info.nominal_fps or info.fps)[:n]
    frames = read_frames(path, indices=idx)
    audio = load_audio(path, S.SAMPLE_RATE, duration_s=seconds)
    return frames, audio


def _speaker_box(sample_corpus, name: str) -> np.ndarray:
    """The face box of the person who talks longest in the clip."""
    people = pd.read_parquet(sample_corpus.people_table)
    turns = pd.read_parquet(sample_corpus.turns_table)
    t = turns[turns.file == name]
    talk = (t.end_s - t.start_s).groupby(t.speaker).sum()
    row = people[(people.file == name) & (people.person == talk.idxmax())].iloc[0]
    return np.asarray(row.face_box, dtype=np.float64)


@pytest.mark.parametrize("name", ["talking/talk00_1p.mp4", "talking/talk02_2p.mp4"])
def test_debug_twin_end_to_end_on_sample_corpus(sample_corpus, name):
    frames, audio = _clip(sample_corpus, name)
    boxes = np.tile(_speaker_box(sample_corpus, name), (len(frames), 1))
    model = S.SyncNet.debug(0)
    r = S.sync_scores_from_boxes(frames, boxes, audio, S.SAMPLE_RATE, model)
    n = min(len(frames), len(audio) // 640) - 5
    assert r.n_windows == n and r.dists.shape == (n, 31) and r.framewise_conf.shape == (n,)
    assert np.isfinite([r.sync_c, r.sync_d]).all() and r.sync_c >= 0 and r.sync_d > 0
    assert -15 <= r.av_offset <= 15
    assert r.sync_d == pytest.approx(r.mean_dists.min())
    # a fresh debug build with the same seed, in other batches, gives the same numbers
    again = S.sync_scores_from_boxes(frames, boxes, audio, S.SAMPLE_RATE, S.SyncNet.debug(0),
                                     S.SyncOptions(batch_size=7))
    assert again.av_offset == r.av_offset
    np.testing.assert_allclose(again.dists, r.dists, rtol=1e-4)


def test_sync_scores_rejects_too_short_clips():
    model = S.SyncNet.debug(0)
    crops = np.zeros((5, 224, 224, 3), np.uint8)
    with pytest.raises(OmniError, match="too short"):
        S.sync_scores(crops, np.zeros(640 * 5, np.float32), S.SAMPLE_RATE, model)


def test_track_faces_links_overlaps_across_gaps_and_drops_short_tracks():
    opts = S.SyncOptions(min_track=5, max_gap=2)
    a, b = np.array([10.0, 10, 50, 50]), np.array([200.0, 10, 240, 50])
    frames = [[a, b], [a + 1], [], [a + 2], [a + 3, b], [a + 4]]  # b appears twice: too short
    tracks = S.track_faces(frames, opts)
    assert len(tracks) == 1
    tr = tracks[0]
    assert tr.shape == (6, 4) and np.isnan(tr[2]).all()  # the gap stays NaN for interpolation
    assert tr[5].tolist() == (a + 4).tolist()
    assert S.track_faces(frames, S.SyncOptions(min_track=5, max_gap=0)) == []  # gap breaks it


def test_padded_window_is_the_slice_of_the_padded_frame():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(36, 64, 3), dtype=np.uint8)
    for _ in range(300):
        pad = int(rng.integers(0, 40))
        r = tuple(sorted(int(v) for v in rng.integers(-20, 36 + 2 * pad + 20, size=2)))
        c = tuple(int(v) for v in rng.integers(-20, 64 + 2 * pad + 20, size=2))  # any order
        full = np.pad(frame, ((pad, pad), (pad, pad), (0, 0)), constant_values=110)
        np.testing.assert_array_equal(S.padded_window(frame, pad, 110, r, c),
                                      full[r[0]:r[1], c[0]:c[1]])


def test_random_build_has_the_released_layout():
    with torch.device("meta"):
        model = S.SyncNet.random(device="meta")
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()
           if not k.endswith("num_batches_tracked")}
    assert own == {k: tuple(v.shape) for k, v in upstream_state_dict().items()}
    assert model.variant == "random"
