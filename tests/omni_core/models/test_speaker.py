"""The speaker-verification model (WavLM-large + ECAPA-TDNN, seed-tts-eval's SIM model):
checkpoint layout, loading, WavLM equivalence with transformers and s3prl, ECAPA math.

The upstream key names and shapes below are written out by hand from the upstream sources
(s3prl ``upstream/wavlm/WavLM.py`` + ``modules.py``: the fairseq-style WavLM that
``ECAPA_TDNN.feature_extract.model`` holds; UniSpeech ``speaker_verification/models/
ecapa_tdnn.py``: ``ECAPA_TDNN_SMALL``), not derived from our converter, so a renaming mistake
on either side shows up as a key or shape mismatch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from omni_core.errors import WeightsError
from omni_core.models import speaker as S
from omni_core.models import wavlm as W
from omni_core.weights import Registry

# --------------------------------------------------------------------------------------------
# the upstream checkpoint layout, from the upstream sources


def upstream_shapes(arch: S.SpeakerVerifierArch) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``torch.load('wavlm_large_finetune.pth')['model']`` for ``arch``."""
    w, e = arch.wavlm, arch.ecapa
    p = "feature_extract.model."
    s: dict[str, tuple[int, ...]] = {"feature_weight": (w.layers + 1,)}
    s[p + "mask_emb"] = (w.hidden,)
    cin = 1
    for i, (dim, k, _stride) in enumerate(w.conv):  # extractor_mode layer_norm, conv_bias False
        s[f"{p}feature_extractor.conv_layers.{i}.0.weight"] = (dim, cin, k)
        s[f"{p}feature_extractor.conv_layers.{i}.2.1.weight"] = (dim,)
        s[f"{p}feature_extractor.conv_layers.{i}.2.1.bias"] = (dim,)
        cin = dim
    s[p + "layer_norm.weight"] = s[p + "layer_norm.bias"] = (cin,)
    s[p + "post_extract_proj.weight"] = (w.hidden, cin)
    s[p + "post_extract_proj.bias"] = (w.hidden,)
    s[p + "encoder.pos_conv.0.bias"] = (w.hidden,)
    s[p + "encoder.pos_conv.0.weight_g"] = (1, 1, w.conv_pos)  # weight_norm(dim=2)
    s[p + "encoder.pos_conv.0.weight_v"] = (w.hidden, w.hidden // w.conv_pos_groups, w.conv_pos)
    s[p + "encoder.layer_norm.weight"] = s[p + "encoder.layer_norm.bias"] = (w.hidden,)
    for i in range(w.layers):
        q = f"{p}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            s[q + f"self_attn.{proj}.weight"] = (w.hidden, w.hidden)
            s[q + f"self_attn.{proj}.bias"] = (w.hidden,)
        s[q + "self_attn.grep_a"] = (1, w.heads, 1, 1)
        s[q + "self_attn.grep_linear.weight"] = (8, w.hidden // w.heads)
        s[q + "self_attn.grep_linear.bias"] = (8,)
        if i == 0:
            s[q + "self_attn.relative_attention_bias.weight"] = (w.num_buckets, w.heads)
        for ln in ("self_attn_layer_norm", "final_layer_norm"):
            s[q + f"{ln}.weight"] = s[q + f"{ln}.bias"] = (w.hidden,)
        s[q + "fc1.weight"], s[q + "fc1.bias"] = (w.ffn, w.hidden), (w.ffn,)
        s[q + "fc2.weight"], s[q + "fc2.bias"] = (w.hidden, w.ffn), (w.hidden,)

    def bn(name: str, c: int) -> None:
        for t in ("weight", "bias", "running_mean", "running_var"):
            s[f"{name}.{t}"] = (c,)
        s[f"{name}.num_batches_tracked"] = ()

    c, width = e.channels, e.channels // e.scale
    s["layer1.conv.weight"], s["layer1.conv.bias"] = (c, w.hidden, 5), (c,)
    bn("layer1.bn", c)
    for layer in ("layer2", "layer3", "layer4"):
        for sub in ("Conv1dReluBn1", "Conv1dReluBn2"):
            s[f"{layer}.{sub}.conv.weight"], s[f"{layer}.{sub}.conv.bias"] = (c, c, 1), (c,)
            bn(f"{layer}.{sub}.bn", c)
        for j in range(e.scale - 1):
            s[f"{layer}.Res2Conv1dReluBn.convs.{j}.weight"] = (width, width, 3)
            s[f"{layer}.Res2Conv1dReluBn.convs.{j}.bias"] = (width,)
            bn(f"{layer}.Res2Conv1dReluBn.bns.{j}", width)
        s[f"{layer}.SE_Connect.linear1.weight"] = (e.se_bottleneck, c)
        s[f"{layer}.SE_Connect.linear1.bias"] = (e.se_bottleneck,)
        s[f"{layer}.SE_Connect.linear2.weight"] = (c, e.se_bottleneck)
        s[f"{layer}.SE_Connect.linear2.bias"] = (c,)
    s["conv.weight"], s["conv.bias"] = (e.out_channels, 3 * c, 1), (e.out_channels,)
    s["pooling.linear1.weight"] = (e.attention_channels, e.out_channels, 1)
    s["pooling.linear1.bias"] = (e.attention_channels,)
    s["pooling.linear2.weight"] = (e.out_channels, e.attention_channels, 1)
    s["pooling.linear2.bias"] = (e.out_channels,)
    bn("bn", 2 * e.out_channels)
    s["linear.weight"], s["linear.bias"] = (e.emb_dim, 2 * e.out_channels), (e.emb_dim,)
    # the AAM-softmax training head (VoxCeleb2: 5994 speakers) sits in the checkpoint too
    s["loss_calculator.projection.weight"] = (5994, e.emb_dim)
    return s


def fake_upstream_state(arch: S.SpeakerVerifierArch, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, shape in upstream_shapes(arch).items():
        if k.endswith("num_batches_tracked"):
            out[k] = torch.tensor(7)
        elif k.endswith("running_var"):
            out[k] = torch.rand(shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(shape, generator=g) * 0.2
    return out


def test_rules_map_every_large_upstream_key_to_the_model_with_its_shape():
    arch = S.SpeakerVerifierArch.large()
    up = upstream_shapes(arch)
    assert up["feature_weight"] == (25,)  # 24 layer inputs + the final encoder output
    meta = {k: torch.empty(v, device="meta") for k, v in up.items()}
    converted, unknown = S.upstream_to_model_state_dict(meta)
    assert unknown == []
    with torch.device("meta"):
        model = S.SpeakerVerifier(arch)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours
    # ECAPA and feature_weight keep upstream's names; only the WavLM subtree is renamed
    assert {k for k in up if not k.startswith(("feature_extract.", "loss_calculator."))} == {
        k for k in ours if not k.startswith("feature_extract.")
    }
    n_wavlm = sum(int(np.prod(v)) for k, v in ours.items() if k.startswith("feature_extract."))
    assert 315e6 < n_wavlm < 317e6  # WavLM-large: 316.6M parameters (without mask_emb)


def test_inverse_rules_give_upstream_names():
    arch = S.SpeakerVerifierArch.debug()
    model = S.SpeakerVerifier.build(arch)
    hf = model.feature_extract.model.state_dict()
    back = W.hf_wavlm_to_upstream(hf)
    up = {k.removeprefix("feature_extract.model."): v for k, v in upstream_shapes(arch).items()
          if k.startswith("feature_extract.model.")}
    assert {k: tuple(v.shape) for k, v in back.items()} == {
        k: v for k, v in up.items() if k != "mask_emb"
    }


# --------------------------------------------------------------------------------------------
# loading through from_pretrained


@pytest.fixture
def registry(unpinned_registry) -> Registry:
    return unpinned_registry(S.SpeakerVerifier.weights_entry, S.WAVLM_ENTRY)


def _save(root: Path, entry: str, name: str, obj: dict) -> None:
    (root / entry).mkdir(parents=True, exist_ok=True)
    torch.save(obj, root / entry / name)


def test_from_pretrained_reads_the_upstream_checkpoint(tmp_path, registry):
    arch = S.SpeakerVerifierArch.debug()
    state = fake_upstream_state(arch)
    _save(tmp_path, S.SpeakerVerifier.weights_entry, S.FINETUNE_FILE, {"model": state})
    model = S.SpeakerVerifier.from_pretrained(tmp_path, registry=registry, arch=arch)
    assert not model.is_debug
    assert model.load_report == {"unknown": [], "from_wavlm_large": []}
    got = model.state_dict()
    p, q = "feature_extract.model.", "feature_extract.model.encoder."
    pairs = {
        "feature_weight": "feature_weight",
        "layer2.Res2Conv1dReluBn.convs.3.weight": "layer2.Res2Conv1dReluBn.convs.3.weight",
        "bn.running_var": "bn.running_var",
        p + "feature_extractor.conv_layers.0.conv.weight":
            p + "feature_extractor.conv_layers.0.0.weight",
        p + "feature_extractor.conv_layers.6.layer_norm.bias":
            p + "feature_extractor.conv_layers.6.2.1.bias",
        p + "feature_projection.layer_norm.weight": p + "layer_norm.weight",
        p + "feature_projection.projection.weight": p + "post_extract_proj.weight",
        q + "pos_conv_embed.conv.parametrizations.weight.original0": q + "pos_conv.0.weight_g",
        q + "pos_conv_embed.conv.parametrizations.weight.original1": q + "pos_conv.0.weight_v",
        q + "layers.0.attention.rel_attn_embed.weight":
            q + "layers.0.self_attn.relative_attention_bias.weight",
        q + "layers.1.attention.gru_rel_pos_const": q + "layers.1.self_attn.grep_a",
        q + "layers.1.attention.gru_rel_pos_linear.weight":
            q + "layers.1.self_attn.grep_linear.weight",
        q + "layers.1.layer_norm.bias": q + "layers.1.self_attn_layer_norm.bias",
        q + "layers.1.feed_forward.intermediate_dense.weight": q + "layers.1.fc1.weight",
        q + "layers.1.feed_forward.output_dense.bias": q + "layers.1.fc2.bias",
        q + "layer_norm.weight": q + "layer_norm.weight",
    }
    for ours, theirs in pairs.items():
        assert torch.equal(got[ours], state[theirs]), ours
    emb = model.embed(np.random.default_rng(0).standard_normal(8000).astype(np.float32))
    assert emb.shape == (arch.ecapa.emb_dim,) and np.isfinite(emb).all()


def test_wavlm_weights_missing_from_the_finetune_come_from_wavlm_large(tmp_path, registry):
    arch = S.SpeakerVerifierArch.debug()
    state = fake_upstream_state(arch)
    head = {k: v for k, v in state.items() if not k.startswith("feature_extract.")}
    _save(tmp_path, S.SpeakerVerifier.weights_entry, S.FINETUNE_FILE, {"model": head})
    with pytest.raises(WeightsError, match="wavlm-large"):
        S.SpeakerVerifier.from_pretrained(tmp_path, registry=registry, arch=arch)
    plain = {k.removeprefix("feature_extract.model."): v for k, v in state.items()
             if k.startswith("feature_extract.model.")}
    _save(tmp_path, S.WAVLM_ENTRY, S.WAVLM_FILE, {"cfg": {"encoder_layers": 2}, "model": plain})
    model = S.SpeakerVerifier.from_pretrained(tmp_path, registry=registry, arch=arch)
    assert len(model.load_report["from_wavlm_large"]) == sum(
        k.startswith("feature_extract.") for k in model.state_dict()
    )
    full = S.SpeakerVerifier.debug(arch=arch)
    full.load_upstream_state_dict(state)
    wav = np.random.default_rng(1).standard_normal(8000).astype(np.float32)
    np.testing.assert_array_equal(model.embed(wav), full.embed(wav))


def test_missing_head_weights_and_wrong_shapes_are_errors():
    arch = S.SpeakerVerifierArch.debug()
    state = fake_upstream_state(arch)
    model = S.SpeakerVerifier.debug(arch=arch)
    with pytest.raises(WeightsError, match="lacks 1 weights.*linear.bias"):
        model.load_upstream_state_dict({k: v for k, v in state.items() if k != "linear.bias"})
    bad = dict(state, **{"linear.bias": torch.zeros(3)})
    with pytest.raises(WeightsError, match=r"shape \[linear\.bias has shape"):
        model.load_upstream_state_dict(bad)
    extra = dict(state, **{"some_new_head.weight": torch.zeros(2)})
    model.load_upstream_state_dict(extra)  # strict=False upstream: unknown keys are reported
    assert model.load_report["unknown"] == ["some_new_head.weight"]


# --------------------------------------------------------------------------------------------
# reference equivalence: transformers' WavLMModel (and s3prl's WavLM where installed)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for prm in module.parameters():
            prm.add_(torch.randn(prm.shape, generator=g) * 0.1)


def test_wavlm_hidden_states_equal_transformers_wavlm_through_the_converter():
    from transformers import WavLMModel

    arch = S.SpeakerVerifierArch.debug()
    torch.manual_seed(3)
    ref = WavLMModel(arch.wavlm.hf_config()).eval()
    _randomise(ref, 4)
    # our path: transformers weights -> upstream names -> converter -> our wrapper
    up = {"feature_extract.model." + k: v for k, v in W.hf_wavlm_to_upstream(
        ref.state_dict()).items()}
    head = {k: v for k, v in fake_upstream_state(arch).items()
            if not k.startswith("feature_extract.")}
    ours = S.SpeakerVerifier.debug(arch=arch)
    ours.load_upstream_state_dict({**up, **head})

    wav = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 12345)).astype("f4"))
    with torch.no_grad():
        got = ours.feature_extract(wav)
        normed = torch.nn.functional.layer_norm(wav, wav.shape[-1:])  # s3prl's cfg.normalize
        out = ref(normed, output_hidden_states=True)
    # s3prl: inputs of the 24 (here 2) layers + the encoder output after its final layer norm
    want = torch.stack([*out.hidden_states[: arch.wavlm.layers], out.last_hidden_state])
    assert got.shape == (arch.wavlm.layers + 1, 1, 38, arch.wavlm.hidden)  # 50 frames/s
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_wavlm_hidden_states_equal_s3prl_wavlm():
    """Same random weights through s3prl's own WavLM (the upstream seed-tts-eval loads; s3prl is
    in the lock for this test)."""
    import s3prl.upstream.wavlm.WavLM as ref_mod

    arch = S.SpeakerVerifierArch.debug()
    w = arch.wavlm
    conv = " + ".join(f"[({d},{k},{s})]" for d, k, s in w.conv)
    cfg = ref_mod.WavLMConfig({
        "extractor_mode": "layer_norm", "encoder_layers": w.layers, "encoder_embed_dim": w.hidden,
        "encoder_ffn_embed_dim": w.ffn, "encoder_attention_heads": w.heads,
        "activation_fn": "gelu", "layer_norm_first": True, "conv_feature_layers": conv,
        "conv_bias": False, "normalize": True, "dropout": 0.0, "attention_dropout": 0.0,
        "conv_pos": w.conv_pos, "conv_pos_groups": w.conv_pos_groups,
        "relative_position_embedding": True, "num_buckets": w.num_buckets,
        "max_distance": w.max_distance, "gru_rel_pos": True,
    })
    torch.manual_seed(6)
    ref = ref_mod.WavLM(cfg).eval()
    _randomise(ref, 7)
    hidden: list[torch.Tensor] = []  # s3prl UpstreamExpert's hooks
    for layer in ref.encoder.layers:
        layer.register_forward_hook(lambda m, i, o: hidden.append(i[0].transpose(0, 1)))
    ref.encoder.register_forward_hook(lambda m, i, o: hidden.append(o[0]))
    wav = torch.from_numpy(np.random.default_rng(8).standard_normal(16000).astype("f4"))
    with torch.no_grad():
        x = torch.nn.functional.layer_norm(wav, wav.shape)
        ref.extract_features(x[None], padding_mask=torch.zeros(1, x.shape[0], dtype=torch.bool))
    head = {k: v for k, v in fake_upstream_state(arch).items()
            if not k.startswith("feature_extract.")}
    ours = S.SpeakerVerifier.debug(arch=arch)
    ours.load_upstream_state_dict(
        {**{"feature_extract.model." + k: v for k, v in ref.state_dict().items()}, **head})
    with torch.no_grad():
        got = ours.feature_extract(wav[None])
    torch.testing.assert_close(got, torch.stack(hidden), rtol=0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# ECAPA and protocol math


def test_attentive_stats_pool_with_uniform_attention_is_mean_and_std():
    pool = S._AttentiveStatsPool(6, 4)
    with torch.no_grad():
        pool.linear2.weight.zero_()
        pool.linear2.bias.zero_()
    x = torch.randn(2, 6, 11)
    out = pool(x)
    torch.testing.assert_close(out[:, :6], x.mean(dim=2))
    torch.testing.assert_close(out[:, 6:], x.std(dim=2, unbiased=False), atol=1e-5, rtol=1e-5)


def test_features_are_the_softmax_weighted_layer_sum_instance_normalised():
    model = S.SpeakerVerifier.debug(seed=1)
    wav = torch.from_numpy(np.random.default_rng(2).standard_normal((1, 9000)).astype("f4"))
    with torch.no_grad():
        hs = model.feature_extract(wav)
        w = torch.softmax(model.feature_weight, 0)
        x = sum(w[i] * hs[i] for i in range(hs.shape[0])).transpose(1, 2) + 1e-6
        want = (x - x.mean(2, keepdim=True)) / torch.sqrt(x.var(2, unbiased=False, keepdim=True)
                                                          + 1e-5)
        torch.testing.assert_close(model.features(wav), want, atol=1e-5, rtol=1e-5)
    assert hs.shape[0] == model.feature_weight.shape[0] == 3


def test_random_build_is_the_large_model():
    with torch.device("meta"):
        model = S.SpeakerVerifier.random(device="meta")
    converted, _ = S.upstream_to_model_state_dict(
        fake_upstream_state(S.SpeakerVerifierArch.large()), parametrized=hasattr(
            model.feature_extract.model.encoder.pos_conv_embed.conv, "parametrizations"))
    own = model.state_dict()
    assert {k: tuple(v.shape) for k, v in converted.items() if k in own} == {
        k: tuple(v.shape) for k, v in own.items()}
