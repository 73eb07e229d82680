"""WER: jiwer's vectors, seed-tts-eval's normalisation, options, end to end on the sample
corpus. The Whisper wrapper itself is tested in tests/omni_core/models/test_whisper.py."""

from __future__ import annotations

import dataclasses
import math
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from evaluation.metrics import wer as W
from omni_core.captions import StructuredCaption, parse_caption
from omni_core.errors import OmniError


@pytest.fixture(scope="module")
def twin() -> W.WhisperASR:
    return W.WhisperASR.debug(seed=0)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(16000 * 3) * 0.1).astype(np.float32)


# --------------------------------------------------------------------------------------------
# protocol math


@pytest.mark.parametrize(
    ("ref", "hyp", "expected"),
    [
        ("This is a test", "This test", 0.5),  # jiwer's own test vectors
        ("X", "X X Y Y", 3.0),
        ("X Y X", "X Z", 2 / 3),
        ("", "hello", 1.0),
        ("", "", 0.0),
    ],
)
def test_jiwer_vectors(ref: str, hyp: str, expected: float) -> None:
    assert W.utterance_wer(ref, hyp, normalize=False).wer == pytest.approx(expected)
    assert W.utterance_wer(ref, hyp).wer == pytest.approx(expected)  # normalising is a no-op


def test_counts_and_upstream_rates() -> None:
    d = W.utterance_wer("X Y X", "X Z")
    assert (d.hits, d.substitutions, d.deletions, d.insertions) == (1, 1, 1, 0)
    assert d.n_reference_words == 3
    assert d.substitution_rate == pytest.approx(1 / 3) and d.insertion_rate == 0


def _upstream_process_one(truth: str, hypo: str) -> tuple[str, str]:
    """seed-tts-eval's ``process_one`` (lang "en") re-stated: delete punctuation but "'",
    replace double spaces once, lower-case; jiwer's default transform then collapses/strips."""
    for ch in W.PUNCTUATION + "'":
        if ch == "'":
            continue
        truth, hypo = truth.replace(ch, ""), hypo.replace(ch, "")
    truth, hypo = truth.replace("  ", " ").lower(), hypo.replace("  ", " ").lower()
    return truth, hypo


def test_normalisation_on_punctuated_text() -> None:
    text = 'Hello, World!  It\'s a well-known fact—isn’t it?  "Yes"... (really) 100% sure.'
    assert W.normalize_text(text) == (
        "hello world it's a wellknown factisnt it yes really 100 sure"
    )
    assert W.normalize_text("  Multiple   SPACES\there  ") == "multiple spaces here"
    assert W.normalize_text("你好，世界。") == "你好世界"
    assert W.normalize_text("Don't stop") == "don't stop"
    # every ASCII punctuation mark but the apostrophe is deleted
    assert set(string.punctuation) - set(W.PUNCTUATION) == {"'"}
    assert "\u2019" in W.PUNCTUATION and "\u2014" in W.PUNCTUATION


@pytest.mark.parametrize(
    ("ref", "hyp"),
    [
        ("Hello there, friend!", " hello there friend."),
        ("It's a well-known fact; isn't it?", "It's a well known fact isn't it"),
        ("Wait... what?!  No—way.", "wait what no way"),
        ("Mr. Smith's dog, Rex, barked.", "Mister Smith's dog rex barked"),
    ],
)
def test_wer_matches_upstream_normalisation(ref: str, hyp: str) -> None:
    import jiwer

    t, h = _upstream_process_one(ref, hyp)
    assert W.utterance_wer(ref, hyp).wer == pytest.approx(jiwer.process_words(t, h).wer)


def test_speech_spans_on_released_caption_format() -> None:
    joint = "<sub1> smiles and says <S>Hello there, friend!<E> while <sub2> nods."
    assert W.speech_spans(joint) == ["Hello there, friend!"]
    two = ("<sub1> waves and says, <S>Good  morning,\n everyone.<E> <sub2> replies, "
           "<S>Morning!<E> Then <sub1> adds <S>Let's begin.<E>")
    assert W.speech_spans(two) == ["Good morning, everyone.", "Morning!", "Let's begin."]
    assert W.reference_text(two) == "Good morning, everyone. Morning! Let's begin."
    assert W.speech_spans("<sub1> stands silently.") == []
    cap = parse_caption(
        "[FINAL_VIDEO_CAPTION_START]\n[CO_ANALYSIS_START]\n" + two + "\n[CO_ANALYSIS_END]\n"
        "[FINAL_VIDEO_CAPTION_END]\n[SPEAKER_TIMESTAMPS_START]\n"
        '{"<sub1>": ["<Time_S>00:00-00:02<Time_E>", "<Time_S>00:03-00:04<Time_E>"], '
        '"<sub2>": ["<Time_S>00:02-00:03<Time_E>"]}\n[SPEAKER_TIMESTAMPS_END]'
    )
    assert W.reference_text(cap) == W.reference_text(two)


def test_mean_wer_skips_not_applicable() -> None:
    assert W.mean_wer([0.0, 0.5, None, 1.0]) == pytest.approx(0.5)
    assert W.mean_wer([None]) is None


def test_empty_reference_policy(twin: W.WhisperASR, noise: np.ndarray) -> None:
    skipped = W.score_wer(noise, 16000, "", twin)
    assert skipped.wer is None and skipped.detail is None and "no reference" in skipped.note
    scored = W.score_wer(noise, 16000, "", twin, W.WEROptions(empty_reference="score"))
    n_words = len(W.normalize_text(scored.transcript.text).split())
    assert scored.wer == pytest.approx(float(n_words))  # jiwer 4: insertions over "1" word


