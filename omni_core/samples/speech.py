"""Offline English speech with espeak-ng: fixed sentences, distinct voices, tight trimming."""

from __future__ import annotations

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
    silence trimmed, peak-normalised to :data:`PEAK`. Deterministic; cached per process."""
    with tempfile.TemporaryDirectory(prefix="omni-tts-") as tdir:
        wav = Path(tdir) / "tts.wav"
        args = [binary("espeak-ng", package="espeak-ng"), "-v", voice.name, "-p",
                str(voice.pitch), "-s", str(voice.speed), "-w", str(wav), "--", text]
        proc = call(args, timeout=timeout, what=f"espeak-ng {voice.name}")
        if proc.returncode != 0 or not wav.is_file():
            raise MediaError(f"espeak-ng {voice.name}: {last_line(proc.stderr)}")
        audio = trim(load_audio(wav, sample_rate))
    peak = float(np.abs(audio).max()) if audio.size else 0.0
    if peak <= 0:
        raise MediaError(f"espeak-ng {voice.name}: produced silence for {text!r}")
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
