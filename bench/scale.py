"""Curation at scale, synthetic and offline: the end of an in-pair run (resume decision,
stage tally, streaming merge, compaction) over N simulated clips, and a resume on S3.

The result parts are shaped like a real in-pair clip's (per clip: its ``clips`` row, three
speech segments, two face tracks of 121 detections with their 512-d embedding, two
identities with theirs, two references, one sample; four clips per input video), written the
way the finish stage writes them (:meth:`ResultStore.put_part`, 64 clips a part). Per N it
reports the merge's wall and CPU time and the driver's peak RSS over its baseline (measured
in a fresh process), the objects written, and, at the S3 sizes, the requests a resume of the
finished run makes to an S3 server on 127.0.0.1 (moto, counted at the server); then the
fitted growth exponent of merge CPU and the extrapolation to 1M clips.

It then runs identity retrieval on planted people (:mod:`bench.retrieval`): the exact
blocked path and the faiss HNSW path, with precision and recall and the 1M extrapolation.

``OMNI_BENCH_SCALE_N`` (e.g. ``1000,10000,100000,1000000``) sets the merge sizes;
``OMNI_BENCH_SCALE=full`` adds the 100k retrieval sizes (exact and HNSW, about 15 minutes
more on 2 CPUs). The default run stays under about 10 minutes on 2 CPUs.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

DEFAULT_N = (1_000, 10_000, 100_000)
S3_N = (1_000, 10_000)
KEY = "benchscale000000"
CLIPS_PER_INPUT = 4
PART_CLIPS = 64
SHARD_CLIPS = 2_000


# -------------------------------------------------------------------------- synthetic parts


def _hex(*parts: Any) -> str:
    return hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()[:16]


def clip_tables(clip_id: str, video_id: str, rng: Any) -> dict[str, list[dict[str, Any]]]:
    """One clip's rows of every table, shaped like a real in-pair clip's."""
    import numpy as np

    def emb() -> np.ndarray:
        v = rng.standard_normal(512).astype(np.float32)
        return v / np.linalg.norm(v)

    frames = list(range(121))
    boxes = [[10.0, 20.0, 110.0, 140.0]] * 121
    tracks, idents, refs = [], [], []
    for k in range(2):
        tid, iid = _hex(clip_id, "t", k), _hex(clip_id, "i", k)
        tracks.append({"track_id": tid, "clip_id": clip_id, "frame_indices": frames,
                       "boxes": boxes, "det_scores": [0.9] * 121, "min_face_px": 96.0,
                       "sharpness": 120.0, "embedding": emb(), "identity_id": iid,
                       "passed": True, "reject_reason": None})
        idents.append({"identity_id": iid, "clip_id": clip_id, "track_ids": [tid],
                       "speaker": f"SPEAKER_{k:02d}", "sync_confidence": 4.5, "margin": 1.2,
                       "embedding": emb()})
        refs.append({"reference_id": _hex(clip_id, "r", k), "identity_id": iid,
                     "kind": "image", "path": f"references/{video_id}/{iid}.png",
                     "source_clip_id": clip_id, "frame_index": 40, "box": boxes[0],
                     "start_s": None, "end_s": None, "augment": None})
    segs = [{"segment_id": _hex(clip_id, "s", k), "clip_id": clip_id,
             "speaker": f"SPEAKER_{k % 2:02d}", "start_s": 1.5 * k, "end_s": 1.5 * k + 1.2,
             "text": "a few words said by this speaker here", "confidence": 0.8}
            for k in range(3)]
    clip = {"clip_id": clip_id, "video_id": video_id, "shot_index": 0, "start_s": 0.0,
            "end_s": 5.04, "path": f"clips/{video_id}/{clip_id}.mp4", "fps": 24.0,
            "n_frames": 121, "width": 640, "height": 360, "sample_rate": 16000,
            "status": "sample", "status_reason": None, "n_speakers": 2, "n_faces": 2,
            "best_sync": 4.5}
    sample = {"sample_id": _hex(clip_id, "inpair"), "kind": "inpair", "task": "r2av",
              "clip_id": clip_id, "clip_path": clip["path"],
              "caption_path": f"captions/{video_id}/{clip_id}.json",
              "identity_ids": [i["identity_id"] for i in idents],
              "image_reference_ids": [r["reference_id"] for r in refs],
              "audio_reference_ids": [r["reference_id"] for r in refs],
              "n_speakers": 2, "mask_frames": [40, 40], "mask_boxes": [boxes[0]] * 2,
              "mask_spans": [[0.0, 1.2], [1.5, 2.7]], "caption_flags": []}
    return {"clips": [clip], "speech_segments": segs, "face_tracks": tracks,
            "identities": idents, "references": refs, "samples": [sample]}


STATS = {"steps": {"audio": 0.9, "faces": 2.1, "associate": 0.3, "references": 0.1,
                   "caption": 0.01, "finish": 0.001, "cut": 0.4}, "failed": None,
         "decodes": {"audio audio": 1, "visual video": 1, "visual audio": 1}}


def write_synthetic_run(out: str, n_clips: int, sources: list[tuple[str, list[Any]]] | None = None,
                        seed: int = 0) -> dict[str, Any]:
    """The result parts of a finished in-pair run of ``n_clips`` clips in ``out`` (a folder
    or URL); ``sources`` (input URL, its listed stat) when the inputs exist, else invented
    paths. Returns the inputs with their stats."""
    import numpy as np
    import pyarrow as pa

    from omni_core.jobs.store import Entry, ResultStore, columnar, parquet_bytes
    from omni_core.storage import RunFolder

    rng = np.random.default_rng(seed)
    folder = RunFolder(out)
    store = ResultStore(folder, "inpair")
    n_inputs = math.ceil(n_clips / CLIPS_PER_INPUT)
    if sources is None:
        sources = [(f"/data/videos/v{i:07d}.mp4", [1_000_000 + i, 1_700_000_000_000_000_000])
                   for i in range(n_inputs)]
    # one template part, validated through the real writer; the others are copies of it with
    # their own ids (building and validating a million clips' rows would take longer than the
    # merge being measured)
    template: dict[str, list[dict[str, Any]]] = {}
    for c in range(PART_CLIPS):
        for t, rows in clip_tables(f"{c:016x}", "v", rng).items():
            template.setdefault(t, []).extend({**r, "_item": f"{c:016x}", "_row": i}
                                              for i, r in enumerate(rows))
    arrow = {t: columnar(t, rows) for t, rows in template.items()}
    id_cols = {"clip_id", "source_clip_id", "_item", "track_id", "identity_id", "segment_id",
               "reference_id", "sample_id", "video_id"}
    clip_no = 0
    parts = 0
    plans: list[Entry] = []
    while clip_no < n_clips:
        n = min(PART_CLIPS, n_clips - clip_no)
        ids = [_hex("clip", clip_no + c) for c in range(n)]
        inputs = [sources[(clip_no + c) // CLIPS_PER_INPUT][0] for c in range(n)]
        stem = f"part-{time.time_ns():020d}-{_hex('part', clip_no)[:12]}"
        base = f"{store.folder_of('clips', KEY)}/{stem}"
        for t, table in arrow.items():
            keep = pa.array([int(x, 16) < n for x in table.column("_item").to_pylist()])
            table = table.filter(keep)
            cols = {}
            for name in table.column_names:
                col = table.column(name)
                if name in id_cols:
                    col = pa.array([None if v is None else
                                    (ids[int(v, 16)] if len(v) == 16 and name in (
                                        "clip_id", "source_clip_id", "_item") else
                                     _hex(clip_no, v)) for v in col.to_pylist()], pa.string())
                cols[name] = col
            folder.write_bytes(f"{base}.{t}.parquet",
                               parquet_bytes(pa.table(cols, schema=table.schema)))
        items = pa.table({
            "item": pa.array(ids, pa.string()), "parent": pa.array(inputs, pa.string()),
            "source": pa.nulls(n, pa.string()), "stat": pa.nulls(n, pa.string()),
            "outputs": pa.nulls(n, pa.string()),
            "record": pa.array([json.dumps({"stats": STATS})] * n, pa.string())})
        folder.write_bytes(f"{base}.items.parquet", parquet_bytes(items))
        clip_no += n
        parts += 1
    for i, (src, stat) in enumerate(sources[:n_inputs]):
        first = i * CLIPS_PER_INPUT
        clip_ids = [_hex("clip", c) for c in range(first, min(first + CLIPS_PER_INPUT,
                                                              n_clips))]
        video = {"video_id": _hex("video", i), "path": src, "content_hash": _hex("c", i),
                 "duration_s": 30.0, "fps": 24.0, "n_frames": 720, "width": 640,
                 "height": 360, "video_codec": "h264", "has_audio": True,
                 "audio_codec": "aac", "sample_rate": 16000, "vfr": False}
        plans.append(Entry(src, {"clip_ids": clip_ids,
                                 "stats": {"steps": {"prepare": 0.5}, "failed": None}},
                           source=src, stat=stat, tables={"videos": [video]}))
        if len(plans) == PART_CLIPS or i == n_inputs - 1:
            store.put_part("inputs", KEY, plans)
            plans = []
            parts += 1
    return {"inputs": sources[:n_inputs], "parts": parts}


# -------------------------------------------------------------------------- the driver's end


def finish_run(out: str, inputs: list[tuple[str, list[Any]]]) -> dict[str, Any]:
    """What ``run_inpair`` does after the workers (:func:`pipelines.inpair.dag.merge_run`):
    the resume decision, the stage tally, the streaming merge of every table and the
    compaction."""
    from omni_core.jobs.merge import shard_count
    from omni_core.jobs.store import ResultStore
    from omni_core.storage import Listing, RunFolder
    from pipelines.inpair.dag import merge_run

    folder = RunFolder(out)
    store = ResultStore(folder, "inpair")
    listing = Listing(files=[s for s, _ in inputs], stats=dict(inputs))
    m = merge_run(store, KEY, listing, folder, SHARD_CLIPS)
    return {"complete": len(m.done.complete), "clips": len(m.done.clips),
            "shards": shard_count(len(m.done.clips), SHARD_CLIPS), "counts": m.counts,
            "stages": m.tally.rows()[1]["in"]}


def _measure_child(out: str, inputs_file: str) -> None:
    """In a fresh process: baseline RSS after the imports, then :func:`finish_run` timed."""
    import pyarrow  # noqa: F401  (the imports are the baseline, not the merge)

    import pipelines.inpair.dag  # noqa: F401
    from bench import memory_bytes

    inputs = [tuple(x) for x in json.loads(Path(inputs_file).read_text())]
    base = memory_bytes()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    res = finish_run(out, inputs)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = memory_bytes()[1]
    print(json.dumps({**res, "wall_s": wall, "cpu_s": cpu,
                      "peak_rss_over_baseline_gb": max(0, peak - base) / 1e9}))


def measure_merge(n_clips: int, root: Path) -> dict[str, Any]:
    out = root / f"run-{n_clips}"
    t0 = time.perf_counter()
    made = write_synthetic_run(str(out), n_clips)
    write_s = time.perf_counter() - t0
    inputs_file = root / f"inputs-{n_clips}.json"
    inputs_file.write_text(json.dumps(made["inputs"]))
    results = out / "_results"
    objects = sum(1 for p in results.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in results.rglob("*") if p.is_file())
    proc = subprocess.run([sys.executable, "-m", "bench.scale", "merge", str(out),
                           str(inputs_file)], capture_output=True, text=True,
                          cwd=Path(__file__).resolve().parents[1])
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    manifests = [p for p in out.rglob("*.parquet") if "_results" not in p.parts]
    return {"clips": n_clips, "inputs": len(made["inputs"]), "synthesis_s": round(write_s, 1),
            "result_objects": objects, "result_mb": round(size / 1e6, 1),
            "result_bytes_per_clip": round(size / n_clips),
            "manifest_files": len(manifests), "shards": r["shards"],
            "merge_wall_s": round(r["wall_s"], 2), "merge_cpu_s": round(r["cpu_s"], 2),
            "driver_peak_rss_over_baseline_gb": round(r["peak_rss_over_baseline_gb"], 3),
            "rows": r["counts"], "complete_inputs": r["complete"]}


# -------------------------------------------------------------------------- S3 resume


class CountingS3:
    """moto's S3 server on 127.0.0.1 with every request counted (method, and whether it
    lists)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.counts: dict[str, int] = {}
        outer = self

        class _Server(ThreadedMotoServer):
            def _server_entry(self) -> None:
                from moto.server import DomainDispatcherApplication, create_backend_app
                from werkzeug.serving import make_server

                app = DomainDispatcherApplication(create_backend_app)

                def counted(environ: dict, start: Any) -> Any:
                    q = environ.get("QUERY_STRING", "")
                    kind = environ["REQUEST_METHOD"] + (" list" if "list-type" in q or (
                        environ["REQUEST_METHOD"] == "GET"
                        and environ.get("PATH_INFO", "").count("/") <= 1) else "")
                    outer.counts[kind] = outer.counts.get(kind, 0) + 1
                    return app(environ, start)

                self._server = make_server(self._ip_address, self._port, counted, True)
                self._server_ready_event.set()
                self._server.serve_forever()

        self.server = _Server(ip_address="127.0.0.1", port=0, verbose=False)

    def __enter__(self) -> CountingS3:
        import logging

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.server.start()
        host, port = self.server.get_host_and_port()
        self.env = {"AWS_ACCESS_KEY_ID": "OMNIBENCHKEY00000000",
                    "AWS_SECRET_ACCESS_KEY": "omni-bench-secret-0123456789",
                    "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_ENDPOINT_URL": f"http://{host}:{port}"}
        self.saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        for k, v in self.saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self.server.stop()

    def reset(self) -> None:
        self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def measure_s3_resume(n_clips: int) -> dict[str, Any]:
    """A finished run of ``n_clips`` clips on S3 (inputs and output in a bucket): the
    requests its resume makes to decide that everything is done."""
    import s3fs

    from omni_core.jobs.store import ResultStore
    from omni_core.storage import RunFolder, list_files
    from pipelines.inpair.dag import finished

    with CountingS3() as s3:
        fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": s3.env["AWS_ENDPOINT_URL"]},
                               skip_instance_cache=True)
        bucket = f"omni-bench-{n_clips}-{os.urandom(4).hex()}"
        fs.mkdir(bucket)
        n_inputs = math.ceil(n_clips / CLIPS_PER_INPUT)
        for i in range(n_inputs):
            fs.pipe_file(f"{bucket}/videos/v{i:07d}.mp4", b"x" * 16)
        listing = list_files(f"s3://{bucket}/videos")
        sources = [(u, listing.stats[u]) for u in listing.files]
        out = f"s3://{bucket}/run"
        write_synthetic_run(out, n_clips, sources)
        store = ResultStore(RunFolder(out), "inpair")
        for kind in ("inputs", "clips"):
            store.compact(kind, KEY)
        s3.reset()
        t0 = time.perf_counter()
        listing = list_files(f"s3://{bucket}/videos", exclude=[out])
        listed = s3.total
        fresh = ResultStore(RunFolder(out, staging=tempfile.mkdtemp()), "inpair")
        done = finished(fresh, KEY, listing)
        wall = time.perf_counter() - t0
        assert len(done.complete) == n_inputs, (len(done.complete), n_inputs)
        return {"clips": n_clips, "inputs": n_inputs, "requests": s3.total,
                "requests_listing_inputs": listed,
                "requests_per_clip": round(s3.total / n_clips, 5),
                "by_method": dict(sorted(s3.counts.items())), "wall_s": round(wall, 2)}


