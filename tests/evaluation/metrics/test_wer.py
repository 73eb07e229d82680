"""WER: jiwer's vectors, seed-tts-eval's normalisation, Whisper equivalence, checkpoint layout."""

from __future__ import annotations

import dataclasses
import math
import string
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from evaluation.metrics import wer as W
from omni_core import weights
from omni_core.captions import StructuredCaption, parse_caption
from omni_core.errors import OmniError, WeightsError

ENTRY = "whisper-large-v3"


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
# same weights, same numbers as the reference implementations


def test_equivalent_to_openai_whisper(twin: W.WhisperASR, noise: np.ndarray) -> None:
    import whisper
    from whisper.model import ModelDimensions, Whisper

    ref = Whisper(ModelDimensions(**W.DEBUG_DIMS)).eval()
    ref.load_state_dict(twin.model.state_dict())
    mel_ref = whisper.log_mel_spectrogram(whisper.pad_or_trim(torch.from_numpy(noise)),
                                          n_mels=128)
    mel = twin.log_mel(noise)
    assert mel.shape == (128, 3000) and torch.equal(mel, mel_ref)
    tok = twin.tokenizer()
    tokens = torch.tensor([[*tok.sot_sequence_including_notimestamps, 400, 1000, 51000]])
    with torch.no_grad():
        logits_ref = ref(mel_ref[None], tokens)
    logits = twin.logits(mel[None], tokens)
    assert logits.shape == (1, 7, 51866) and torch.equal(logits, logits_ref)
    # whisper's own decoding on its own model gives our transcript, token for token
    opts = whisper.DecodingOptions(language="en", task="transcribe", temperature=0.0,
                                   without_timestamps=True, fp16=False)
    out_ref = whisper.decode(ref, mel_ref, opts)
    ours = twin.transcribe(noise)
    assert ours.tokens == tuple(out_ref.tokens) and ours.text == out_ref.text.strip()
    assert tuple(tok.sot_sequence) == (tok.sot, tok.language_token, tok.transcribe)
    assert tok.decode([tok.language_token]) == "<|en|>" and twin.model.num_languages == 100


