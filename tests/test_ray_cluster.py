"""ray_cluster.yaml passes Ray's own cluster-launcher validation (what `ray up` runs)."""

import copy
from pathlib import Path

import jsonschema
import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

CONFIG = Path(__file__).resolve().parent.parent / "ray_cluster.yaml"


def load():
    return yaml.safe_load(CONFIG.read_text())


def test_cluster_config_is_valid():
    cfg = prepare_config(load())
    validate_config(cfg)
    assert cfg["head_node_type"] in cfg["available_node_types"]
    assert {"cpu_worker", "gpu_worker"} <= set(cfg["available_node_types"])
    # the dashboard stays on the head's loopback
    assert any("--dashboard-host=127.0.0.1" in c for c in cfg["head_start_ray_commands"])


def test_validation_rejects_a_broken_config():
    cfg = copy.deepcopy(load())
    cfg["head_node_type"] = "nope"
    with pytest.raises(ValueError, match="head_node_type"):
        validate_config(prepare_config(cfg))
    cfg = copy.deepcopy(load())
    cfg["max_wrokers"] = 3  # typo
    with pytest.raises(jsonschema.ValidationError):
        validate_config(prepare_config(cfg))
