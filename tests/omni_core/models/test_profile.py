"""The ``models`` switch's one decision per part (:func:`omni_core.models.profile.choose`)."""

from __future__ import annotations

import pytest

from omni_core.errors import WeightsError
from omni_core.models.profile import check_models, choose, weights_setting


def _missing(setting: str) -> None:
    raise WeightsError(f"missing pretrained weights: {setting}/x/model.bin [missing] (weights "
                       f"manifest entry 'whisper-large-v3'). Get it with `omni weights fetch "
                       f"whisper-large-v3`, or ...")


def test_choose(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNI_WEIGHTS", str(tmp_path))
    assert weights_setting(None) == str(tmp_path) and weights_setting("debug") == "debug"
    assert choose("lite", "debug", [_missing]).profile == "lite"  # lite ignores weights
    twins = choose("auto", "random", [_missing])  # named twins: never checked, never lite
    assert twins.profile == "paper" and "asked for by name" in twins.why
    assert choose("paper", None, [_missing]).profile == "paper"  # the pre-flight will fail
    auto = choose("auto", None, [lambda s: None, _missing])
    assert auto.lite and auto.why == (f"no paper checkpoint: whisper-large-v3 is not in "
                                      f"{tmp_path} (omni weights fetch whisper-large-v3)")
    seen = []
    ok = choose("auto", str(tmp_path / "w"), [seen.append])
    assert ok.profile == "paper" and seen == [str(tmp_path / "w")]
    with pytest.raises(ValueError, match="models must be one of auto, paper, lite"):
        check_models("twin")
