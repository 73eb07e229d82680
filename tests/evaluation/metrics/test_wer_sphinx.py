"""WER (PocketSphinx), the lite backend: the WER protocol with PocketSphinx's real US-English
models on real speech; a non-English instance is not computed, with the reason. The
recogniser itself is tested in tests/omni_core/models/test_sphinx.py; the protocol in
test_wer.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import f5_examples

from evaluation.inputs import InstanceInputs
from evaluation.metrics import wer as W
from evaluation.metrics.wer_sphinx import (
    CAVEAT,
    SphinxOptions,
    SphinxTranscriber,
    WERSphinx,
    not_english,
)
from omni_core.errors import OmniError
from omni_core.manifests import read_manifest

SR = 16000


@pytest.fixture(scope="module")
def metric() -> WERSphinx:
    m = WERSphinx(weights="debug")  # no weights folder: the wheel's model all the same
    m.setup()
    return m


def test_clean_english_speech_and_a_mismatched_text(metric, f5_voices):
    """f5-tts's English prompt against its own transcript and against another sentence
    (the text it is the voice prompt for, in basic.toml)."""
    audio = f5_voices.audio["basic"]
    right = W.score_wer(audio, SR, f5_voices.basic_text, metric.model, metric.options)
    # measured 0.111: "someone call me nature others call me mother nature"
    assert right.wer is not None and right.wer <= 0.2, right.transcript.text
    assert right.detail.reference == "some call me nature others call me mother nature"
    other = tomllib.loads((f5_examples() / "basic" / "basic.toml").read_text())["gen_text"]
    wrong = W.utterance_wer(other, right.transcript.text)  # the same transcript, other text
    # measured 0.929
    assert wrong.wer >= 0.8 and wrong.wer > right.wer + 0.6

    tr = right.transcript  # shaped like Whisper's, for the protocol code
    assert tr.text == tr.text.strip() and "nature" in tr.text and not tr.truncated
    assert tr.tokens == () and tr.avg_logprob <= 0.0 and np.isnan(tr.no_speech_prob)
    assert tr.duration_s == pytest.approx(len(audio) / SR)
    silence = metric.model.transcribe(np.zeros(SR, np.float32))
    assert silence.text == "" and silence.avg_logprob == 0.0


@pytest.mark.parametrize(("text", "why"), [
    ("Some call me nature, others call me mother nature.", None),
    ("Hello?", None),
    ("I don't really care what you call me. I've been a silent spectator.", None),
    ("对，这就是我，万人敬仰的太乙真人。", "written in another script"),
    ("Привет, как дела?", "written in another script"),
    ("Vamos a la playa mañana por la tarde si no llueve.", "letters English does not use (ñ)"),
    ("Wir gehen heute Abend ins Kino und danach essen wir zusammen.", "36% of the reference"),
    ("Il fait beau aujourd'hui, nous allons nous promener dans le parc.", "73% of the"),
    ("Oggi andiamo al mercato per comprare frutta e verdura fresca.", "30% of the reference"),
    # the known limit of the heuristic: Spanish whose words are all in CMUdict passes
    ("Hola, me llamo Carlos y vivo en Madrid con mi familia.", None),
])
def test_english_test(metric, text, why):
    got = not_english(text, metric.asr.vocabulary, SphinxOptions().min_in_vocabulary)
    if why is None:
        assert got is None
    else:
        assert got is not None and got.startswith("the lite WER (PocketSphinx) recognises US "
                                                  "English only") and why in got, got


def _inputs(speech_bench, iid: str) -> InstanceInputs:
    inst = read_manifest(speech_bench.instances, "bench_instances").set_index("instance_id")
    row = inst.loc[iid]
    return InstanceInputs(
        instance_id=iid, task=row.task, split=row.split, caption_text=row.caption,
        video_path=speech_bench.pred / f"{iid}.mp4", audio_path=speech_bench.pred / f"{iid}.wav",
        image_refs=[], audio_refs=[Path(p) for p in row.audio_refs])


def test_a_non_english_instance_is_not_computed_with_the_reason(metric, speech_bench):
    zh = _inputs(speech_bench, "zh_single")
    out = metric.compute(zh)
    assert "wer_sphinx" not in out
    assert "US English only" in out["wer_sphinx_reason"] and "another script" in out[
        "wer_sphinx_reason"]
    assert not zh._audio  # decided from the caption: the audio is not even decoded
    en = metric.compute(_inputs(speech_bench, "en_single"))
    assert set(en) == {"wer_sphinx"} and en["wer_sphinx"] <= 0.2


def test_labelled_as_not_the_paper_protocol_and_options():
    (out,) = WERSphinx.spec.outputs
    assert out.name == "wer_sphinx" and out.label == "WER (PocketSphinx)" and not out.split
    assert out.caveat == CAVEAT and "Whisper" in CAVEAT and "English only" in CAVEAT
    assert WERSphinx.spec.lite_for == "wer" and WERSphinx.spec.backend == "pocketsphinx"
    o = SphinxOptions()
    assert o.to_dict() == {"resampler": "fft", "normalization": "seed-tts-eval",
                           "empty_reference": "skip", "segment_pad_s": 0.0,
                           "min_in_vocabulary": 0.8}
    assert o.decoding() is None  # no Whisper decoding choices: they would mean nothing here
    with pytest.raises(OmniError, match="SphinxOptions.min_in_vocabulary"):
        SphinxOptions(min_in_vocabulary=1.5)
    with pytest.raises(OmniError, match="SphinxOptions.resampler"):
        SphinxOptions(resampler="linear")  # type: ignore[arg-type]
    assert isinstance(SphinxTranscriber, type)