# -------------------------------------------------------------------------- the entry


def fit_exponent(ns: list[int], values: list[float]) -> float | None:
    """The slope of log(value) over log(n), least squares."""
    pts = [(math.log(n), math.log(v)) for n, v in zip(ns, values, strict=True) if v > 0]
    if len(pts) < 2:
        return None
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    den = sum((x - mx) ** 2 for x, _ in pts)
    return sum((x - mx) * (y - my) for x, y in pts) / den if den else None


def run(repeat: int = 1) -> dict[str, Any]:
    env = os.environ.get("OMNI_BENCH_SCALE_N")
    ns = [int(x) for x in env.split(",")] if env else list(DEFAULT_N)
    merge = []
    with tempfile.TemporaryDirectory(prefix="omni-scale-") as tmp:
        for n in ns:
            print(f"bench scale: merge of {n} clips ...", flush=True)
            merge.append(measure_merge(n, Path(tmp)))
            import shutil

            shutil.rmtree(Path(tmp) / f"run-{n}", ignore_errors=True)
    s3 = []
    for n in [n for n in S3_N if n in ns or not env]:
        print(f"bench scale: S3 resume of {n} clips ...", flush=True)
        s3.append(measure_s3_resume(n))
    cpu = [m["merge_cpu_s"] for m in merge]
    exp = fit_exponent(ns, cpu)
    big = merge[-1]
    at_1m = (big["merge_cpu_s"] * (1e6 / big["clips"]) ** exp) if exp else None
    rss = {m["clips"]: m["driver_peak_rss_over_baseline_gb"] for m in merge}
    out: dict[str, Any] = {"merge": merge, "s3_resume": s3,
                           "merge_cpu_exponent": round(exp, 3) if exp else None,
                           "merge_cpu_at_1m_s": round(at_1m, 1) if at_1m else None,
                           "rss_ratio_largest_over_10k": (
                               round(rss[max(rss)] / rss[10_000], 2)
                               if 10_000 in rss and rss[10_000] else None)}
    from . import retrieval

    full = os.environ.get("OMNI_BENCH_SCALE") == "full"
    print("bench scale: identity retrieval ...", flush=True)
    out["retrieval"] = (retrieval.run() if full else
                        retrieval.run(exact_sizes=(1_000, 10_000), hnsw_sizes=(10_000, 30_000)))
    return out


