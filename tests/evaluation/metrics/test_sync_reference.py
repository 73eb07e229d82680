"""Sync-C / Sync-D / AV offset: reference equivalence with the syncnet-python package.

syncnet-python 0.2.3 (PyPI; MoChaBench's port of joonson/syncnet_python, in the lock for this
test) runs the upstream pipeline end to end: ffmpeg to a 25 fps AVI and JPEG frames, S3FD on
every frame, PySceneDetect shots, ``track_shot``, ``crop_video`` (XVID AVI) and
``SyncNetInstance.evaluate``. Both sides load the same seeded random checkpoints in the
upstream formats (``syncnet_v2.model`` as a legacy torch file without ``num_batches_tracked``,
``sfd_face.pth``) from tmp_path and read the same short synthetic clip; every step is the
package's own code, and its intermediates (detections, tracks, the crops it hands to the XVID
writer) are compared with ours on the way.

Tolerance: the offset exactly, Sync-C and Sync-D to 1e-4 absolute. Both sides score the same
JPEG crops and int16 samples; what remains is float32 summation order (we run the lip network
once over the track, upstream once per 5-frame window; distances ~5 carry ~5e-7 rounding), seen
at about 3e-7. The codec steps themselves move the numbers by far more (``media="direct"``
differs by more than 1e-3 here), so the tolerance cannot hide a protocol difference.

Random weights pin the offset to the edge of the search, so the offset is checked with a
planted network instead: hand-set weights whose lip features are the brightness of frames
(w, w+1) and whose audio features are the loudness of the same 80 ms, fed flashing frames
and noise bursts; delaying the audio by 3 frames moves the offset from 0 to -3 in both.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch

from evaluation.inputs import InstanceInputs
from evaluation.metrics.sync import Sync
from omni_core.models import sync_pipeline as P
from omni_core.models.s3fd import S3FD
from omni_core.models.syncnet import (
    SAMPLE_RATE,
    SAMPLES_PER_FRAME,
    SyncNet,
    SyncOptions,
    mfcc_features,
    sync_features,
    sync_scores,
)

pytestmark = pytest.mark.slow

ATOL = 1e-4
N_FRAMES = 16  # 0.64 s: the package's full-size SyncNet costs ~0.2-0.4 s per window on 2 CPUs
SIZE = (192, 144)  # S3FD sees 48x36 at facedet_scale 0.25
# the package's PipelineConfig and our options, where they differ from run_pipeline's defaults
MIN_TRACK, MIN_FACE = 8, 68.0  # short clip; the random S3FD's boxes are ~65-75 px
OURS = SyncOptions(audio_from="source", tracker="mochabench", min_track=MIN_TRACK,
                   min_face_size=MIN_FACE)


def _clip_frames(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A photo with a patch flickering frame to frame, and noise bursts of varying loudness."""
    from skimage import data

    rng = np.random.default_rng(seed)
    level = rng.uniform(-1, 1, N_FRAMES)
    w, h = SIZE
    photo = cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA)
    frames = np.repeat(photo[None], N_FRAMES, 0)
    frames[:, int(h * 0.45):int(h * 0.6), int(w * 0.4):int(w * 0.6)] = (
        128 + 100 * level).astype(np.uint8)[:, None, None, None]
    amp = np.repeat(0.05 + 0.2 * (level + 1), SAMPLES_PER_FRAME)
    audio = (rng.standard_normal(amp.size) * amp).clip(-1, 1).astype(np.float32)
    return frames, audio


def _write_syncnet(state: dict[str, torch.Tensor], root: Path) -> Path:
    """syncnet_v2.model as released: a legacy-format plain dict, no num_batches_tracked."""
    path = root / "syncnet-v2" / "syncnet_v2.model"
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(clean, path, _use_new_zipfile_serialization=False)
    return path