def _openai_to_hf(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """openai-whisper key names -> transformers' WhisperForConditionalGeneration."""
    renames = [
        ("encoder.positional_embedding", "encoder.embed_positions.weight"),
        ("decoder.positional_embedding", "decoder.embed_positions.weight"),
        ("decoder.token_embedding", "decoder.embed_tokens"),
        ("encoder.ln_post", "encoder.layer_norm"), ("decoder.ln.", "decoder.layer_norm."),
        (".blocks.", ".layers."), (".cross_attn_ln.", ".encoder_attn_layer_norm."),
        (".cross_attn.", ".encoder_attn."), (".attn_ln.", ".self_attn_layer_norm."),
        (".attn.", ".self_attn."), (".query.", ".q_proj."), (".key.", ".k_proj."),
        (".value.", ".v_proj."), (".out.", ".out_proj."), (".mlp_ln.", ".final_layer_norm."),
        (".mlp.0.", ".fc1."), (".mlp.2.", ".fc2."),
    ]
    out = {}
    for key, value in state.items():
        for a, b in renames:
            key = key.replace(a, b)
        out["model." + key] = value
    out["proj_out.weight"] = out["model.decoder.embed_tokens.weight"]
    return out


def test_equivalent_to_transformers_path_used_by_seed_tts_eval(
    twin: W.WhisperASR, noise: np.ndarray
) -> None:
    """Upstream ran WhisperProcessor + WhisperForConditionalGeneration: same weights, same
    log-mel and logits as openai-whisper's code that we run."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    d = W.DEBUG_DIMS
    cfg = WhisperConfig(
        vocab_size=d["n_vocab"], num_mel_bins=d["n_mels"], d_model=d["n_audio_state"],
        encoder_layers=d["n_audio_layer"], encoder_attention_heads=d["n_audio_head"],
        decoder_layers=d["n_text_layer"], decoder_attention_heads=d["n_text_head"],
        encoder_ffn_dim=4 * d["n_audio_state"], decoder_ffn_dim=4 * d["n_text_state"],
        max_source_positions=d["n_audio_ctx"], max_target_positions=d["n_text_ctx"],
        dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    )
    hf = WhisperForConditionalGeneration(cfg).eval()
    missing, unexpected = hf.load_state_dict(_openai_to_hf(twin.model.state_dict()),
                                             strict=False)
    assert not unexpected and not missing
    feats = WhisperFeatureExtractor(feature_size=128)(
        noise, sampling_rate=16000, return_tensors="pt"
    ).input_features
    mel = twin.log_mel(noise)
    assert torch.allclose(feats[0], mel, atol=1e-5)
    tokens = torch.tensor([[*twin.tokenizer().sot_sequence_including_notimestamps, 400, 1000]])
    assert tokens[0, :4].tolist() == [50258, 50259, 50360, 50364]  # large-v3's ids
    with torch.no_grad():
        hf_logits = hf(input_features=mel[None], decoder_input_ids=tokens).logits
    assert torch.allclose(twin.logits(mel[None], tokens), hf_logits, atol=1e-4, rtol=1e-4)


def test_debug_twin_is_deterministic(twin: W.WhisperASR) -> None:
    again = W.WhisperASR.debug(seed=0)
    other = W.WhisperASR.debug(seed=1)
    p = "decoder.positional_embedding"
    assert torch.equal(again.model.state_dict()[p], twin.model.state_dict()[p])
    assert not torch.equal(other.model.state_dict()[p], twin.model.state_dict()[p])
    assert twin.is_debug and "not meaningful" in twin.describe()


# --------------------------------------------------------------------------------------------
# the released checkpoint layout



def test_loads_the_large_v3_checkpoint_layout(tmp_path: Path, twin: W.WhisperASR,
                                              unpinned_registry) -> None:
    from whisper.model import AudioEncoder, TextDecoder

    assert [f.path for f in weights.load_registry().get("whisper-large-v3").files] == [
        "large-v3.pt"
    ]
    folder = tmp_path / "whisper-large-v3"
    folder.mkdir()
    # exactly what large-v3.pt holds: {"dims": {...ints...}, "model_state_dict": {...}}
    ckpt = {"dims": dict(W.DEBUG_DIMS), "model_state_dict": twin.model.state_dict()}
    torch.save(ckpt, folder / "large-v3.pt")
    m = W.WhisperASR.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))
    assert not m.is_debug and m.weights_path == folder
    for k, v in twin.model.state_dict().items():
        assert torch.equal(m.model.state_dict()[k], v), k
    # the full-size architecture the real file must fit: Whisper large-v3, ~1550 M parameters
    d = W.LARGE_V3_DIMS
    with torch.device("meta"):
        enc = AudioEncoder(d["n_mels"], d["n_audio_ctx"], d["n_audio_state"], d["n_audio_head"],
                           d["n_audio_layer"])
        dec = TextDecoder(d["n_vocab"], d["n_text_ctx"], d["n_text_state"], d["n_text_head"],
                          d["n_text_layer"])
    n_params = sum(p.numel() for p in [*enc.parameters(), *dec.parameters()])
    assert 1.50e9 < n_params < 1.60e9
    assert enc.state_dict()["conv1.weight"].shape == (1280, 128, 3)
    assert dec.state_dict()["token_embedding.weight"].shape == (51866, 1280)
    # a bare state dict (not openai-whisper's layout) is one clear error
    torch.save(twin.model.state_dict(), folder / "large-v3.pt")
    with pytest.raises(WeightsError, match="dims"):
        W.WhisperASR.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))


def test_alignment_heads_set_for_large_v3(tmp_path: Path, twin: W.WhisperASR,
                                          monkeypatch: pytest.MonkeyPatch,
                                          unpinned_registry) -> None:
    """``whisper.load_model("large-v3")`` also sets the word-timestamp alignment heads; so do
    we when the checkpoint has large-v3's dims (faked here with the twin's dims)."""
    import base64
    import gzip

    import whisper

    dump = whisper._ALIGNMENT_HEADS["large-v3"]
    heads = np.frombuffer(gzip.decompress(base64.b85decode(dump)), dtype=bool)
    d = W.LARGE_V3_DIMS
    assert heads.size == d["n_text_layer"] * d["n_text_head"]
    mask = np.array([[False, True], [True, False]])
    monkeypatch.setitem(whisper._ALIGNMENT_HEADS, "large-v3",
                        base64.b85encode(gzip.compress(mask.tobytes())))
    monkeypatch.setattr(W, "LARGE_V3_DIMS", dict(W.DEBUG_DIMS))
    (tmp_path / "whisper-large-v3").mkdir()
    torch.save({"dims": dict(W.DEBUG_DIMS), "model_state_dict": twin.model.state_dict()},
               tmp_path / "whisper-large-v3" / "large-v3.pt")
    m = W.WhisperASR.from_pretrained(root=tmp_path, registry=unpinned_registry(ENTRY))
    assert torch.equal(m.model.alignment_heads.to_dense(), torch.from_numpy(mask))


def test_options_are_validated() -> None:
    with pytest.raises(OmniError, match="long_form"):
        W.WEROptions(long_form="chunked")  # type: ignore[arg-type]
    assert W.WEROptions().to_dict()["language"] == "en"


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="omni weights fetch whisper-large-v3"):
        W.WhisperASR.from_pretrained(root=tmp_path)


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
    # no timestamps: whole audio against every span in caption order
    fb = W.score_wer_caption(audio, 16000, dataclasses.replace(cap, speaker_timestamps={}),
                             twin)
    assert isinstance(fb, W.MultiSpeakerWER) and fb.mode == "whole_audio"
    assert fb.whole is not None and fb.whole.reference == W.reference_text(joint)
    assert fb.wer is not None and fb.wer >= 0 and all(s.wer is None for s in fb.speakers)
