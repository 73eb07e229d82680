"""The ``models`` switch of in-pair curation: what runs where checkpoints are, and are not."""

from __future__ import annotations

import pytest

from omni_core.config import load_config
from omni_core.errors import OmniError
from pipelines.inpair.config import InpairConfig
from pipelines.inpair.faces import FaceOptions
from pipelines.inpair.models import resolve_models


@pytest.fixture
def empty_weights(tmp_path, monkeypatch):
    """The default weights folder exists but holds nothing (a fresh machine)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("OMNI_WEIGHTS", str(folder))
    return folder


def _resolve(*overrides: str):
    return resolve_models(load_config(InpairConfig, None, list(overrides)))


def test_the_default_without_checkpoints_is_the_lite_profile(empty_weights):
    r = _resolve()
    cfg = r.config
    assert (cfg.audio.backend, cfg.faces.backend, cfg.faces.embedder, cfg.associate.backend) \
        == ("lite", "lbp", "twin", "motion")
    assert cfg.weights is None  # nothing reads a weights folder
    assert {p["profile"] for p in r.parts.values()} == {"lite"}
    assert r.headline().startswith("models: lite (models: auto) -- audio: Silero VAD + GE2E")
    # the reason names the checkpoint that is missing, per part
    assert "no paper checkpoint" in r.parts["audio"]["why"]
    assert str(empty_weights) in r.parts["audio"]["why"]
    assert r.to_dict()["parts"]["faces"]["models"].startswith("LBP cascade")


def test_twins_run_only_when_named(empty_weights):
    r = _resolve("weights=debug")
    cfg = r.config
    assert (cfg.audio.backend, cfg.faces.backend, cfg.faces.embedder, cfg.associate.backend) \
        == ("paper", "scrfd", "arcface", "syncnet")
    assert cfg.weights == "debug"
    assert "asked for by name" in r.parts["audio"]["why"]
    assert r.headline().startswith("models: paper")


def test_models_paper_reads_the_default_folder_and_lite_ignores_weights(empty_weights):
    paper = _resolve("models=paper")
    assert paper.config.weights == str(empty_weights)
    assert paper.config.audio.backend == "paper"
    lite = _resolve("models=lite", "weights=debug")
    assert lite.config.audio.backend == "lite" and lite.config.faces.embedder == "twin"
    assert lite.config.weights == "debug"  # kept as given; no part reads it


def test_explicit_parts_are_kept_and_reported(empty_weights):
    r = _resolve("weights=debug", "faces.backend=lbp", "audio.backend=annotations")
    assert r.config.faces.embedder == "arcface"  # the named twins' ArcFace
    assert r.parts["faces"]["profile"] == "mixed"
    assert r.parts["faces"]["models"] == "LBP cascade + ArcFace (buffalo_l)"
    assert r.parts["audio"]["profile"] == "annotations"
    assert r.headline().startswith("models: mixed")
    again = resolve_models(r.config)  # resolving a resolved config changes nothing
    assert again.config == r.config


def test_auto_uses_the_paper_audio_where_its_checkpoints_are(empty_weights, monkeypatch):
    """A folder that passes the audio pre-flight gets the paper audio models, while faces and
    association (whose checkpoints are absent) stay lite."""
    from pipelines.inpair import audio

    monkeypatch.setattr(audio.AudioModels, "check", staticmethod(lambda options, w: None))
    r = _resolve(f"weights={empty_weights}")
    assert r.config.audio.backend == "paper"
    assert r.config.faces.backend == "lbp"
    assert r.config.weights == str(empty_weights)
    assert r.headline().startswith("models: mixed")


def test_bad_values_are_one_line_config_errors():
    with pytest.raises(OmniError, match="models must be one of auto, paper, lite"):
        load_config(InpairConfig, None, ["models=fast"])
    with pytest.raises(OmniError, match="audio.backend must be one of"):
        load_config(InpairConfig, None, ["audio.backend=models"])
    with pytest.raises(ValueError, match="embedder twin"):
        FaceOptions(backend="scrfd", embedder="twin")
    assert FaceOptions().detection_options().detector == "scrfd"  # a given pack's SCRFD