def _unpinned_registry():
    """The packaged manifest with the two entries' size and sha256 cleared (the module-scoped
    twin of conftest's ``unpinned_registry``), so the stand-in checkpoints load."""
    from omni_core.weights import load_registry

    registry = load_registry()

    def free(entry):
        if entry.name not in ("syncnet-v2", "s3fd-sfd-face"):
            return entry
        files = tuple(dataclasses.replace(f, size=None, sha256=None) for f in entry.files)
        return dataclasses.replace(entry, files=files)

    return type(registry)(tuple(free(e) for e in registry), "test")


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> SimpleNamespace:
    from omni_core.media.write import write_mp4

    root = tmp_path_factory.mktemp("sync_ref")
    frames, audio = _clip_frames()
    clip = write_mp4(root / "clip.mp4", frames, 25, audio, SAMPLE_RATE)
    weights = root / "weights"
    syncnet_path = _write_syncnet(SyncNet.random(0).state_dict(), weights)
    s3fd_path = weights / "s3fd-sfd-face" / "sfd_face.pth"
    s3fd_path.parent.mkdir(parents=True)
    torch.save(S3FD.random(0).state_dict(), s3fd_path)
    registry = _unpinned_registry()
    return SimpleNamespace(root=root, clip=clip, weights=weights, syncnet_path=syncnet_path,
                           s3fd_path=s3fd_path, registry=registry)


@pytest.fixture(scope="module")
def reference(setup) -> SimpleNamespace:
    """The package's pipeline on the clip, with what it detects, tracks and writes recorded."""
    from syncnet_python.syncnet_pipeline import SyncNetPipeline

    pipe = SyncNetPipeline(device="cpu", s3fd_weights=str(setup.s3fd_path),
                           syncnet_weights=str(setup.syncnet_path), min_track=MIN_TRACK,
                           min_face_size=MIN_FACE)
    tracks: list[dict] = []
    written: list[list[np.ndarray]] = []
    track = pipe._track

    def record_track(dets):
        out = track(dets)
        tracks.extend(out)
        return out

    real_writer = cv2.VideoWriter

    class RecordingWriter:
        def __init__(self, *args):
            self.writer = real_writer(*args)
            written.append([])

        def write(self, frame):
            written[-1].append(frame.copy())
            self.writer.write(frame)

        def release(self):
            self.writer.release()

    cache = setup.root / "package"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pipe, "_track", record_track)
        mp.setattr(cv2, "VideoWriter", RecordingWriter)
        offsets, confs, dists, _, _, s3fd_json, _ = pipe.inference(str(setup.clip), None,
                                                                    cache_dir=str(cache))
    dets = json.loads(s3fd_json) if s3fd_json else []
    return SimpleNamespace(offsets=offsets, confs=confs, dists=dists, dets=dets, tracks=tracks,
                           crops_bgr=[np.stack(w) for w in written], cache=cache)


@pytest.fixture(scope="module")
def metric(setup) -> Sync:
    m = Sync(weights="debug", options=OURS)
    m.setup()
    m.model = SyncNet.from_pretrained(root=setup.weights, registry=setup.registry)
    m.s3fd = S3FD.from_pretrained(root=setup.weights, registry=setup.registry)
    return m


@pytest.fixture(scope="module")
def ours(setup, metric) -> P.VideoSync:
    inp = InstanceInputs("clip", "r2av", "S", "", setup.clip, setup.clip, [], [])
    return metric.score(inp, workdir=setup.root / "ours")


def test_the_package_finds_tracks_to_compare(reference):
    assert len(reference.tracks) >= 1 and len(reference.offsets) == len(reference.tracks)
    # OpenCV (PySceneDetect) decodes fewer frames of the AVI than ffmpeg writes as JPEGs:
    # the frames past its count are detected in but never tracked, upstream and here
    n_jpeg = len(list((reference.cache / "frames").glob("*.jpg")))
    assert max(t["frame"][-1] for t in reference.tracks) + 1 < n_jpeg


