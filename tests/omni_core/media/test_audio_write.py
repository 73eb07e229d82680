"""Audio loading/resampling through ffmpeg and mp4/wav writing, on real files."""

import numpy as np
import pytest
import soundfile as sf

from omni_core.errors import MediaError
from omni_core.media import load_audio, probe, read_frames, write_mp4, write_wav
from omni_core.media.audio import model_input, resample


def tone(freq, sr, seconds, amp=0.5):
    t = np.arange(int(sr * seconds)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant_freq(x, sr):
    spec = np.abs(np.fft.rfft(x))
    return np.fft.rfftfreq(len(x), 1 / sr)[spec.argmax()]


def test_load_resample_downmix(tmp_path):
    stereo = np.stack([tone(440, 48000, 1.0), tone(440, 48000, 1.0)], axis=1)
    path = write_wav(tmp_path / "a.wav", stereo, 48000)
    mono16 = load_audio(path, 16000)
    assert mono16.dtype == np.float32 and mono16.shape == (16000,)
    assert dominant_freq(mono16, 16000) == pytest.approx(440, abs=2)
    assert np.abs(mono16).max() == pytest.approx(0.5, abs=0.02)
    both = load_audio(path, 48000, mono=False)
    assert both.shape == (48000, 2)
    part = load_audio(path, 16000, start_s=0.25, duration_s=0.5)
    assert len(part) == 8000
    up = resample(mono16, 16000, 48000)
    assert len(up) == 48000 and dominant_freq(up, 48000) == pytest.approx(440, abs=2)


def test_load_from_mp4_and_errors(sample_corpus):
    audio = load_audio(sample_corpus.out / "talking/talk02_2p.mp4", 16000)
    assert len(audio) / 16000 == pytest.approx(probe(sample_corpus.out /
                                                     "talking/talk02_2p.mp4").duration_s, abs=0.1)
    assert np.abs(audio).max() > 0.05  # speech is there
    rec = load_audio(sample_corpus.out / "recording/sample.wav", 16000)
    ref, sr = sf.read(sample_corpus.out / "recording/sample.wav", dtype="float32")
    assert sr == 16000 and np.allclose(rec, ref, atol=1e-4)
    with pytest.raises(MediaError, match="no audio stream"):
        load_audio(sample_corpus.out / "broken/no_audio.mp4")
    with pytest.raises(MediaError):
        load_audio(sample_corpus.out / "broken/not_a_video.mp4")


def test_write_mp4_with_audio_round_trip(tmp_path):
    y, x = np.mgrid[0:120, 0:160]
    frames = np.stack([np.stack([(x + 3 * i) % 256, (y + i) % 256, np.full_like(x, 128)], -1)
                       for i in range(50)]).astype(np.uint8)
    path = write_mp4(tmp_path / "out/v.mp4", frames, 25, tone(300, 16000, 2.0), 16000)
    info = probe(path)
    assert info.n_frames == 50 and info.fps == pytest.approx(25)
    assert info.has_audio and info.sample_rate == 16000
    back = read_frames(path, [10])[0].astype(int)
    assert np.abs(back - frames[10]).mean() < 4  # lossy, same picture
    audio = load_audio(path, 16000)
    assert dominant_freq(audio, 16000) == pytest.approx(300, abs=3)
    assert not list((tmp_path / "out").glob(".*tmp*"))  # atomic: no leftovers


def test_write_is_deterministic_and_validates(tmp_path):
    frames = np.zeros((10, 64, 64, 3), np.uint8)
    frames[:, 20:40, 20:40] = 200
    a = write_mp4(tmp_path / "a.mp4", frames, 24).read_bytes()
    b = write_mp4(tmp_path / "b.mp4", frames, 24).read_bytes()
    assert a == b
    with pytest.raises(MediaError, match="must be even"):
        write_mp4(tmp_path / "c.mp4", np.zeros((2, 63, 64, 3), np.uint8), 24)
    with pytest.raises(MediaError, match="uint8"):
        write_mp4(tmp_path / "c.mp4", np.zeros((2, 64, 64, 3), np.float32), 24)
    with pytest.raises(MediaError, match="sample_rate"):
        write_mp4(tmp_path / "c.mp4", frames, 24, audio=np.zeros(100, np.float32))


def burst_time(x, sr):
    """When the 1 kHz burst of the quirky_media files starts, in seconds."""
    return int(np.argmax(np.abs(x) > 0.2)) / sr


@pytest.mark.parametrize("name,sign", [("late_audio", 1), ("early_audio", -1)])
def test_audio_lies_on_the_pictures_timeline(quirky_media, name, sign):
    """Sound that starts 0.48 s after (or before) the picture: t = 0 is the first frame, as
    for frame times; a leading gap is silence, sound before the first frame is dropped."""
    from omni_core.media.video import frame_times

    path = getattr(quirky_media, name)
    offset, sr = sign * quirky_media.OFFSET_S, 16000
    burst = quirky_media.BURST_S + offset
    assert frame_times(path)[0, 0] == 0
    audio = load_audio(path, sr)
    assert burst_time(audio, sr) == pytest.approx(burst, abs=0.01)
    assert len(audio) / sr == pytest.approx(3.0 + offset, abs=0.03)
    if offset > 0:
        assert np.abs(audio[: int(0.4 * sr)]).max() < 0.01  # the gap is silence
    part = load_audio(path, sr, start_s=burst - 0.3, duration_s=0.6)
    assert len(part) == int(0.6 * sr)
    assert burst_time(part, sr) == pytest.approx(0.3, abs=0.01)
    head = load_audio(path, sr, start_s=0.2, duration_s=0.5)
    assert len(head) == int(0.5 * sr)


def test_model_input_is_mono_float32_at_the_model_rate_and_finite():
    t = np.arange(48000) / 48000
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1)
    x = model_input(stereo, 48000, 16000, "VAD")
    assert x.dtype == np.float32 and x.shape == (16000,)
    assert abs(float(np.abs(x).max()) - 0.5) < 0.01  # the channel mean of a tone and silence
    bad = np.zeros(100, np.float32)
    bad[3] = np.nan
    with pytest.raises(MediaError, match="VAD input audio contains NaN"):
        model_input(bad, 16000, 16000, "VAD")
