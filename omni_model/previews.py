"""Samples during training: every ``previews.every`` steps the trainer generates a few fixed
benchmark instances with the EMA weights, so a user sees whether training works.

The videos go to ``OUT/stage<n>/previews/step-<k>/<instance_id>.mp4`` and a line per preview
to ``OUT/stage<n>/previews.jsonl`` (step, seconds, videos, and the quick score the caller's
``score`` hook returns, e.g. ``omni train``'s: the lite metrics of :mod:`evaluation`, which
this package does not import; an instance that cannot be sampled, e.g. a missing reference
photo, is an ``errors`` entry with its reason, and training goes on). The same instances,
seeds and sampler settings every time, so successive previews differ only by the weights.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from omni_core.errors import OmniError

#: ``score(folder, instances)`` -> {metric: mean}: a quick score of the preview's videos
Scorer = Callable[[Path, Any], dict[str, float]]


@dataclass
class PreviewConfig:
    """``every``: steps between previews (0: none; the last step always previews when on);
    ``instances``: a ``bench_instances`` .parquet (``omni train`` also takes a released-layout
    benchmark folder, e.g. ``omni benchmark fixtures``' ``bench``, and imports it); the first
    ``count`` instances by id; ``steps``:
    sampler steps; ``weights``: the encoders and decoders (``debug``, ``random`` or a weights
    folder); ``metrics``: what ``omni train`` scores them with (lite backends need no
    checkpoint; [] for none)."""

    every: int = 0
    instances: str | None = None
    count: int = 2
    steps: int = 10
    weights: str = "debug"
    seed: int = 100
    metrics: list[str] = field(default_factory=lambda: ["t_sim", "wer"])

    def __post_init__(self) -> None:
        if self.every < 0 or self.count < 1 or self.steps < 1:
            raise ValueError("previews.every >= 0, previews.count >= 1 and previews.steps >= 1")
        if self.every and not self.instances:
            raise ValueError("previews.every is set but previews.instances is not: give a "
                             "benchmark (e.g. the bench folder of `omni benchmark fixtures`)")


class Previewer:
    """Loads the instances, the encoders and the decoders once; :meth:`run` samples them with
    a copy of the model carrying the EMA weights."""

    def __init__(self, cfg: PreviewConfig, flavor: str, device: torch.device) -> None:
        from omni_core.manifests import read_manifest

        from .generate import GenerateConfig

        path = Path(cfg.instances or "")
        if not path.is_file():
            raise OmniError(f"previews.instances: {path} is not a bench_instances .parquet "
                            "(`omni train` imports a released-layout folder itself; or run "
                            "`omni benchmark import BENCH OUT.parquet`)")
        table = read_manifest(path, "bench_instances")
        table = table.sort_values("instance_id").head(cfg.count)
        self.rows = table.to_dict("records")
        self.table = table
        self.root = path.parent
        self.cfg = cfg
        self.gen_cfg = GenerateConfig(flavor=flavor, weights=cfg.weights, steps=cfg.steps,
                                      seed=cfg.seed, device=str(device))
        self.gen: Any = None

    def run(self, model: torch.nn.Module, ema: dict[str, torch.Tensor] | None, step: int,
            folder: Path, score: Scorer | None = None) -> dict[str, Any]:
        from omni_core.manifests import error_row

        from .generate import Generator, instance_seed

        t0 = time.perf_counter()
        m = copy.deepcopy(model)
        if ema is not None:
            current = m.state_dict()
            m.load_state_dict({k: v.to(current[k].dtype) for k, v in ema.items()},
                              strict=False)
        m.eval()
        if self.gen is None:
            self.gen = Generator(self.gen_cfg, model=m)
        self.gen.model = m
        folder.mkdir(parents=True, exist_ok=True)
        videos, errors = [], []
        with torch.no_grad():
            for inst in self.rows:
                iid = str(inst["instance_id"])
                try:  # an instance that cannot be sampled is reported; training goes on
                    cond = self.gen.conditions(inst, self.root)
                    v, a = self.gen.sample(cond, instance_seed(self.cfg.seed, iid))
                    videos.append(str(self.gen.write(folder / f"{iid}.mp4", v, a, cond)))
                except Exception as exc:  # noqa: BLE001 - one line in the record
                    errors.append({"instance": iid,
                                   "reason": error_row(iid, "preview", exc)["reason"]})
        del m
        self.gen.model = None
        record: dict[str, Any] = {"step": step, "videos": videos, "errors": errors,
                                  "sample_s": round(time.perf_counter() - t0, 3)}
        if score is not None and videos:
            t1 = time.perf_counter()
            record["score"] = score(folder, self.table)
            record["score_s"] = round(time.perf_counter() - t1, 3)
        return record


def append_record(path: Path, record: dict[str, Any]) -> None:
    with path.open("a") as fh:
        fh.write(json.dumps(record, sort_keys=True) + "\n")
