"""Frame-accurate decoding through decord, the timeout guard, and frame sampling."""

import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

from omni_core.errors import ConfigError, DecodeTimeout, MediaError
from omni_core.media import _worker as guard_worker
from omni_core.media import guard, read_frames, sample_indices, write_mp4
from omni_core.media.video import frame_times


def numbered_video(path, n=30, fps=25, size=(96, 64)):
    """Frame i is a flat grey of value 8*i: decoded values tell which frame we got."""
    frames = np.stack([np.full((size[1], size[0], 3), 8 * i, np.uint8) for i in range(n)])
    return write_mp4(path, frames, fps, crf=0)


def frame_number(frame):
    return int(round(frame.mean() / 8))


def test_index_reads_are_frame_accurate(tmp_path):
    path = numbered_video(tmp_path / "n.mp4")
    got = read_frames(path, [0, 7, 29, 3])
    assert got.shape == (4, 64, 96, 3) and got.dtype == np.uint8
    assert [frame_number(f) for f in got] == [0, 7, 29, 3]
    assert len(read_frames(path)) == 30


def test_timestamp_reads_pick_the_frame_on_screen(tmp_path):
    path = numbered_video(tmp_path / "n.mp4")
    got = read_frames(path, timestamps=[0.0, 0.039, 0.04, 0.5, 1.19])
    assert [frame_number(f) for f in got] == [0, 0, 1, 12, 29]


def test_vfr_timestamps_follow_the_real_frame_times(sample_corpus):
    path = sample_corpus.out / "broken/vfr.mp4"
    times = frame_times(path)
    gaps = np.diff(times[:, 0])
    assert gaps.max() > 0.2 and gaps.min() < 0.035  # the 270 ms gap and 30 ms intervals
    # the frame shown at a time is the last one that started before it
    t = float(times[60, 0]) + 0.001
    idx = read_frames(path, timestamps=[t])
    assert np.array_equal(idx[0], read_frames(path, [60])[0])


def test_scaled_read_and_errors(tmp_path, sample_corpus):
    path = numbered_video(tmp_path / "n.mp4")
    import cv2

    small = read_frames(path, [0, 9], size=(48, 32))
    assert small.shape == (2, 32, 48, 3)
    full = read_frames(path, [0, 9])
    assert np.array_equal(small[1], cv2.resize(full[1], (48, 32), interpolation=cv2.INTER_AREA))
    with pytest.raises(MediaError, match="out of range"):
        read_frames(path, [30])
    with pytest.raises(MediaError, match="empty"):
        read_frames(sample_corpus.out / "broken/empty.mp4", [0])
    with pytest.raises(MediaError):
        read_frames(sample_corpus.out / "broken/not_a_video.mp4", [0])
    with pytest.raises(MediaError):
        read_frames(sample_corpus.out / "broken/truncated_no_moov.mp4", [0])


def test_guard_kills_a_hung_decode_and_reports_a_crash():
    import time

    assert guard.run_guarded(sum, [1, 2], timeout=30, what="x") == 3
    first = guard._WORKER.proc.pid
    assert guard.run_guarded(max, [1, 2], timeout=30, what="x") == 2
    assert guard._WORKER.proc.pid == first  # one long-lived worker serves the calls
    with pytest.raises(DecodeTimeout, match="timed out after 1 s"):
        guard.run_guarded(time.sleep, 60, timeout=1, what="slow.mp4")
    with pytest.raises(MediaError, match="decoder died"):
        guard.run_guarded(os._exit, 3, timeout=30, what="bad.mp4")
    with pytest.raises(MediaError, match="ZeroDivisionError"):
        guard.run_guarded(divmod, 1, 0, timeout=30, what="x")
    assert guard.run_guarded(sum, [2, 2], timeout=30, what="x") == 4  # a new worker


