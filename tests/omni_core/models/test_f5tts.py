"""F5-TTS wrapper: debug twin, the duration rule, release-layout loading, errors, offline."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from omni_core.errors import OmniError, WeightsError
from omni_core.models.f5tts import (
    CKPT_FILE,
    EMA_PREFIX,
    F5TTS,
    VOCAB_FILE,
    VOCOS_CONFIG,
    VOCOS_ENTRY,
    VOCOS_FILE,
    WEIGHTS_ENTRY,
    SamplingOptions,
    save_release_layout,
    split_text,
)
from omni_core.weights import Registry, load_registry

HOP = 256
SR = 24000
FAST = SamplingOptions(nfe_steps=4)  # the rule under test does not depend on the step count
PROMPT_TEXT = "A short prompt sentence."


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    def refuse(*_a, **_k):
        raise AssertionError("the F5-TTS wrapper tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture(scope="module")
def registry() -> Registry:
    return load_registry()


@pytest.fixture(scope="module")
def tts() -> Iterator[F5TTS]:
    before = torch.get_num_threads()  # one thread here, restored: later tests compare runs
    torch.set_num_threads(1)
    try:
        yield F5TTS.debug(seed=0, options=FAST)
    finally:
        torch.set_num_threads(before)


def _prompt(seconds: float = 1.5, rate: int = SR, amp: float = 0.05) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (amp * np.sin(2 * np.pi * 140 * t) + 0.005 * rng.standard_normal(t.size)).astype(
        np.float32)


def _expected_samples(n_prompt_24k: int, prompt_text: str, text: str) -> int:
    """upstream: ref frames (prompt + 50 ms), total = ref + ref/len(ref text)*len(text)/speed
    in UTF-8 bytes (speed 0.3 under 10 bytes); Vocos gives hop * (new frames - 1) samples."""
    ref = (n_prompt_24k + int(0.05 * SR)) // HOP
    ptext = prompt_text.strip() + " "  # already ends with "."
    gen = len(text.encode())
    speed = 0.3 if gen < 10 else 1.0
    total = ref + int(ref / len(ptext.encode()) * gen / speed)
    return (total - ref - 1) * HOP


def test_debug_build_is_seeded_and_leaves_global_rng_alone():
    before = torch.random.get_rng_state()
    a, b, c = F5TTS.debug(seed=0), F5TTS.debug(seed=0), F5TTS.debug(seed=1)
    assert torch.equal(before, torch.random.get_rng_state())
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert sa.keys() == sb.keys() == sc.keys()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.is_debug and "not meaningful" in a.describe()
    # same upstream classes as the release
    assert type(a.model).__module__ == "f5_tts.model.cfm"
    assert type(a.model.transformer).__module__ == "f5_tts.model.backbones.dit"
    assert type(a.vocoder).__module__ == "vocos.pretrained"


def test_clone_follows_duration_rule_and_is_deterministic(tts):
    prompt = _prompt()
    text = "Hello there, this is a test of the cloner."
    before = torch.random.get_rng_state()
    y = tts.clone(text, prompt, SR, PROMPT_TEXT, seed=3)
    assert torch.equal(before, torch.random.get_rng_state())
    assert y.dtype == np.float32 and y.ndim == 1 and np.isfinite(y).all()
    assert y.size == _expected_samples(prompt.size, PROMPT_TEXT, text)
    assert np.array_equal(y, tts.clone(text, prompt, SR, PROMPT_TEXT, seed=3))
    assert not np.array_equal(y, tts.clone(text, prompt, SR, PROMPT_TEXT, seed=4))
    short = "Hi there"  # < 10 bytes: upstream slows it down (speed 0.3)
    ys = tts.clone(short, prompt, SR, PROMPT_TEXT)
    assert ys.size == _expected_samples(prompt.size, PROMPT_TEXT, short)


def test_clone_resamples_stereo_prompt_and_rejects_bad_input(tts):
    stereo = np.stack([_prompt(rate=16000)] * 2, axis=1)
    y = tts.clone("Resampled prompt works fine.", stereo, 16000, PROMPT_TEXT)
    assert np.isfinite(y).all() and y.size > 0
    with pytest.raises(OmniError, match="empty"):
        tts.clone("   ", _prompt(), SR, PROMPT_TEXT)
    with pytest.raises(OmniError, match="transcript"):
        tts.clone("Some words here.", _prompt(), SR, "  ")
    with pytest.raises(OmniError, match="non-finite"):
        tts.clone("Some words here.", np.full(100, np.nan, np.float32), SR, PROMPT_TEXT)


def test_long_text_is_chunked_and_cross_faded():
    # upstream's budget is 22 s of audio per batch; 4 s keeps the test fast
    tts = F5TTS.debug(seed=0, options=SamplingOptions(nfe_steps=4, max_batch_s=4.0))
    prompt = _prompt(seconds=1.0)
    text = "One sentence here, and a clause. " * 4
    pieces = tts.chunks(text, PROMPT_TEXT + " ", (prompt.size + 1200) / SR)
    assert len(pieces) > 1 and " ".join(pieces).split() == text.split()
    y = tts.clone(text, prompt, SR, PROMPT_TEXT)
    fade = int(0.15 * SR)
    lengths = [_expected_samples(prompt.size, PROMPT_TEXT, p) for p in pieces]
    assert y.size == sum(lengths) - fade * (len(pieces) - 1)
    assert split_text("a b c", 100) == ["a b c"]


def test_release_layout_round_trip(tts, tmp_path, registry):
    paths = save_release_layout(tts, tmp_path)
    from safetensors.torch import load_file

    keys = set(load_file(str(paths["f5"] / CKPT_FILE)))
    assert {"initted", "step"} <= keys
    assert all(k.startswith(EMA_PREFIX + "transformer.") for k in keys - {"initted", "step"})
    assert (paths["f5"] / VOCAB_FILE).read_text(encoding="utf-8").startswith(" \n")
    back = F5TTS.for_weights(tmp_path, registry=registry, arch=tts.arch, options=FAST)
    assert back.variant == "pretrained" and WEIGHTS_ENTRY in back.describe()
    assert back.vocab == tts.vocab
    sa, sb = tts.state_dict(), back.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    prompt = _prompt()
    text = "Loaded weights speak alike."
    assert np.array_equal(tts.clone(text, prompt, SR, PROMPT_TEXT),
                          back.clone(text, prompt, SR, PROMPT_TEXT))


@pytest.mark.parametrize("missing", [(WEIGHTS_ENTRY, CKPT_FILE), (WEIGHTS_ENTRY, VOCAB_FILE),
                                     (VOCOS_ENTRY, VOCOS_CONFIG), (VOCOS_ENTRY, VOCOS_FILE)])
def test_missing_file_is_one_clear_error(tts, tmp_path, registry, missing):
    save_release_layout(tts, tmp_path)
    (tmp_path / missing[0] / missing[1]).unlink()
    with pytest.raises(WeightsError) as info:
        F5TTS.for_weights(tmp_path, registry=registry, arch=tts.arch)
    msg = str(info.value)
    assert missing[1] in msg and missing[0] in msg and "omni weights fetch" in msg


def test_wrong_checkpoint_content_is_rejected(tts, tmp_path, registry):
    import yaml
    from safetensors.torch import save_file

    paths = save_release_layout(tts, tmp_path)
    cfg = yaml.safe_load((paths["vocos"] / VOCOS_CONFIG).read_text())
    cfg["head"]["class_path"] = "os.system"
    (paths["vocos"] / VOCOS_CONFIG).write_text(yaml.safe_dump(cfg))
    with pytest.raises(WeightsError, match="vocos.heads.ISTFTHead"):
        F5TTS.for_weights(tmp_path, registry=registry, arch=tts.arch)
    save_release_layout(tts, tmp_path)
    plain = {k: v.contiguous() for k, v in tts.model.state_dict().items()}  # no EMA names
    save_file(plain, str(paths["f5"] / CKPT_FILE))
    with pytest.raises(WeightsError, match="ema_model"):
        F5TTS.for_weights(tmp_path, registry=registry, arch=tts.arch)
