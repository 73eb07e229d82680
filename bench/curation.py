"""In-pair curation benchmark: the DAG on the sample corpus on this machine (lite profile).

Reports clips per minute, the ratio of wall time to the summed compute time of the stages
(Ray start-up, scheduling and actor model loading; the issue's goal is at most 1.3), and the
most times one clip was decoded in each stage (goal: once). The corpus's six talking
videos are measured as they are and copied ``copies`` times under other names (other ids, so
nothing is skipped): fixed costs dominate six clips, the copies show the steady state.

On a machine with a GPU, :func:`run_real_size` runs the real-size architectures with random
weights on a few clips and reports per-stage throughput and the GPU busy share.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from omni_core.config import load_config
from omni_core.ray_helpers import shutdown_ray
from omni_core.samples import make_corpus
from pipelines.inpair.config import InpairConfig
from pipelines.inpair.dag import run_inpair

#: the lite profile (real small models, no weights folder: what `make demo` runs)
LITE = ["models=lite"]


def run(repeat: int = 1, copies: int = 4) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="omni-bench-curate-") as tdir:
        corpus = make_corpus(Path(tdir) / "corpus", seed=0)
        talking = corpus.out / "talking"
        best: dict[str, Any] | None = None
        for i in range(repeat):
            r = _measure(talking, Path(tdir) / f"out{i}", LITE)
            if best is None or r["wall_s"] < best["wall_s"]:
                best = r
        assert best is not None
        if copies > 1:  # once: it takes `copies` times as long
            best["steady"] = _measure(replicate(talking, Path(tdir) / "copies", copies),
                                      Path(tdir) / "out-copies", LITE)
            best["steady"]["copies"] = copies
        best["score"] = score_lite(corpus.out, Path(tdir) / "lite")
    return best


def replicate(folder: Path, dest: Path, copies: int) -> Path:
    """``copies`` copies of every video in ``folder`` under other names (``<k>_<name>``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for k in range(copies):
        for f in sorted(folder.glob("*.mp4")):
            shutil.copyfile(f, dest / f"{k}_{f.name}")
    return dest


def _measure(inputs: Path, out: Path, overrides: list[str],
             config: Path | None = None) -> dict[str, Any]:
    cfg = load_config(InpairConfig, config, ["ray.include_dashboard=false", *overrides])
    try:
        s = run_inpair(inputs, out, cfg, progress=False)
    finally:
        shutdown_ray()
    t = s.timing
    busy, setup, wall = t["compute_s"], t["setup_s"], t["wall_s"]
    slots = int(cfg.ray.num_cpus or os.cpu_count() or 1)
    return {"inputs": s.items["total"], "clips": s.counts["clips"], "wall_s": round(wall, 2),
            "stage_seconds": {r["stage"]: r["compute_s"] for r in s.stages},
            "compute_s": round(busy, 2),
            "wall_over_compute": round(wall / busy, 2) if busy else None,
            "cpus": slots,
            # below 1 when stages overlap; x CPUs it compares with perfect packing
            "wall_x_cpus_over_compute": round(slots * wall / busy, 2) if busy else None,
            "clips_per_minute": round(60 * s.counts["clips"] / wall, 2),
            "setup_seconds": s.setup_by_stage,
            "wall_over_compute_and_setup": round(wall / (busy + setup), 2)
            if busy else None,
            "stages": s.step_rows(), "statuses": s.details["filters"],
            "max_decodes_per_clip": s.details["max_decodes_per_clip"]}


def score_lite(corpus: Path, out: Path) -> dict[str, Any]:
    """The lite profile on the whole corpus, scored against its truth (``omni curate
    score``): DER (collar 0 and 0.25 s), association, WER, face recall."""
    from pipelines.inpair.score import score_run

    cfg = load_config(InpairConfig, None, [*LITE, "ray.include_dashboard=false"])
    try:
        s = run_inpair(corpus, out, cfg, progress=False)
    finally:
        shutdown_ray()
    overall = score_run(out, corpus).to_dict()["overall"]
    return {"inputs": s.items["total"], "samples": s.counts["samples"],
            "wall_s": round(s.timing["wall_s"], 2),
            "der": overall["der"], "der_collar_025": overall.get("der_also", {}),
            "association": overall["association"],
            "wer": overall["wer"], "faces": overall["faces"]}


def markdown(r: dict[str, Any]) -> str:
    lines = ["## In-pair curation (lite profile, embedded Ray, this machine)", "",
             *_run_lines("The sample corpus", r)]
    if "steady" in r:
        st = r["steady"]
        lines += _run_lines(f"Its talking videos x {st['copies']} (steady state)", st)
    return "\n".join([*lines, *_score_lines(r["score"])])


def _run_lines(title: str, r: dict[str, Any]) -> list[str]:
    stages = ", ".join(f"{k} {v} s" for k, v in r["stage_seconds"].items())
    return [
        f"### {title}", "",
        f"{r['inputs']} talking videos -> {r['clips']} clips in {r['wall_s']} s wall "
        f"({r['clips_per_minute']} clips/min); stages: {stages}; wall / summed stage compute "
        f"= {r['wall_over_compute']} (goal <= 1.3); wall x {r['cpus']} CPUs / compute = "
        f"{r['wall_x_cpus_over_compute']}", "",
        "Actor setup (model loading, not in stage compute): " + ", ".join(
            f"{k} {v} s" for k, v in r["setup_seconds"].items())
        + f"; wall / (compute + setup) = {r['wall_over_compute_and_setup']}", "",
        "Clips per status: " + ", ".join(f"{k} {v}" for k, v in r["statuses"].items()), "",
        "Most decodes of one clip per stage (goal 1): " + ", ".join(
            f"{k} {v}" for k, v in r["max_decodes_per_clip"].items()), ""]


def _score_lines(sc: dict[str, Any]) -> list[str]:
    def pct(v: Any) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    a, f, w = sc["association"], sc["faces"], sc["wer"]
    return [
        "### Against the corpus truth (lite profile, `omni curate score`)", "",
        f"{sc['inputs']} inputs -> {sc['samples']} samples in {sc['wall_s']} s; DER "
        f"{pct(sc['der'].get('value'))} (collar 0), "
        f"{pct(sc['der_collar_025'].get('value'))} (collar 0.25 s); "
        f"association {a['correct']}/{a['assigned']}; "
        f"WER {pct(w.get('value'))}; face recall {f['found']}/{f['total']}", ""]


# --------------------------------------------------------------------------------------------
# real-size architectures, random weights, on an accelerator


class GpuBusy:
    """The GPU busy share over a block: ``nvidia-smi`` samples ``utilization.gpu`` (the share
    of the last sample period in which a kernel ran) every ``period_ms``; the share is their
    mean. ``share`` is ``None`` where there is no ``nvidia-smi`` or no sample came back."""

    def __init__(self, period_ms: int = 200, gpu: int = 0) -> None:
        self.cmd = ["nvidia-smi", f"--id={gpu}", "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits", f"-lms={period_ms}"]
        self.samples: list[float] = []
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> GpuBusy:
        if shutil.which(self.cmd[0]) is None:
            return self
        self._proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE,
                                      stderr=subprocess.DEVNULL, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:  # "[N/A]" and the like
                continue

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=10)

    @property
    def share(self) -> float | None:
        return round(sum(self.samples) / (100 * len(self.samples)), 3) if self.samples else None


