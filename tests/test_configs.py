"""Every YAML under configs/ loads into the dataclass its folder declares."""

from pathlib import Path

import pytest

from omni_core.config import load_config
from omni_core.ray_helpers import RayConfig
from omni_model.flavors import FLAVORS
from omni_model.train import TrainConfig
from pipelines.crosspair.config import CrosspairConfig
from pipelines.inpair.config import InpairConfig

ROOT = Path(__file__).resolve().parent.parent / "configs"
CLASSES = {"ray": RayConfig, "curate": InpairConfig, "train": TrainConfig}
#: configs/curate/crosspair*.yaml configure the cross-pair DAG
CROSSPAIR = "crosspair"
FILES = sorted(ROOT.rglob("*.yaml"))


def test_every_config_folder_is_mapped():
    assert FILES
    assert {f.relative_to(ROOT).parts[0] for f in FILES} <= set(CLASSES)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads(path):
    cls = CrosspairConfig if path.stem.startswith(CROSSPAIR) else \
        CLASSES[path.relative_to(ROOT).parts[0]]
    cfg = load_config(cls, path)
    assert cfg is not None


def test_curate_defaults_file_is_the_dataclass_defaults():
    assert load_config(InpairConfig, ROOT / "curate" / "inpair.yaml") == InpairConfig()
    assert load_config(CrosspairConfig, ROOT / "curate" / "crosspair.yaml") == CrosspairConfig()


def test_one_train_config_per_flavor_and_the_paper_recipe():
    names = {p.stem for p in (ROOT / "train").glob("*.yaml")}
    assert names == set(FLAVORS)
    release = load_config(TrainConfig, ROOT / "train" / "dreamid-omni.yaml")
    assert release.optim.lr == 1e-5 and release.global_batch == 32
    assert [release.stage(n).steps for n in (1, 2, 3)] == [10000, 20000, 20000]
    assert [release.stage(n).masked_loss for n in (1, 2, 3)] == [True, False, False]
    # the dataclass defaults are the paper's (the 4:3:3 task mix is stage 3's sample table)
    assert all(release.stage(n) == TrainConfig().stage(n) for n in (1, 2, 3))