def test_frames_detections_and_tracks_equal_the_package(reference, ours):
    assert ours.n_frames == len(list((reference.cache / "frames").glob("*.jpg")))
    flat = [(f, *b) for f, boxes in enumerate(ours.detections) for b in boxes]
    assert len(flat) == len(reference.dets)
    for got, want in zip(flat, reference.dets, strict=True):
        assert got[0] == want["frame"]
        np.testing.assert_allclose(got[1:], want["bbox"], rtol=0, atol=1e-3)
    assert len(ours.tracks) == len(reference.tracks)
    for got, want in zip(ours.tracks, reference.tracks, strict=True):
        np.testing.assert_array_equal(got.frames, want["frame"])
        np.testing.assert_allclose(got.boxes, want["bbox"], rtol=0, atol=1e-3)


def test_crops_equal_what_the_package_writes(reference, ours, setup):
    from omni_core.models.syncnet import crop_face_track

    frames = np.stack([cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB)
                       for f in sorted((reference.cache / "frames").glob("*.jpg"))])
    assert len(reference.crops_bgr) == len(ours.tracks)
    for tr, want in zip(ours.tracks, reference.crops_bgr, strict=True):
        got = crop_face_track(frames, tr.padded(len(frames)), OURS).crops[..., ::-1]
        np.testing.assert_array_equal(got, want)


def test_sync_c_sync_d_and_offset_equal_the_package(reference, ours, metric, setup):
    got = [(r.av_offset, r.sync_c, r.sync_d) for r in ours.results]
    want = list(zip(reference.offsets, reference.confs, reference.dists, strict=True))
    print("ours", got, "\npackage", want)
    assert len(got) == len(want)
    for (o, c, d), (wo, wc, wd) in zip(got, want, strict=True):
        assert o == wo
        assert c == pytest.approx(wc, abs=ATOL) and d == pytest.approx(wd, abs=ATOL)
    # what the metric reports: the mean over the tracks
    scores = metric.means(ours)
    assert scores["sync_c"] == pytest.approx(statistics.fmean(reference.confs), abs=ATOL)
    assert scores["sync_d"] == pytest.approx(statistics.fmean(reference.dists), abs=ATOL)

    # in-memory media (no AVI/JPEG/XVID round trips) is not upstream's number: the tolerance
    # above is far tighter than what the codecs change
    direct = Sync(weights="debug", options=dataclasses.replace(OURS, media="direct"))
    direct.model, direct.s3fd = metric.model, metric.s3fd
    res = direct.score(InstanceInputs("clip", "r2av", "S", "", setup.clip, setup.clip, [], []))
    print("direct", direct.means(res), "reference media", scores)
    assert abs(direct.means(res)["sync_d"] - scores["sync_d"]) > 10 * ATOL


# --------------------------------------------------------------------------------------------
# tracking rules on hand-built detections (the package's own _track as the mochabench rule)


def _hand_built() -> list[list[tuple[float, float, float, float]]]:
    """Person A (100 px, drifting) and a small face B; B is listed first from frame 1 on, and
    A is missed in frame 4 (interpolated)."""
    out = []
    for t in range(12):
        a = (50.0 + t, 40.0, 150.0 + t, 140.0)
        b = (300.0, 40.0, 340.0, 80.0)
        out.append([a, b] if t == 0 else [b] if t == 4 else [b, a])
    return out


def _package_track(dets, min_track: int, min_face: float) -> list[dict]:
    from syncnet_python.syncnet_pipeline import PipelineConfig, SyncNetPipeline

    pipe = SyncNetPipeline.__new__(SyncNetPipeline)  # _track needs only the config
    pipe.cfg = PipelineConfig(min_track=min_track, min_face_size=min_face)
    return pipe._track([[{"frame": t, "bbox": list(b)} for b in boxes]
                        for t, boxes in enumerate(dets)])


