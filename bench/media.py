"""Foundation benchmark: sample-corpus build, probe, guarded vs in-process decode, encode.

Ratios are measured in one run on one machine (they are what carries over between machines);
absolute figures are for this machine only. ``media-gpu`` (:func:`run_gpu`, only where CUDA
is present) compares decord on the CPU with torchcodec on the GPU (NVDEC).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from omni_core.media import load_audio, probe, read_frames, sample_indices, write_mp4
from omni_core.samples import make_corpus


def best_of(fn: Callable[[], Any], repeat: int = 3) -> float:
    """Fastest of ``repeat`` runs (seconds): the least noisy estimate on a shared machine."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def best_of_each(fns: dict[str, Callable[[], Any]], repeat: int = 3) -> dict[str, float]:
    """:func:`best_of` for each of ``fns``, run in turn after one warm-up call each (a worker
    to start, a library to import), so that a busy spell of the machine hits all of them and
    their ratios stay fair."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def _fresh_memory(fn: Callable[[], Any]) -> Callable[[], Any]:
    """``fn`` with the decode guard's pool keeping nothing: every decode maps new memory
    (what a caller that keeps every result gets)."""
    from omni_core.media import guard

    def call() -> Any:
        keep, guard.POOL_BYTES = guard.POOL_BYTES, 0
        try:
            return fn()
        finally:
            guard.POOL_BYTES = keep

    return call


def run(repeat: int = 3) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="omni-bench-") as tdir:
        t = time.perf_counter()
        corpus = make_corpus(Path(tdir) / "corpus", seed=0)
        out["corpus_build_s"] = round(time.perf_counter() - t, 2)
        files = sorted(p for p in (corpus.out).rglob("*.mp4") if p.stat().st_size)
        clip = corpus.out / "talking/talk04_3p.mp4"
        info = probe(clip)

        def probe_all():
            for f in files:
                try:
                    probe(f)
                except Exception:  # noqa: BLE001 - broken files are part of the workload
                    pass

        s = best_of(probe_all, repeat)
        out["probe_files_per_s"] = round(len(files) / s, 1)

        t = best_of_each({
            "guarded": lambda: read_frames(clip),
            "in_process": lambda: read_frames(clip, timeout=None),
            "fresh": _fresh_memory(lambda: read_frames(clip)),
            "torchcodec": lambda: read_frames(clip, timeout=None, decoder="torchcodec"),
        }, repeat)
        all_guarded, all_inproc, all_fresh, all_tc = t.values()
        idx = sample_indices(info.n_frames, 8, "segment_middle")
        t = best_of_each({"guarded": lambda: read_frames(clip, idx),
                          "in_process": lambda: read_frames(clip, idx, timeout=None)}, repeat)
        few_guarded, few_inproc = t.values()
        out["decode_all_frames"] = {
            "frames": info.n_frames, "size": f"{info.width}x{info.height}",
            "guarded_fps": round(info.n_frames / all_guarded, 1),
            "in_process_fps": round(info.n_frames / all_inproc, 1),
            "guard_cost_ratio": round(all_guarded / all_inproc, 3),
            "guarded_fresh_memory_fps": round(info.n_frames / all_fresh, 1),
            "guard_cost_ratio_fresh_memory": round(all_fresh / all_inproc, 3),
            "torchcodec_cpu_fps": round(info.n_frames / all_tc, 1),
        }
        out["decode_8_sampled_frames"] = {
            "guarded_ms": round(few_guarded * 1000, 1),
            "in_process_ms": round(few_inproc * 1000, 1),
            "guard_cost_ratio": round(few_guarded / few_inproc, 3),
        }
        a = best_of(lambda: load_audio(clip, 16000), repeat)
        out["audio_decode_x_realtime"] = round(info.duration_s / a, 1)

        frames = read_frames(clip, timeout=None)
        w = best_of(lambda: write_mp4(Path(tdir) / "enc.mp4", frames, 25), repeat)
        out["encode_fps"] = round(len(frames) / w, 1)
        out["frames_checksum"] = int(np.asarray(frames, np.int64).sum() % 1_000_003)
    return out


def markdown(r: dict[str, Any]) -> str:
    d, s = r["decode_all_frames"], r["decode_8_sampled_frames"]
    return "\n".join([
        "## Media I/O and sample corpus",
        "",
        "| measure | value |",
        "|---|---|",
        f"| sample corpus build (15 files) | {r['corpus_build_s']} s |",
        f"| probe (header + packet scan) | {r['probe_files_per_s']} files/s |",
        f"| decode all {d['frames']} frames {d['size']}, guarded | {d['guarded_fps']} fps |",
        f"| same, in process | {d['in_process_fps']} fps |",
        f"| guard cost, all frames (guarded / in process) | {d['guard_cost_ratio']}x |",
        f"| same, guarded, new shared memory for each decode (no reuse) | "
        f"{d['guarded_fresh_memory_fps']} fps ({d['guard_cost_ratio_fresh_memory']}x) |",
        f"| same, in process through torchcodec (CPU) | {d['torchcodec_cpu_fps']} fps |",
        f"| decode 8 sampled frames, guarded / in process | {s['guarded_ms']} / "
        f"{s['in_process_ms']} ms ({s['guard_cost_ratio']}x) |",
        f"| audio decode to 16 kHz mono | {r['audio_decode_x_realtime']}x real time |",
        f"| H.264 encode, 2 threads | {r['encode_fps']} fps |",
        "",
    ])


def decode_fps(clip: Path, decoders: list[str], repeat: int = 3) -> dict[str, Any]:
    """Frames per second of a whole-clip decode in process through each decoder, and whether
    they all read the first one's frames (exactly on the CPU; within 2 grey levels on average
    from NVDEC, whose colour conversion rounds differently). A decoder this machine cannot run
    (no torchcodec in the image, no GPU) is reported with its reason instead of a figure."""
    from omni_core.errors import ConfigError
    from omni_core.media.video import check_decoder

    out: dict[str, Any] = {}
    ref = read_frames(clip, timeout=None, decoder=decoders[0])
    same = True
    for name in decoders:
        try:
            check_decoder(name)
        except ConfigError as exc:
            out[f"{name}_fps"], out[f"{name}_unavailable"] = None, str(exc)
            continue
        frames = read_frames(clip, timeout=None, decoder=name)  # warm: CUDA context, imports
        diff = np.abs(frames.astype(np.int16) - ref).mean() if frames.shape == ref.shape else 255
        same = same and bool(diff == 0 if name != "torchcodec-cuda" else diff < 2)
        s = best_of(lambda name=name: read_frames(clip, timeout=None, decoder=name), repeat)
        out[f"{name}_fps"] = round(len(ref) / s, 1)
    out["frames"], out["size"] = len(ref), f"{ref.shape[2]}x{ref.shape[1]}"
    out["same_frames"] = same
    return out


def run_gpu(repeat: int = 3, decoders: tuple[str, ...] = ("decord", "torchcodec",
                                                          "torchcodec-cuda")) -> dict[str, Any]:
    """decord (CPU) against torchcodec on the CPU and on the GPU, on the corpus clip and on
    a 1280x720 clip of 250 frames (the GPU pays off with size)."""
    from omni_core.media.ffmpeg import binary
    from omni_core.media.ffmpeg import run as run_tool

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="omni-bench-") as tdir:
        corpus = make_corpus(Path(tdir) / "corpus", seed=0)
        hd = Path(tdir) / "720p.mp4"
        run_tool([binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error", "-f", "lavfi",
                  "-i", "testsrc2=size=1280x720:rate=25:duration=10", "-c:v", "libx264",
                  "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(hd)], what="bench clip")
        for name, clip in (("corpus_clip", corpus.out / "talking/talk04_3p.mp4"),
                           ("clip_720p", hd)):
            out[name] = decode_fps(clip, list(decoders), repeat)
    return out


def markdown_gpu(r: dict[str, Any]) -> str:
    lines = ["## Video decode: decord (CPU) and torchcodec (CPU, GPU)", "",
             "| clip | decoder | fps |", "|---|---|---|"]
    for name in ("corpus_clip", "clip_720p"):
        d = r[name]
        for key, value in d.items():
            if key.endswith("_fps"):
                shown = value if value is not None else d[f"{key[:-4]}_unavailable"]
                lines.append(f"| {d['frames']} frames {d['size']} | {key[:-4]} | {shown} |")
        lines.append(f"| {d['frames']} frames {d['size']} | same frames | {d['same_frames']} |")
    return "\n".join([*lines, ""])