def run_real_size(device: str = "cuda", inputs: int = 3, weights: str = "random",
                  gpu_fraction: float = 0.5) -> dict[str, Any]:
    """The DAG with the real-size models (``weights="random"``: the released architectures,
    random weights; SCRFD + ArcFace, SyncNet, pyannote, Whisper) on ``device`` over
    ``inputs`` of the corpus's talking videos. The audio and visual stages each ask for
    ``gpu_fraction`` of a GPU, so both share one.

    Per stage: items in and out, compute seconds and items per compute second; overall:
    clips per minute, actor setup and the GPU busy share over the whole run (:class:`GpuBusy`).
    Random weights make the model outputs meaningless (SCRFD finds no faces, so the visual
    steps after detection see little work); the point is the cost of the models that do run.
    """
    gpu = device.startswith("cuda")
    overrides = [f"weights={weights}", f"device={device}"]
    if gpu:
        overrides += [f"resources.audio.num_gpus={gpu_fraction}",
                      f"resources.visual.num_gpus={gpu_fraction}"]
    with tempfile.TemporaryDirectory(prefix="omni-bench-curate-gpu-") as tdir:
        corpus = make_corpus(Path(tdir) / "corpus", seed=0)
        chosen = Path(tdir) / "in"
        chosen.mkdir()
        for f in sorted((corpus.out / "talking").glob("*.mp4"))[:inputs]:
            shutil.copyfile(f, chosen / f.name)
        with GpuBusy() as busy:
            r = _measure(chosen, Path(tdir) / "out", overrides)
    per_stage = {k: {f: v[f] for f in ("stage", "in", "out", "failed", "seconds",
                                        "items_per_s")} for k, v in r["stages"].items()}
    device_name = device
    if gpu:
        import torch

        device_name = torch.cuda.get_device_name(torch.device(device))
    return {"device": device_name, "weights": weights, "gpu_fraction": gpu_fraction,
            "inputs": r["inputs"], "clips": r["clips"], "wall_s": r["wall_s"],
            "clips_per_minute": r["clips_per_minute"], "setup_seconds": r["setup_seconds"],
            "stages": per_stage, "gpu_busy_share": busy.share if gpu else None}


def markdown_real_size(r: dict[str, Any]) -> str:
    share = "n/a" if r["gpu_busy_share"] is None else f"{100 * r['gpu_busy_share']:.1f} %"
    lines = [f"## In-pair curation, real-size models with {r['weights']} weights "
             f"({r['device']})", "",
             f"{r['inputs']} talking videos -> {r['clips']} clips in {r['wall_s']} s wall "
             f"({r['clips_per_minute']} clips/min); GPU busy {share}; audio and visual stage "
             f"groups at {r['gpu_fraction']} GPU each; actor setup: " + ", ".join(
                 f"{k} {v} s" for k, v in r["setup_seconds"].items()), "",
             "| stage | step | in | out | failed | compute s | items / compute s |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {v['stage']} | {k} | {v['in']} | {v['out']} | {v['failed']} | "
              f"{v['seconds']} | {v['items_per_s']} |" for k, v in r["stages"].items()]
    return "\n".join(lines) + "\n"