def test_guard_does_not_rerun_the_callers_script(tmp_path):
    """multiprocessing's spawn/forkserver re-import __main__ in each child; a user script
    without a __main__ guard would run again for every decode. Ours must not."""
    script = tmp_path / "user_script.py"
    marker = tmp_path / "runs.txt"
    video = numbered_video(tmp_path / "n.mp4")
    script.write_text(
        "from omni_core.media import read_frames\n"
        f"open({str(marker)!r}, 'a').write('x')\n"
        f"print(read_frames({str(video)!r}, [3]).shape)\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(1, 64, 96, 3)" in r.stdout
    assert marker.read_text() == "x"


def test_large_results_come_back_whole(tmp_path):
    frames = read_frames(numbered_video(tmp_path / "n.mp4", size=(320, 240)))
    assert frames.nbytes > guard_worker.INLINE_BYTES and frames.flags.writeable
    assert [frame_number(f) for f in frames[::5]] == [0, 5, 10, 15, 20, 25]
    base = frames.base.base  # the worker's shared segment (numpy wraps it in a memoryview)
    assert isinstance(getattr(base, "obj", base), mmap.mmap)


@pytest.mark.parametrize("mode,expect", [
    ("linspace", [0, 24, 49, 74, 99]),  # truncated, as np.linspace(..., dtype=int)
    ("segment_middle", [9, 29, 49, 69, 89]),  # VBench's (a + b - 1) // 2
])
def test_sample_indices(mode, expect):
    assert sample_indices(100, 5, mode).tolist() == expect
    assert sample_indices(3, 1, "all").tolist() == [0, 1, 2]
    with pytest.raises(MediaError):
        sample_indices(0, 4)


def test_frames_come_upright_as_displayed(quirky_media):
    """A phone video stored landscape with a display rotation: frames are read as shown,
    in the size the probe reports, the stored picture turned by the probe's rotation."""
    from omni_core.media import probe

    info = probe(quirky_media.rotated)
    frames = read_frames(quirky_media.rotated, [0, 7])
    assert frames.shape == (2, info.height, info.width, 3) == (2, 96, 64, 3)
    shown = np.rot90(quirky_media.rotated_stored, info.rotation // 90)
    assert np.abs(frames.astype(int) - shown).mean() < 2  # the white block lands bottom left
    assert frames[0, -8:, :8].min() > 200 and frames[0, :16, -16:].max() < 100


def test_decoder_errors_are_one_stable_line(quirky_media):
    """decord's messages carry a clock and its source file: reasons must not, so the errors
    of a resumed run are the same bytes; in the decode worker or in-process alike."""
    import re
    import time

    for path in (quirky_media.tiny, quirky_media.still):
        reasons = []
        for timeout in (30, None, 30):
            with pytest.raises(MediaError) as err:
                read_frames(path, [0], timeout=timeout)
            reasons.append(str(err.value))
            time.sleep(0.6)  # across a tick of decord's clock
        assert len(set(reasons)) == 1, reasons
        reason = reasons[0]
        assert reason.startswith(f"{path}: decord cannot ")
        assert "\n" not in reason and ".cc:" not in reason
        assert not re.search(r"\d\d:\d\d:\d\d", reason), reason


DECODER_CASES = [  # (video, indices or None, timestamps or None)
    ("talk", [0, 7, 100, 7, 3, 150], None),
    ("talk", None, None),
    # past the end: vfr's last frame has no duration (torchcodec ends the stream at its start)
    ("vfr", None, [0.0, 0.5, 0.66, 0.935, 2.0, 4.2105, 4.215, 99.0, -1.0]),
    ("rotated", [0, 24, 12], None),
    ("early", None, [0.0, 0.03, 0.04, 1.0, 2.99, 3.5]),
    ("numbered", None, [0.0, 0.039, 0.04, 0.5, 1.19, 1.2]),
]


@pytest.mark.parametrize("video,indices,timestamps", DECODER_CASES)
def test_torchcodec_reads_the_frames_decord_reads(video, indices, timestamps, tmp_path,
                                                   sample_corpus, quirky_media):
    """Same frames, byte for byte: same index order (presentation), same frame for a time
    (the stream's own start is 0; early_audio's picture starts 0.48 s into its file), same
    colour conversion, same display rotation. (Times exactly on a frame's start are left
    out: decord's 32-bit frame times may put them in the frame before.)"""
    path = {"talk": sample_corpus.out / "talking/talk04_3p.mp4",
            "vfr": sample_corpus.out / "broken/vfr.mp4",
            "rotated": quirky_media.rotated, "early": quirky_media.early_audio,
            "numbered": numbered_video(tmp_path / "n.mp4")}[video]
    want = read_frames(path, indices, timestamps=timestamps, timeout=None)
    got = read_frames(path, indices, timestamps=timestamps, decoder="torchcodec")
    assert got.shape == want.shape and got.dtype == np.uint8 and len(got)
    assert np.array_equal(got, want)
    if video == "numbered":
        assert [frame_number(f) for f in got] == [0, 0, 1, 12, 29, 29]


def test_torchcodec_resizes_and_fails_as_decord_does(tmp_path, sample_corpus):
    path = numbered_video(tmp_path / "n.mp4")
    got = read_frames(path, [2, 9], size=(48, 32), decoder="torchcodec", timeout=None)
    assert np.array_equal(got, read_frames(path, [2, 9], size=(48, 32)))
    assert read_frames(path, [], decoder="torchcodec").shape == (0, 64, 96, 3)
    with pytest.raises(MediaError, match="frame index 30 out of range"):
        read_frames(path, [30], decoder="torchcodec")
    with pytest.raises(MediaError, match="empty"):
        read_frames(sample_corpus.out / "broken/empty.mp4", [0], decoder="torchcodec")
    with pytest.raises(MediaError, match="torchcodec cannot open it"):
        read_frames(sample_corpus.out / "broken/not_a_video.mp4", [0], decoder="torchcodec")


def test_decoder_choice_is_checked_before_any_decode(tmp_path):
    import torch

    path = numbered_video(tmp_path / "n.mp4")
    with pytest.raises(ConfigError, match="unknown video decoder 'nvdec'"):
        read_frames(path, [0], decoder="nvdec")
    if torch.cuda.is_available():  # a GPU machine: NVDEC's frames, close to the CPU's
        got = read_frames(path, [0, 7, 29], decoder="torchcodec-cuda").astype(int)
        assert np.abs(got - read_frames(path, [0, 7, 29])).mean() < 2
    else:
        with pytest.raises(ConfigError, match="needs a CUDA GPU"):
            read_frames(path, [0], decoder="torchcodec-cuda")
