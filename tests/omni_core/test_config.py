from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest

from omni_core.config import apply_override, dump_yaml, from_dict, load_config, to_dict
from omni_core.errors import ConfigError


@dataclass
class Optim:
    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class Train:
    name: str
    steps: int = 10
    stage: Literal[1, 2, 3] = 1
    out: Path = Path("runs")
    optim: Optim = field(default_factory=Optim)
    tasks: dict[str, float] = field(default_factory=lambda: {"r2av": 4.0})
    tags: list[str] = field(default_factory=list)
    resume_from: str | None = None
    bf16: bool = True


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_yaml_and_overrides(tmp_path):
    p = write(tmp_path, "name: a\nsteps: 5\noptim:\n  lr: 1e-4\ntasks: {r2av: 4, rv2av: 3}\n")
    cfg = load_config(Train, p, ["optim.betas=[0.8, 0.9]", "stage=3", "tags=[x, y]",
                                 "resume_from=ckpt/5", "out=~/runs"])
    assert cfg.name == "a" and cfg.steps == 5 and cfg.stage == 3
    assert cfg.optim.lr == pytest.approx(1e-4)  # YAML 1.1 reads 1e-4 as a string: converted
    assert cfg.optim.betas == (0.8, 0.9)
    assert cfg.tasks == {"r2av": 4.0, "rv2av": 3.0}
    assert cfg.tags == ["x", "y"] and cfg.resume_from == "ckpt/5"
    assert cfg.out == Path.home() / "runs"
    again = from_dict(Train, to_dict(cfg))
    assert again == cfg
    assert "lr: 0.0001" in dump_yaml(cfg)


@pytest.mark.parametrize("text,override,match", [
    ("name: a\nstpes: 3\n", [], "unknown key 'stpes'"),
    ("name: a\noptim: {lr: 1, beta: 2}\n", [], "unknown key 'optim.beta'"),
    ("name: a\n", ["optim.momentum=0.9"], "unknown key 'optim.momentum'"),
    ("name: a\nsteps: ten\n", [], "steps: expected an integer"),
    ("name: a\nsteps: 1.5\n", [], "steps: expected an integer"),
    ("name: a\nbf16: 1\n", [], "bf16: expected true/false"),
    ("name: a\nstage: 4\n", [], "stage: 4 is not one of"),
    ("name: a\noptim: 3\n", [], "expected a mapping"),
    ("steps: 1\n", [], "missing required key 'name'"),
    ("name: a\nsteps: null\n", [], "steps: null is not allowed"),
    ("- a\n- b\n", [], "top level must be a mapping"),
    ("name: [a\n", [], "invalid YAML at line"),
    ("name: a\n", ["steps"], "expected key=value"),
])
def test_errors_name_the_key(tmp_path, text, override, match):
    with pytest.raises(ConfigError, match=match.replace("[", r"\[")):
        load_config(Train, write(tmp_path, text), override)


def test_safe_load_only(tmp_path):
    p = write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(Train, p)


def test_override_creates_sections():
    data = {}
    apply_override(data, "a.b.c=1")
    apply_override(data, "a.d=hello world")
    assert data == {"a": {"b": {"c": 1}, "d": "hello world"}}
    with pytest.raises(ConfigError, match="not a section"):
        apply_override(data, "a.d.e=1")


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), "inf", "1e400"])
def test_no_number_setting_takes_infinity_or_nan(value):
    """Every float field of every config: an infinite or NaN value is one clear error (a clip
    rate of .inf once made curation plan clips of 0 s forever); None is how a setting says
    "no limit"."""
    with pytest.raises(ConfigError, match=r"lr: expected a finite number"):
        from_dict(Optim, {"lr": value})


@pytest.mark.parametrize("value", [".inf", "-.inf", ".nan", "1e400"])
def test_an_infinite_override_is_one_line_naming_the_field(value):
    with pytest.raises(ConfigError, match=r"optim\.lr: expected a finite number"):
        load_config(Train, None, ["name=x", f"optim.lr={value}"])  # as `--set` gives it
    assert load_config(Train, None, ["name=x", "optim.lr=1e-4"]).optim.lr == 1e-4
