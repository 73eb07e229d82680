"""The registry's lite backends: declared as such, never run by default, never mixed with the
paper metric they stand in for (own name, own cache key), loaded from their wheel whatever
the run's weights."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from evaluation import registry
from evaluation.metrics.t_sim import TSim
from evaluation.metrics.t_sim_ge2e import TSimGE2E
from evaluation.metrics.wer import WER
from evaluation.metrics.wer_sphinx import WERSphinx
from evaluation.registry import MetricSpec, Output
from evaluation.runner import _cache_key


def test_lite_backends_are_declared_and_not_in_the_default_run():
    assert registry.lite_backends() == {"t_sim": "t_sim_ge2e", "wer": "wer_sphinx"}
    paper = registry.paper_metrics()
    assert {"t_sim", "wer"} <= set(paper) and not {"t_sim_ge2e", "wer_sphinx"} & set(paper)
    assert registry.with_lite(["aes", "wer", "t_sim", "t_sim_ge2e"]) == [
        "aes", "wer_sphinx", "t_sim_ge2e"]
    for cls, paper_name, backend in ((TSimGE2E, "t_sim", "ge2e"),
                                     (WERSphinx, "wer", "pocketsphinx")):
        spec = cls.spec
        assert not spec.is_paper and spec.lite_for == paper_name and spec.backend == backend
        assert all(o.caveat for o in spec.outputs)
        assert spec.protocol["lite_for"] == paper_name and spec.protocol["not_paper_protocol"]
        # own output names and labels: a lite result never lands in the paper column
        paper_spec = registry.get(paper_name).spec
        assert {o.name for o in spec.outputs}.isdisjoint(o.name for o in paper_spec.outputs)
        assert {o.label for o in spec.outputs}.isdisjoint(o.label for o in paper_spec.outputs)
    assert TSim.spec.protocol == {"backend": "paper"} and WER.spec.is_paper


def test_a_lite_spec_must_say_what_it_stands_in_for_and_how_it_differs():
    out = Output("x", "X", "higher")
    with pytest.raises(ValueError, match="caveat"):
        MetricSpec(name="x", outputs=(out,), needs=(), version="1", backend="tiny",
                   lite_for="t_sim")
    with pytest.raises(ValueError, match="lite_for"):
        MetricSpec(name="x", outputs=(out,), needs=(), version="1", backend="tiny")
    with pytest.raises(ValueError, match="lite_for"):
        MetricSpec(name="x", outputs=(out,), needs=(), version="1", lite_for="t_sim")


def test_lite_backends_load_their_packaged_model_whatever_the_weights(tmp_path):
    for weights in ("debug", "random", str(tmp_path / "no-weights-here")):
        m = TSimGE2E(weights=weights)
        assert m.weights == "packaged"
    m.setup()
    assert not m.model.is_debug and m.model.dim == 256
    d = m.describe()
    assert d["weights"] == "packaged" and d["options"]["checkpoint"] == "resemblyzer/pretrained.pt"
    assert d["checkpoints"] == [{"component": "GE2EEncoder", "package": "resemblyzer",
                                 "version": "0.1.4"}]
    assert TSim(weights="debug").weights == "debug"


def test_cache_keys_differ_from_the_paper_backend():
    inputs = SimpleNamespace(content_hash="same prediction")
    paper, lite = TSim(weights="debug"), TSimGE2E(weights="debug")
    assert _cache_key(paper, inputs) != _cache_key(lite, inputs)
    assert _cache_key(WER(weights="debug"), inputs) != _cache_key(WERSphinx(weights="debug"),
                                                                   inputs)
    # the weights setting does not touch a lite backend's key (its model is the wheel's)
    assert _cache_key(lite, inputs) == _cache_key(TSimGE2E(weights="random"), inputs)