def test_track_shot_rules_and_the_package_tracker():
    dets = _hand_built()
    opts = SyncOptions(min_track=5, min_face_size=50)
    # run_pipeline: after B misses, A in the same frame is tried -> A from frame 0
    joonson = P.track_shot(dets, opts)
    assert [(t.frames[0], t.frames[-1], t.n_detections) for t in joonson] == [(0, 11, 11)]
    np.testing.assert_allclose(joonson[0].boxes[4], (54.0, 40.0, 154.0, 140.0))
    # syncnet-python: a miss ends the frame, so A's first pass is frame 0 alone (dropped), B
    # is tracked next (and dropped: 40 px), then A again from frame 1
    mocha = P.track_shot(dets, SyncOptions(min_track=5, min_face_size=50, tracker="mochabench"))
    ref = _package_track(dets, 5, 50)
    assert [(t.frames[0], t.frames[-1]) for t in mocha] == [(1, 11)]
    assert len(ref) == len(mocha)
    for got, want in zip(mocha, ref, strict=True):
        np.testing.assert_array_equal(got.frames, want["frame"])
        np.testing.assert_allclose(got.boxes, want["bbox"], rtol=0, atol=1e-12)
    # more than min_track detections are needed (A has 11 upstream's way, 10 the package's);
    # B passes a min_face_size of 30
    assert [t.n_detections for t in P.track_shot(dets, SyncOptions(min_track=10,
                                                                   min_face_size=50))] == [11]
    assert P.track_shot(dets, SyncOptions(min_track=10, min_face_size=50,
                                          tracker="mochabench")) == []
    assert _package_track(dets, 10, 50) == []
    both = P.track_shot(dets, SyncOptions(min_track=5, min_face_size=30))
    assert [(t.frames[0], t.n_detections) for t in both] == [(0, 11), (0, 12)]
    assert [t["frame"][0] for t in _package_track(dets, 5, 30)] == [0, 1]


# --------------------------------------------------------------------------------------------
# the offset: a planted network on flashing frames and noise bursts

FLASHES = (1, 3, 7, 10, 16)  # isolated "on" frames, no self-similarity at a 3-frame lag
DIMS = 4


def _planted_state() -> dict[str, torch.Tensor]:
    """SyncNet weights (upstream layout) whose convolutions compute, per window, the
    brightness of frames w and w+1 (lip, w < 4) and the peak MFCC log-energy over the MFCC
    steps 4w..4w+6 (audio); every BatchNorm is the identity. The heads are set by
    :func:`_calibrate`."""
    sd = {k: torch.zeros_like(v) for k, v in SyncNet().state_dict().items()
          if not k.endswith("num_batches_tracked")}
    for k in sd:
        if k.endswith("running_var"):
            sd[k].fill_(1.0 - 1e-5)
            sd[k.replace("running_var", "weight")].fill_(1.0)
    for w in range(DIMS):
        sd["netcnnlip.0.weight"][w, :, w:w + 2] = 1.0 / (3 * 49 * 2)
        sd["netcnnlip.4.weight"][w, w] = 1.0 / 25
        for i in (8, 11, 14):
            sd[f"netcnnlip.{i}.weight"][w, w, 0, 1, 1] = 1.0
        sd["netcnnlip.18.weight"][w, w] = 1.0 / 36
        sd["netcnnaud.18.weight"][w, 0, :, w] = 1.0 / 5
    sd["netcnnaud.0.weight"][0, 0, 1, 1] = 1.0
    sd["netcnnaud.0.bias"][0] = -10.0  # log-energy of the bursts stays positive, cepstra drop
    for i in (4, 8, 11, 14):
        sd[f"netcnnaud.{i}.weight"][0, 0, 1, 1] = 1.0
    return sd


