"""Every YAML under configs/ loads into the dataclass its folder declares."""

from pathlib import Path

import pytest

from omni_core.config import load_config
from omni_core.ray_helpers import RayConfig
from pipelines.inpair.config import InpairConfig

ROOT = Path(__file__).resolve().parent.parent / "configs"
CLASSES = {"ray": RayConfig, "curate": InpairConfig}
FILES = sorted(ROOT.rglob("*.yaml"))


def test_every_config_folder_is_mapped():
    assert FILES
    assert {f.relative_to(ROOT).parts[0] for f in FILES} <= set(CLASSES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads(path):
    cfg = load_config(CLASSES[path.relative_to(ROOT).parts[0]], path)
    assert cfg is not None


def test_curate_defaults_file_is_the_dataclass_defaults():
    assert load_config(InpairConfig, ROOT / "curate" / "inpair.yaml") == InpairConfig()
