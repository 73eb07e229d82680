"""The AudioBox-Aesthetics network: its padding mask, the released checkpoint's layout and
equivalence with upstream's own code.

``audiobox_aesthetics`` is in the lock, but its released checkpoint is not: the layout is tested
from the upstream key names and shapes (the 324 tensors of facebook/audiobox-aesthetics:
WavLM-base + four 5-layer heads), saved in upstream's ``checkpoint.pt`` format, and
``test_reference_equivalence`` runs upstream's own ``make_inference_batch`` and
``AesMultiOutput`` (shrunk) on the same weights and input.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from evaluation.metrics.pq import PQOptions, make_windows, score_pq
from evaluation.models.audiobox_aesthetics import (
    AXES,
    DEBUG_CONFIG,
    RELEASED_TARGET_TRANSFORM,
    AudioboxAesthetics,
)
from omni_core.errors import WeightsError

SR = 16_000


@pytest.fixture(scope="module")
def model() -> AudioboxAesthetics:
    return AudioboxAesthetics.debug(seed=0)


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SR))).astype(np.float32)


def test_the_mask_reaches_the_network(model: AudioboxAesthetics) -> None:
    """The same zero-padded window scored with and without its padding mask differs: padded
    frames are zeroed before the position conv, masked as attention keys and left out of the
    pooling. (Padding still shifts the first conv block's GroupNorm statistics, which run over
    the whole window, as upstream's do; the reference test checks the exact numbers.)"""
    audio = _noise(1.0)
    wav = torch.zeros(1, 2 * SR)
    wav[0, : audio.size] = torch.from_numpy(audio)
    with torch.no_grad():
        masked = model(wav, torch.arange(2 * SR)[None, :] < audio.size)
        unmasked = model(wav, torch.ones(1, 2 * SR, dtype=torch.bool))
        full = model(wav, torch.ones(1, 2 * SR, dtype=torch.bool))
    assert not torch.allclose(unmasked["PQ"], masked["PQ"], atol=1e-4)
    assert torch.equal(unmasked["PQ"], full["PQ"])


# ---- the released checkpoint's layout


def _upstream_manifest() -> dict[str, tuple[int, ...]]:
    """Names and shapes of the 324 tensors of the released model (WavLM-base encoder; heads
    with proj_num_layer=5, proj_ln=True, proj_dropout=0, nth_layer=13, output_dim=1), as listed
    for facebook/audiobox-aesthetics; checkpoint.pt holds them with a ``model.`` prefix."""
    d, ffn, feat = 768, 3072, 512
    m: dict[str, tuple[int, ...]] = {}
    for axis in AXES:
        m[f"layer_weights.{axis}"] = (13,)
        for i in (0, 3, 6, 9):
            m[f"proj_layer.{axis}.{i}.weight"] = (d, d)
            m[f"proj_layer.{axis}.{i}.bias"] = (d,)
        for i in (1, 4, 7, 10):  # LayerNorms
            m[f"proj_layer.{axis}.{i}.weight"] = (d,)
            m[f"proj_layer.{axis}.{i}.bias"] = (d,)
        m[f"proj_layer.{axis}.12.weight"] = (1, d)
        m[f"proj_layer.{axis}.12.bias"] = (1,)
    p = "wavlm_model."
    for i, k in enumerate((10, 3, 3, 3, 3, 2, 2)):
        m[f"{p}feature_extractor.conv_layers.{i}.0.weight"] = (feat, 1 if i == 0 else feat, k)
    m[f"{p}feature_extractor.conv_layers.0.2.weight"] = (feat,)
    m[f"{p}feature_extractor.conv_layers.0.2.bias"] = (feat,)
    m[f"{p}layer_norm.weight"] = (feat,)
    m[f"{p}layer_norm.bias"] = (feat,)
    m[f"{p}post_extract_proj.weight"] = (d, feat)
    m[f"{p}post_extract_proj.bias"] = (d,)
    m[f"{p}mask_emb"] = (d,)
    m[f"{p}encoder.pos_conv.0.weight_g"] = (1, 1, 128)
    m[f"{p}encoder.pos_conv.0.weight_v"] = (d, d // 16, 128)
    m[f"{p}encoder.pos_conv.0.bias"] = (d,)
    m[f"{p}encoder.layer_norm.weight"] = (d,)
    m[f"{p}encoder.layer_norm.bias"] = (d,)
    m[f"{p}encoder.layers.0.self_attn.relative_attention_bias.weight"] = (320, 12)
    for layer in range(12):
        q = f"{p}encoder.layers.{layer}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            m[f"{q}self_attn.{proj}.weight"] = (d, d)
            m[f"{q}self_attn.{proj}.bias"] = (d,)
        m[f"{q}self_attn.grep_linear.weight"] = (8, 64)
        m[f"{q}self_attn.grep_linear.bias"] = (8,)
        m[f"{q}self_attn.grep_a"] = (1, 12, 1, 1)
        m[f"{q}fc1.weight"] = (ffn, d)
        m[f"{q}fc1.bias"] = (ffn,)
        m[f"{q}fc2.weight"] = (d, ffn)
        m[f"{q}fc2.bias"] = (d,)
        for norm in ("self_attn_layer_norm", "final_layer_norm"):
            m[f"{q}{norm}.weight"] = (d,)
            m[f"{q}{norm}.bias"] = (d,)
    assert len(m) == 324
    return m


HEAD_BIAS = {"CE": 0.1, "CU": 0.2, "PC": 0.3, "PQ": 0.4}


def _save_fake_checkpoint(root: Path, drop: str | None = None) -> Path:
    """Zeros under the upstream names (weight-norm ``v`` ones, to keep its norm finite), the
    final bias of each head set so that the de-normalised output identifies the head."""
    state = {}
    for name, shape in _upstream_manifest().items():
        t = torch.ones(shape) if name.endswith("weight_v") else torch.zeros(shape)
        axis = name.split(".")[1]
        if name.startswith("proj_layer.") and name.endswith(".12.bias"):
            t = torch.full(shape, HEAD_BIAS[axis])
        if name != drop:
            state[f"model.{name}"] = t
    ckpt = {
        "state_dict": state,
        "model_cfg": {"proj_num_layer": 5, "proj_ln": True, "proj_act_fn": "gelu",
                      "proj_dropout": 0.0, "nth_layer": 13, "use_weighted_layer_sum": True,
                      "precision": "32", "normalize_embed": True, "output_dim": 1},
        "target_transform": {a: {"mean": m, "std": s}
                             for a, (m, s) in RELEASED_TARGET_TRANSFORM.items()},
    }
    folder = root / "audiobox-aesthetics"
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, folder / "checkpoint.pt")
    return folder / "checkpoint.pt"


def test_released_checkpoint_layout_loads(tmp_path: Path) -> None:
    _save_fake_checkpoint(tmp_path)
    real = AudioboxAesthetics.from_pretrained(root=tmp_path)
    assert not real.is_debug and real.weights_path == tmp_path / "audiobox-aesthetics"
    ours = {k: tuple(v.shape) for k, v in real.state_dict().items()}
    assert ours == _upstream_manifest()
    assert real.target_transform == RELEASED_TARGET_TRANSFORM
    # all-zero network -> each head outputs its final bias; de-normalised per axis
    res = score_pq(_noise(1.5), real, PQOptions(window_s=1.0, hop_s=1.0))
    assert res.window_weights == [1.0, 0.5]
    for axis, (mean, std) in RELEASED_TARGET_TRANSFORM.items():
        assert res.axes[axis] == pytest.approx(mean + HEAD_BIAS[axis] * std, abs=1e-5)


def test_checkpoint_with_a_missing_tensor_is_refused(tmp_path: Path) -> None:
    _save_fake_checkpoint(tmp_path, drop="wavlm_model.encoder.layers.3.self_attn.grep_a")
    with pytest.raises(WeightsError, match=r"missing \[wavlm_model\.encoder\.layers\.3"):
        AudioboxAesthetics.from_pretrained(root=tmp_path)


def test_missing_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="audiobox-aesthetics"):
        AudioboxAesthetics.from_pretrained(root=tmp_path)


