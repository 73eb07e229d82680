"""Voice cloning backends and the clone check (speaker similarity + words)."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from omni_core.errors import OmniError
from omni_core.models.speaker import SpeakerVerifier
from omni_core.models.whisper import WhisperASR
from omni_core.samples.speech import Voice, synthesize
from pipelines.crosspair.voices import (
    CloneCheckOptions,
    CosyVoiceCloner,
    EspeakCloner,
    check_clone,
    make_cloner,
    median_f0,
)

LOW = synthesize("The birch canoe slid on the smooth planks.", Voice("en-us+m3", 15, 160, "m"))
HIGH = synthesize("The birch canoe slid on the smooth planks.", Voice("en-us+f4", 90, 160, "f"))


def test_the_espeak_double_follows_the_prompts_pitch():
    cloner = make_cloner("espeak")
    assert isinstance(cloner, EspeakCloner) and cloner.test_double
    f_low, f_high = median_f0(LOW), median_f0(HIGH)
    assert f_low is not None and f_high is not None and f_high > 1.3 * f_low
    assert cloner.pitch_for(f_low) < cloner.pitch_for(f_high)
    text = "Glue the sheet to the dark blue background."
    a = cloner.clone(text, LOW, 16000, "")
    b = cloner.clone(text, HIGH[::2].copy(), 8000, "")  # another rate: resampled first
    assert a.dtype == np.float32 and a.ndim == 1 and a.size > 16000
    fa, fb = median_f0(a), median_f0(b)
    # each clone sits nearer its own prompt's pitch than the other prompt's (log-frequency)
    assert abs(math.log(fa / f_low)) < abs(math.log(fa / f_high))
    assert abs(math.log(fb / f_high)) < abs(math.log(fb / f_low))
    assert median_f0(np.zeros(16000, np.float32)) is None


def test_cosyvoice_is_optional_and_says_how_to_get_it(tmp_path, monkeypatch):
    with pytest.raises(OmniError, match="model folder"):
        CosyVoiceCloner(tmp_path / "missing")
    monkeypatch.setitem(sys.modules, "cosyvoice", None)  # not installed (it is not on PyPI)
    with pytest.raises(OmniError, match="github.com/FunAudioLLM/CosyVoice"):
        make_cloner("cosyvoice", model_dir=tmp_path)
    with pytest.raises(OmniError, match="unknown clone backend 'bark'"):
        make_cloner("bark")


def test_the_check_measures_both_and_names_what_failed():
    verifier = SpeakerVerifier.debug(seed=0)
    asr = WhisperASR.debug(seed=0)
    text = "The birch canoe slid on the smooth planks."
    same = check_clone(LOW, 16000, LOW, 16000, text, verifier, asr,
                       CloneCheckOptions(min_similarity=0.99, max_wer=math.inf))
    assert same.similarity == pytest.approx(1.0, abs=1e-5) and same.passed
    assert same.reason == "" and same.wer >= 0.0
    other = check_clone(HIGH, 16000, LOW, 16000, text, verifier, asr,
                        CloneCheckOptions(min_similarity=0.9999, max_wer=math.inf))
    assert other.similarity < same.similarity
    assert not other.passed and other.reason.startswith("speaker similarity")
    words = check_clone(LOW, 16000, LOW, 16000, text, verifier, asr,
                        CloneCheckOptions(min_similarity=-1.0, max_wer=-1.0))
    assert not words.passed and words.reason.startswith("WER")
    assert set(words.to_dict()) == {"similarity", "wer", "transcript", "passed", "reason"}


def test_clone_text_shares_the_fewest_words_with_the_target():
    from omni_core.samples.speech import SENTENCES as HARVARD
    from omni_core.wer import normalize_text
    from pipelines.crosspair.voices import load_texts, pick_text

    said = "the boy was there when the sun rose and the juice of lemons makes fine punch"
    picks = {pick_text(HARVARD, said, f"speaker{k}") for k in range(20)}
    words = set(normalize_text(said).split())
    least = min(len(words & set(normalize_text(t).split())) for t in HARVARD)
    assert all(len(words & set(normalize_text(t).split())) == least for t in picks)
    assert len(picks) > 1  # ties spread over speakers by key
    assert pick_text(HARVARD, said, "speaker3") == pick_text(HARVARD, said, "speaker3")
    assert load_texts(None) == HARVARD


def test_clone_texts_file(tmp_path):
    from pipelines.crosspair.voices import load_texts

    (tmp_path / "t.txt").write_text("One sentence.\n\n  Two sentences here.  \n")
    assert load_texts(tmp_path / "t.txt") == ("One sentence.", "Two sentences here.")
    (tmp_path / "e.txt").write_text("\n \n")
    with pytest.raises(OmniError, match="no sentence"):
        load_texts(tmp_path / "e.txt")
