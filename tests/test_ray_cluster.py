"""ray_cluster.yaml passes Ray's own cluster-launcher validation (what `ray up` runs), and
agrees with the cluster curation config (configs/curate/inpair-cluster.yaml)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "ray_cluster.yaml"


def load():
    return yaml.safe_load(CONFIG.read_text())


def test_cluster_config_is_valid():
    cfg = prepare_config(load())
    validate_config(cfg)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert {"cpu_worker", "gpu_worker"} <= set(cfg["available_node_types"])
    # the dashboard stays on the head's loopback
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


def test_node_types_file_mounts_and_setup():
    cfg = prepare_config(load())
    types = cfg["available_node_types"]
    # GPU workers on GPU instances; decoding on CPU workers, the only nodes with `decode`
    assert types["gpu_worker"]["node_config"]["InstanceType"].startswith(("p", "g"))
    assert types["gpu_worker"]["min_workers"] >= 1 and types["cpu_worker"]["min_workers"] >= 1
    assert types["cpu_worker"]["resources"].get("decode", 0) > 0
    assert all("decode" not in types[t]["resources"] for t in ("head", "gpu_worker"))
    assert types["head"]["resources"].get("CPU") == 0  # no stage runs on the head
    # the suite and the configs are mounted from this checkout, and installed on every node
    mounts = cfg["file_mounts"]
    assert mounts["/home/ubuntu/omni/configs"] == "./configs"
    assert (CONFIG.parent / mounts["/home/ubuntu/omni/configs"]).is_dir()
    assert mounts["/home/ubuntu/omni/suite"] == "."
    assert any("scripts/setup.sh" in c for c in cfg["setup_commands"])
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cfg[key] if "ray start" in c)
        assert "OMNI_CACHE=" in start and "OMNI_WEIGHTS=" in start


def test_cluster_curation_config_fits_the_node_types():
    from omni_core.config import load_config
    from pipelines.inpair.config import InpairConfig

    cfg = load_config(InpairConfig, ROOT / "configs" / "curate" / "inpair-cluster.yaml")
    res = cfg.resources
    assert res.prepare.custom == {"decode": 1.0} and res.prepare.num_gpus == 0
    assert res.audio.num_gpus == res.visual.num_gpus == 0.5  # two groups share one card
    assert res.caption.num_gpus == 0 and cfg.device == "cuda"
    cluster = load()["available_node_types"]
    assert res.prepare.max_actors <= (cluster["cpu_worker"]["resources"]["decode"]
                                      * cluster["cpu_worker"]["max_workers"])


def test_validation_rejects_a_broken_config():
    cfg = copy.deepcopy(load())
    cfg["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(cfg))
    cfg = copy.deepcopy(load())
    cfg["max_wrokers"] = 3  # typo
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(cfg))
