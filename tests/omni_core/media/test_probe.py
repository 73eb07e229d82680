"""probe() on the sample corpus: real files, broken files, no hangs."""

import pytest

from omni_core.errors import MediaError
from omni_core.manifests import read_manifest
from omni_core.media import probe


@pytest.fixture(scope="module")
def files(sample_corpus):
    return read_manifest(sample_corpus.files_table).set_index("file")


def test_talking_clips(sample_corpus, files):
    talking = files[files.kind == "talking"]
    assert len(talking) >= 6
    for name, row in talking.iterrows():
        info = probe(sample_corpus.out / name)
        assert info.has_video and info.has_audio and not info.warnings
        assert info.fps == pytest.approx(25.0)
        assert info.n_frames == pytest.approx(row.duration_s * 25, abs=1)
        assert info.duration_s == pytest.approx(row.duration_s, abs=0.1)
        assert (info.width, info.height, info.rotation) == (row.width, row.height, 0)
        assert info.av_span() == pytest.approx((0.0, row.duration_s), abs=0.1)
        assert (info.video_codec, info.audio_codec) == ("h264", "aac")
        assert not info.vfr


def test_recording(sample_corpus):
    info = probe(sample_corpus.out / "recording/sample.wav")
    assert info.has_audio and not info.has_video
    assert info.duration_s == pytest.approx(30.0, abs=0.1)
    assert info.warnings == ["no video stream"]


@pytest.mark.parametrize("name,reason", [
    ("broken/empty.mp4", "empty file (0 bytes)"),
    ("broken/not_a_video.mp4", "not a readable media file (moov atom not found"),
    ("broken/truncated_faststart.mp4", "truncated"),
    ("broken/truncated_no_moov.mp4", "moov atom not found"),
])
def test_unreadable_files_give_one_line_reasons(sample_corpus, name, reason):
    with pytest.raises(MediaError) as err:
        probe(sample_corpus.out / name, timeout=30)
    msg = str(err.value)
    assert reason in msg and "\n" not in msg and name in msg


@pytest.mark.parametrize("name,warning", [
    ("broken/no_audio.mp4", "no audio stream"),
    ("broken/audio_only.mp4", "no video stream"),
    ("broken/vfr.mp4", "variable frame rate"),
])
def test_usable_but_flagged(sample_corpus, name, warning):
    info = probe(sample_corpus.out / name)
    assert warning in info.warnings


def test_vfr_is_measured_not_declared(sample_corpus):
    info = probe(sample_corpus.out / "broken/vfr.mp4")
    assert info.vfr and info.n_frames == 100


def test_missing_and_directory(tmp_path):
    with pytest.raises(MediaError, match="no such file"):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(MediaError, match="is a directory"):
        probe(tmp_path)


def test_stream_lengths_and_the_span_with_picture_and_sound(quirky_media):
    """8 s of picture, 30 s of sound: the container says 30 s; only 8 s have both."""
    info = probe(quirky_media.long_audio)
    assert info.duration_s == pytest.approx(30.0, abs=0.05)  # the container's
    assert info.video_duration_s == pytest.approx(8.0, abs=0.01)
    assert info.audio_duration_s == pytest.approx(30.0, abs=0.05)
    assert info.av_span() == pytest.approx((0.0, 8.0), abs=0.01)
    assert info.warnings == ["audio and video differ in length (video 8.00 s, audio 30.00 s)"]


def test_stream_start_offsets(quirky_media):
    offset = quirky_media.OFFSET_S
    late = probe(quirky_media.late_audio)  # AAC's priming makes the track start 21 ms early
    assert late.video_start_s == 0 and late.audio_start_s == pytest.approx(offset, abs=0.025)
    assert late.av_span() == pytest.approx((offset, 3.0), abs=0.025)
    early = probe(quirky_media.early_audio)
    assert early.audio_start_s == 0 and early.video_start_s == pytest.approx(offset, abs=1e-3)
    assert early.av_span() == pytest.approx((0.0, 3.0 - offset), abs=0.01)
    assert not late.warnings and not early.warnings


def test_rotated_video_reports_its_displayed_size(quirky_media):
    info = probe(quirky_media.rotated)  # stored 96x64, shown portrait
    assert (info.width, info.height, info.rotation) == (64, 96, 90)


def test_a_still_image_is_not_a_video(quirky_media):
    with pytest.raises(MediaError) as err:
        probe(quirky_media.still)
    assert str(err.value) == f"{quirky_media.still}: a still image (png), not a video"
