"""The kit's media (omni_core.report.media): thumbnails downsized and embedded, waveforms from
real WAVs, audio embedded under a size cap, and a placeholder naming (escaped) any file that is
missing or unreadable."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from omni_core.report import (
    card,
    contact_sheet,
    embedded_media,
    media_type,
    thumbnail,
    waveform,
    waveform_envelope,
)

HOSTILE_NAME = '"><img src=x onerror=alert(1)>'


def parse(text: str):
    from conftest import parse_html

    return parse_html(text)


def test_waveform_envelope() -> None:
    lo, hi = waveform_envelope(np.sin(np.linspace(0, 20, 16000)), 200)
    assert len(lo) == len(hi) == 200 and (lo <= hi).all() and hi.max() > 0.99
    lo, hi = waveform_envelope(np.zeros(0), 200)
    assert len(lo) == len(hi) == 0


def test_thumbnail_of_a_file_with_a_hostile_name(tmp_path: Path) -> None:
    path = tmp_path / f"{HOSTILE_NAME}.png"
    Image.fromarray(np.full((300, 200, 3), 200, np.uint8)).save(path)
    html = thumbnail(path, max_px=64, alt=path.name, testid="thumb")
    root = parse(html)
    img = root.one("img", data_testid="thumb")
    assert img.attrs["alt"] == path.name and len(root.find_all("img")) == 1
    with Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))) as im:
        assert im.size == (43, 64)  # longest side 64, aspect kept
    gone = parse(thumbnail(tmp_path / f"gone{HOSTILE_NAME}.png", testid="thumb",
                           shown_as=f"gone{HOSTILE_NAME}.png"))
    box = gone.one(data_testid="thumb-missing")
    assert box.text() == f"image gone{HOSTILE_NAME}.png is missing or unreadable"
    assert not gone.find_all("img")


def test_waveform_and_embedded_audio(tmp_path: Path) -> None:
    wav = tmp_path / "v.wav"
    t = np.arange(16000) / 16000
    sf.write(wav, (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    svg = parse(waveform(wav, columns=50))
    assert svg.one("svg", data_testid="waveform").attrs["data-columns"] == "50"
    assert waveform(tmp_path / "none.wav") is None
    assert media_type(wav) == "audio/wav" and media_type("x.mp4") == "video/mp4"
    assert media_type("x.png") is None
    audio = parse(embedded_media(wav, testid="voice")).one("audio", data_testid="voice")
    data = base64.b64decode(audio.attrs["src"].split(",", 1)[1])
    assert audio.attrs["src"].startswith("data:audio/wav;base64,") and data == wav.read_bytes()
    big = parse(embedded_media(wav, max_bytes=100, testid="voice"))
    assert "larger than 100 bytes" in big.one(data_testid="voice-missing").text()
    gone = parse(embedded_media(tmp_path / f"{HOSTILE_NAME}.wav"))
    assert not gone.find_all("img") and "is missing" in gone.text()
    assert "not an audio or video file" in embedded_media(tmp_path / "a.png")


def test_cards_and_sheet() -> None:
    c = card(["<i>m</i>"], ["<b>x</b>"], testid="c", attrs={"who": HOSTILE_NAME})
    root = parse(contact_sheet([c, c], total=5, what="people"))
    cards = root.find_all("figure", data_testid="c")
    assert len(cards) == 2 and cards[0].attrs["data-who"] == HOSTILE_NAME
    assert not root.find_all("img") and cards[0].find_all("i")  # media is HTML, attrs escaped
    assert "5 people, showing the first 2" in root.text()