def test_unattributed_speech_falls_back_to_whole_audio(twin: W.WhisperASR,
                                                       noise: np.ndarray) -> None:
    cap = StructuredCaption(joint="<S>Hi there.<E> Then <S>Bye.<E>",
                            speaker_timestamps={"<sub1>": [(0.0, 1.0)], "<sub2>": [(1.0, 2.0)]})
    res = W.score_wer_caption(noise, 16000, cap, twin)
    assert isinstance(res, W.WERResult) and res.reference == "Hi there. Bye."
    assert "no speaker anchor" in res.note and res.wer is not None


# --------------------------------------------------------------------------------------------
# options


def test_options_are_validated() -> None:
    with pytest.raises(OmniError, match="long_form"):
        W.WEROptions(long_form="chunked")  # type: ignore[arg-type]
    assert W.WEROptions().to_dict()["language"] == "en"


def test_decoding_choices_reach_whisper() -> None:
    from omni_core.models.whisper import WhisperOptions

    assert W.WEROptions().decoding() == WhisperOptions()
    o = W.WEROptions(language=None, beam_size=5, long_form="transcribe",
                     condition_on_previous_text=False, fp16=True, resampler="soxr")
    assert o.decoding() == WhisperOptions(language=None, beam_size=5, long_form="transcribe",
                                          condition_on_previous_text=False, fp16=True)


# --------------------------------------------------------------------------------------------
# end to end on the sample corpus with the debug twin


def _clip(sample_corpus, n_people: int) -> tuple[Path, pd.DataFrame]:
    files = pd.read_parquet(sample_corpus.files_table)
    row = files[(files.kind == "talking") & (files.n_people == n_people)].iloc[0]
    turns = pd.read_parquet(sample_corpus.turns_table)
    return sample_corpus.out / row.file, turns[turns.file == row.file].sort_values("start_s")


def test_end_to_end_single_speaker(sample_corpus, twin: W.WhisperASR) -> None:
    from omni_core.media import load_audio

    path, turns = _clip(sample_corpus, 1)
    audio = load_audio(path, 16000)
    reference = " ".join(turns.text)
    a = W.score_wer(audio, 16000, reference, twin)
    assert a.wer is not None and math.isfinite(a.wer) and a.wer >= 0
    assert a.detail is not None and a.detail.reference == W.normalize_text(reference)
    assert a.transcript.duration_s == pytest.approx(len(audio) / 16000)
    assert W.score_wer(audio, 16000, reference, twin).wer == a.wer  # deterministic


def test_resampling_and_downmix() -> None:
    from scipy.signal import resample_poly

    t = np.arange(16000) / 16000
    audio = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    stereo = np.stack([resample_poly(audio, 3, 1), np.zeros(48000)], axis=1)
    for how in ("fft", "soxr"):
        x = W.to_16k_mono(stereo, 48000, how)
        assert x.dtype == np.float32 and x.shape == (16000,)
        assert np.abs(x[800:-800] - audio[800:-800] / 2).max() < 1e-2  # channel mean
    assert np.array_equal(W.to_16k_mono(audio, 16000), audio)  # 16 kHz: untouched

def test_end_to_end_two_speakers(sample_corpus, twin: W.WhisperASR) -> None:
    from omni_core.media import load_audio

    path, turns = _clip(sample_corpus, 2)
    audio = load_audio(path, 16000)
    speakers = {p: f"<sub{i + 1}>" for i, p in enumerate(sorted(set(turns.speaker)))}
    joint = " ".join(f"{speakers[t.speaker]} says <S>{t.text}<E>" for t in turns.itertuples())
    stamps: dict[str, list[tuple[float, float]]] = {}
    for t in turns.itertuples():
        stamps.setdefault(speakers[t.speaker], []).append((t.start_s, t.end_s))
    cap = StructuredCaption(joint=joint, speaker_timestamps=stamps)
    res = W.score_wer_caption(audio, 16000, cap, twin)
    assert isinstance(res, W.MultiSpeakerWER) and res.mode == "segments"
    assert [s.speaker for s in res.speakers] == sorted(stamps)
    assert all(s.wer is not None and s.wer >= 0 for s in res.speakers)
    assert res.wer == pytest.approx(np.mean([s.wer for s in res.speakers]))
    for s in res.speakers:
        assert len(s.transcripts) == len(stamps[s.speaker])
        assert s.reference == W.reference_text(
            " ".join(f"<S>{t.text}<E>" for t in turns.itertuples()
                     if speakers[t.speaker] == s.speaker)
        )
    # per turn: the k-th segment's transcript against the speaker's k-th span
    for s in res.speakers:
        spans = [t.text for t in turns.itertuples() if speakers[t.speaker] == s.speaker]
        assert len(s.turn_wers) == len(spans)
        for k, (text, tr) in enumerate(zip(spans, s.transcripts, strict=True)):
            want = W._score(text, tr.text, W.WEROptions()).wer
            assert s.turn_wers[k] == pytest.approx(want), (s.speaker, k)
    # no timestamps: whole audio against every span in caption order
    fb = W.score_wer_caption(audio, 16000, dataclasses.replace(cap, speaker_timestamps={}),
                             twin)
    assert isinstance(fb, W.MultiSpeakerWER) and fb.mode == "whole_audio"
    assert fb.whole is not None and fb.whole.reference == W.reference_text(joint)
    assert fb.wer is not None and fb.wer >= 0 and all(s.wer is None for s in fb.speakers)
