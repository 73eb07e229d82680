"""The ``models`` switch of cross-pair curation: the clone check's models."""

from __future__ import annotations

from omni_core.config import load_config
from pipelines.crosspair.config import CrosspairConfig
from pipelines.crosspair.models import resolve_models


def test_the_check_is_lite_without_checkpoints_and_paper_for_named_twins(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("OMNI_WEIGHTS", str(tmp_path))
    lite = resolve_models(load_config(CrosspairConfig, None, ["clone.backend=espeak",
                                                              "clone.enhance=false"]))
    assert lite.config.check.backend == "lite" and lite.config.weights is None
    assert lite.headline() == ("models: lite (models: auto) -- clone check: GE2E speaker "
                               "encoder, PocketSphinx (US English); clone: espeak (test double)")
    assert "wavlm-large-sv-ecapa is not in" in lite.parts["check"]["why"]
    twins = resolve_models(load_config(CrosspairConfig, None, ["weights=debug"]))
    assert twins.config.check.backend == "paper" and twins.config.weights == "debug"
    # the default cloner's enhancer reads the weights folder even when the check is lite
    enhanced = resolve_models(load_config(CrosspairConfig, None, ["models=lite"]))
    assert enhanced.config.check.backend == "lite"
    assert enhanced.config.weights == str(tmp_path)
    assert resolve_models(enhanced.config).config == enhanced.config
