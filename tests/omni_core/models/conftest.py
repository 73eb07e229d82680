"""Real speech that ships inside installed wheels, for the lite models' tests.

- pyannote.audio's ``sample.wav``: 30 s of a real two-person telephone call (16 kHz) with its
  diarization (``sample.rttm``) and transcript (``sample.stm``);
- f5-tts's example prompts: four real English voices (``basic_ref_en.wav``, whose transcript
  is the ``ref_text`` of the package's ``basic.toml``, and ``main``/``town``/``country``
  .flac of its multi-voice story example).
"""

from __future__ import annotations

import importlib.util
import tomllib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def one_torch_thread():
    """Small LSTM batches: on a busy 2-core box intra-op threads make every op wait for a
    descheduled worker (a 30 s clip's diarization takes 4 - 6 s instead of 0.3 s)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass(frozen=True)
class Recording:
    wav: np.ndarray  # 16 kHz mono float32
    rttm: list[tuple[str, float, float]]  # (speaker, start_s, end_s)
    stm: list[tuple[str, float, float, str]]  # (speaker, start_s, end_s, text)

    @property
    def duration(self) -> float:
        return len(self.wav) / 16000


@pytest.fixture(scope="session")
def sample_recording() -> Recording:
    import soundfile as sf

    from omni_core.samples.recording import parse_rttm, parse_stm, sample_dir

    d = sample_dir()
    wav, sr = sf.read(d / "sample.wav", dtype="float32")
    assert sr == 16000 and wav.ndim == 1
    wav.setflags(write=False)
    return Recording(wav, parse_rttm((d / "sample.rttm").read_text()),
                     parse_stm((d / "sample.stm").read_text()))


@dataclass(frozen=True)
class Voices:
    audio: dict[str, np.ndarray]  # name -> 16 kHz mono float32
    basic_text: str  # what basic_ref_en.wav says


@pytest.fixture(scope="session")
def f5_voices() -> Voices:
    from omni_core.media.audio import load_audio

    spec = importlib.util.find_spec("f5_tts")
    assert spec is not None and spec.submodule_search_locations, "f5-tts is in the lock"
    root = Path(next(iter(spec.submodule_search_locations))) / "infer" / "examples"
    files = {"basic": root / "basic" / "basic_ref_en.wav", "main": root / "multi" / "main.flac",
             "town": root / "multi" / "town.flac", "country": root / "multi" / "country.flac"}
    audio = {}
    for name, path in files.items():
        a = load_audio(path, 16000)
        a.setflags(write=False)
        audio[name] = a
    text = tomllib.loads((root / "basic" / "basic.toml").read_text())["ref_text"]
    return Voices(audio, text)