def _calibrate(sd: dict[str, torch.Tensor], crops: np.ndarray, pcm: np.ndarray) -> None:
    """Heads that standardise each planted feature over the aligned clip (ReLU-safe)."""
    model = SyncNet.from_state_dict(sd)
    mid: dict[str, list[torch.Tensor]] = {"lip": [], "aud": []}
    hooks = [model.netcnnlip.register_forward_hook(
                 lambda m, i, o: mid["lip"].append(o[0].flatten(1).T)),
             model.netcnnaud.register_forward_hook(
                 lambda m, i, o: mid["aud"].append(o.flatten(1)))]
    audio = pcm.astype(np.float32) / 32768
    n = min(len(crops), len(audio) // SAMPLES_PER_FRAME) - 5
    sync_features(crops, mfcc_features(audio), model, n_windows=n)
    for h in hooks:
        h.remove()
    for key, head in (("lip", "netfclip"), ("aud", "netfcaud")):
        x = torch.cat(mid[key])[:, :DIMS]
        mu, sigma = x.mean(0), x.std(0).clamp_min(1e-6)
        for d in range(DIMS):
            sd[f"{head}.0.weight"][d, d] = 1 / sigma[d]
            sd[f"{head}.0.bias"][d] = 10 - mu[d] / sigma[d]
            sd[f"{head}.3.weight"][d, d] = 1.0
            sd[f"{head}.3.bias"][d] = 1.0 - 10


def _flash_track(folder: Path, lag: int) -> None:
    """A track folder as SyncNetInstance.evaluate reads it: N_FRAMES grey JPEGs, bright on the
    flash frames, and audio.wav with 15 ms noise bursts ``lag`` frames after each flash."""
    from scipy.io import wavfile

    on = np.zeros(N_FRAMES + 3, bool)
    on[list(FLASHES)] = True
    folder.mkdir(parents=True)
    for t in range(N_FRAMES):
        cv2.imwrite(str(folder / f"{t + 1:06d}.jpg"),
                    np.full((224, 224, 3), 210 if on[t + 3] else 60, np.uint8))
    rng = np.random.default_rng(1)
    amp = np.full(len(on) * SAMPLES_PER_FRAME, 0.01)
    for k in np.flatnonzero(on):
        amp[SAMPLES_PER_FRAME * k + 200:SAMPLES_PER_FRAME * k + 440] = 0.5
    audio = rng.standard_normal(amp.size) * amp
    start = (3 - lag) * SAMPLES_PER_FRAME
    pcm = np.round(audio[start:start + N_FRAMES * SAMPLES_PER_FRAME] * 32767).astype(np.int16)
    wavfile.write(str(folder / "audio.wav"), SAMPLE_RATE, pcm)


def test_planted_audio_delay_moves_the_offset_by_three_in_both(tmp_path):
    from syncnet_python.SyncNetInstance import SyncNetInstance
    from syncnet_python.SyncNetModel import S

    for lag in (0, 3):
        _flash_track(tmp_path / f"lag{lag}", lag)
    crops = P.read_jpegs(tmp_path / "lag0")
    sd = _planted_state()
    _calibrate(sd, crops, P.read_wav_int16(tmp_path / "lag0" / "audio.wav"))
    path = _write_syncnet(sd, tmp_path / "weights")
    net = S()
    net.load_state_dict(torch.load(path, weights_only=True))
    upstream = SyncNetInstance(net=net, device="cpu")
    ours = SyncNet.from_state_dict(torch.load(path, weights_only=True))
    got = {}
    for lag in (0, 3):
        folder = tmp_path / f"lag{lag}"
        want = upstream.evaluate(SimpleNamespace(tmp_dir=str(folder), batch_size=20, vshift=15))
        pcm = P.read_wav_int16(folder / "audio.wav").astype(np.float32) / 32768
        r = sync_scores(P.read_jpegs(folder), pcm, SAMPLE_RATE, ours)
        assert r.av_offset == want[0]
        assert r.sync_c == pytest.approx(want[1], abs=ATOL)
        assert r.sync_d == pytest.approx(want[2], abs=ATOL)
        got[lag] = r
    assert got[0].av_offset == 0 and got[0].sync_c > 1.0
    assert got[3].av_offset == -3  # sound 3 frames after the lips