def markdown(r: dict[str, Any]) -> str:
    lines = ["## Curation at scale (synthetic, offline)", "",
             "| clips | inputs | result objects | result MB (B/clip) | manifest files "
             "(shards) | merge wall s | merge CPU s | driver peak RSS over baseline GB |",
             "|---|---|---|---|---|---|---|---|"]
    for m in r["merge"]:
        lines.append(f"| {m['clips']} | {m['inputs']} | {m['result_objects']} | "
                     f"{m['result_mb']} ({m['result_bytes_per_clip']}) | "
                     f"{m['manifest_files']} ({m['shards']}) | {m['merge_wall_s']} | "
                     f"{m['merge_cpu_s']} | {m['driver_peak_rss_over_baseline_gb']} |")
    lines += ["", f"Merge CPU growth exponent {r['merge_cpu_exponent']}; extrapolated to 1M "
              f"clips: {r['merge_cpu_at_1m_s']} s CPU. Peak RSS, largest N over 10k: "
              f"{r['rss_ratio_largest_over_10k']}x.", "",
              "| resume on S3: clips | inputs | requests (listing the inputs) | per clip "
              "| by method | wall s |", "|---|---|---|---|---|---|"]
    for s in r["s3_resume"]:
        lines.append(f"| {s['clips']} | {s['inputs']} | {s['requests']} "
                     f"({s['requests_listing_inputs']}) | {s['requests_per_clip']} | "
                     f"{s['by_method']} | {s['wall_s']} |")
    if r.get("retrieval"):
        from . import retrieval

        lines += ["", retrieval.markdown(r["retrieval"])]
    return "\n".join(lines) + "\n"


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "merge":
    _measure_child(sys.argv[2], sys.argv[3])
