"""Offline English speech with espeak-ng: fixed sentences, distinct voices, tight trimming."""

from __future__ import annotations

import io
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import MediaError
from ..media.audio import load_audio
from ..media.ffmpeg import binary, call, last_line

SAMPLE_RATE = 16_000
PEAK = 0.45  # per utterance; two overlapping utterances still stay below full scale

# Harvard sentences (IEEE 1969 recommended practice for speech quality), short ones only so
# that three people each saying one fit into a 10 s clip.
SENTENCES: tuple[str, ...] = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
    "The small pup gnawed a hole in the sock.",
)


@dataclass(frozen=True)
class Voice:
    """An espeak-ng voice (language + variant) with pitch (0-99) and speed (words/min)."""

    name: str
    pitch: int
    speed: int
    gender: str  # "f" or "m": matched to the face it is given to

    @property
    def label(self) -> str:
        return f"{self.name} pitch={self.pitch} speed={self.speed}"


FEMALE_VOICES: tuple[Voice, ...] = (
    Voice("en-us+f4", 68, 160, "f"),
    Voice("en-gb+f2", 55, 155, "f"),
    Voice("en-gb-scotland+f3", 78, 165, "f"),
    Voice("en-us+f1", 45, 170, "f"),
)
MALE_VOICES: tuple[Voice, ...] = (
    Voice("en-us+m3", 35, 165, "m"),
    Voice("en+m7", 55, 155, "m"),
    Voice("en-gb-x-rp+m1", 22, 160, "m"),
    Voice("en-029+m5", 45, 170, "m"),
)


@cache
def synthesize(text: str, voice: Voice, sample_rate: int = SAMPLE_RATE,
               timeout: float = 30.0) -> np.ndarray:
    """``text`` spoken by ``voice`` as float32 mono at ``sample_rate``, leading and trailing
    silence trimmed, peak-normalised to :data:`PEAK`. Deterministic; cached per process (the
    sample corpus's speech: :func:`speak` with ffmpeg's decoding)."""
    return speak(text, voice, sample_rate, timeout=timeout)


def speak(text: str, voice: Voice, sample_rate: int = SAMPLE_RATE, *,
          in_process: bool = False, timeout: float = 30.0) -> np.ndarray:
    """:func:`synthesize` without its cache. espeak-ng's WAV (22.05 kHz) is decoded and
    resampled by ffprobe + ffmpeg (the sample corpus's bytes depend on it), or with
    ``in_process`` by soundfile and soxr (:func:`~omni_core.media.audio.resample`): no
    ffprobe/ffmpeg processes, about 20 ms an utterance instead of 0.3 - 0.5 s (for callers
    that speak hundreds, the espeak clone double's voice grid); the two differ by about 2 %
    of the peak (their soxr filters), same length."""
    args = [binary("espeak-ng", package="espeak-ng"), "-v", voice.name, "-p",
            str(voice.pitch), "-s", str(voice.speed)]
    what = f"espeak-ng {voice.name}"
    if in_process:
        import soundfile as sf

        from ..media.audio import resample

        proc = call([*args, "--stdout", "--", text], timeout=timeout, what=what)
        if proc.returncode != 0 or not proc.stdout:
            raise MediaError(f"{what}: {last_line(proc.stderr)}")
        raw, rate = sf.read(io.BytesIO(proc.stdout), dtype="float32")
        audio = trim(resample(raw if raw.ndim == 1 else raw.mean(axis=1), rate, sample_rate))
    else:
        with tempfile.TemporaryDirectory(prefix="omni-tts-") as tdir:
            wav = Path(tdir) / "tts.wav"
            proc = call([*args, "-w", str(wav), "--", text], timeout=timeout, what=what)
            if proc.returncode != 0 or not wav.is_file():
                raise MediaError(f"{what}: {last_line(proc.stderr)}")
            audio = trim(load_audio(wav, sample_rate))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0:
        raise MediaError(f"{what}: produced silence for {text!r}")
    out = (audio * (PEAK / peak)).astype(np.float32)
    out.setflags(write=False)
    return out


def trim(audio: np.ndarray, rel_threshold: float = 0.02) -> np.ndarray:
    """Cut leading/trailing samples quieter than ``rel_threshold`` of the peak."""
    if not audio.size:
        return audio
    loud = np.flatnonzero(np.abs(audio) > rel_threshold * float(np.abs(audio).max()))
    if not loud.size:
        return audio[:0]
    return audio[loud[0]: loud[-1] + 1]