# ---- reference equivalence against upstream (audiobox_aesthetics is in the lock)


def test_reference_equivalence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Upstream's windowing and AesMultiOutput (encoder shrunk via DEFAULT_AUDIO_CFG), its
    random weights loaded into ours strictly, the same clip: equal window predictions."""
    import audiobox_aesthetics.infer as infer
    import audiobox_aesthetics.model.aes as aes

    cfg = DEBUG_CONFIG
    small = aes.WavLMConfig(dict(
        vars(aes.DEFAULT_AUDIO_CFG),
        encoder_layers=cfg.num_layers, encoder_embed_dim=cfg.embed_dim,
        encoder_ffn_embed_dim=cfg.ffn_dim, encoder_attention_heads=cfg.num_heads,
        conv_pos=cfg.conv_pos, conv_pos_groups=cfg.conv_pos_groups,
        conv_feature_layers=repr(list(cfg.conv_layers)),
    ))
    monkeypatch.setattr(aes, "DEFAULT_AUDIO_CFG", small)
    torch.manual_seed(0)
    transform = {a: {"mean": m, "std": s} for a, (m, s) in RELEASED_TARGET_TRANSFORM.items()}
    ref = aes.AesMultiOutput(proj_num_layer=cfg.proj_num_layer, proj_ln=cfg.proj_ln,
                             nth_layer=cfg.nth_layer, target_transform=transform).eval()
    with torch.no_grad():
        for name, param in ref.named_parameters():
            if "layer_weights" in name or "norm" in name or "grep" in name:
                param.add_(0.3 * torch.randn_like(param))
    ours = AudioboxAesthetics(dataclasses.replace(cfg), RELEASED_TARGET_TRANSFORM)
    ours.load_state_dict(ref.state_dict(), strict=True)

    audio = _noise(2.7, seed=5)
    wavs, masks, weights, _ = infer.make_inference_batch(
        [torch.from_numpy(audio)[None]], hop_size=1, window_size=1, sample_rate=SR)
    windows = make_windows(audio, SR, window_s=1.0, hop_s=1.0)
    np.testing.assert_array_equal(torch.stack(wavs)[:, 0].numpy(), windows.wavs)
    np.testing.assert_array_equal(torch.stack(masks)[:, 0].numpy(), windows.sample_mask())
    np.testing.assert_allclose(weights, windows.weights)
    with torch.inference_mode():
        expected = ref({"wav": torch.stack(wavs), "mask": torch.stack(masks)})
    got = ours.predict_windows(windows)
    for axis in AXES:
        mean, std = RELEASED_TARGET_TRANSFORM[axis]
        np.testing.assert_allclose(got[axis], expected[axis].double().numpy() * std + mean,
                                   rtol=0, atol=1e-5)


def test_random_build_is_upstreams_default_model() -> None:
    """The real-size build = upstream's AesMultiOutput with its own DEFAULT_AUDIO_CFG and the
    released heads: same keys, same shapes."""
    import audiobox_aesthetics.model.aes as aes

    with torch.device("meta"):
        ours = AudioboxAesthetics.random(device="meta")
    ref = aes.AesMultiOutput(proj_num_layer=5, proj_ln=True, nth_layer=13)  # copies at init
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {
        k: tuple(v.shape) for k, v in ref.state_dict().items()}
