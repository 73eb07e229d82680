"""Whisper ASR (omni_core.models.whisper): equivalence with openai-whisper and with the
transformers path seed-tts-eval ran, the debug twin, and the released checkpoint layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omni_core import weights
from omni_core.errors import OmniError, WeightsError
from omni_core.models import whisper as W

ENTRY = "whisper-large-v3"


@pytest.fixture(scope="module")
def twin() -> W.WhisperASR:
    return W.WhisperASR.debug(seed=0)


@pytest.fixture(scope="module")
def noise() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(16000 * 3) * 0.1).astype(np.float32)


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


def test_missing_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="omni weights fetch whisper-large-v3"):
        W.WhisperASR.from_pretrained(root=tmp_path)


def test_decoding_options_are_validated() -> None:
    with pytest.raises(OmniError, match="long_form"):
        W.WhisperOptions(long_form="chunked")  # type: ignore[arg-type]
    o = W.WhisperOptions()
    assert (o.language, o.task, o.long_form, o.beam_size, o.fp16) == (
        "en", "transcribe", "first_window", None, False)
