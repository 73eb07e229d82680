"""Creating a user study: which instances and models, the protocol, who rates what.

A study rates generated videos of a benchmark's instances (IDBench-Omni layout: reference
photos, reference voices, a structured caption) on the paper's seven human-evaluation
dimensions (:data:`DIMENSIONS`), with one of two protocols:

- ``absolute``: one video at a time, a score from 1 (very poor) to 5 (excellent) per
  dimension; an item is one instance x one model;
- ``pairwise``: two anonymised videos of the same instance side by side (the sides drawn per
  rater), "left better / same / right better" per dimension (good / same / bad, GSB); an item
  is one instance x one pair of models (every pair, or the reference against each other).

Assignments are balanced: every item gets exactly ``ratings`` ratings from distinct raters,
given each time to the least-loaded raters (ties drawn with the seed), so raters' loads differ
by at most one item; each rater's order is shuffled. Attention checks per rater: ``repeats``
of their own items shown again later (under new ids: the page cannot tell), and ``broken``
items with an obviously broken video (noise and hiss, made here with ffmpeg). Only instances
for which every model has a video are used (the others are counted). The draw is seeded; the
raters' tokens are random.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import secrets
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from omni_core.errors import OmniError

from .db import DB_NAME, SCHEMA_VERSION, connect, set_meta, transaction


@dataclass(frozen=True)
class Dimension:
    key: str
    label: str
    #: the question of the absolute protocol, and of the pairwise one
    absolute: str
    pairwise: str
    #: an obviously broken video must score at most 2 on it (or lose on it)
    checks_broken: bool = False


DIMENSIONS = (
    Dimension("text_video", "Text-video alignment",
              "Does the video show what the caption describes (people, scene, actions)?",
              "Which video shows better what the caption describes?"),
    Dimension("identity", "Identity similarity",
              "Do the people look like the reference photos?",
              "In which video do the people look more like the reference photos?"),
    Dimension("video_quality", "Video quality",
              "How good is the picture (sharp, natural, free of artefacts)?",
              "Which video has the better picture?", checks_broken=True),
    Dimension("text_audio", "Text-audio alignment",
              "Do the people say what the caption says they say, in its order?",
              "In which video is the speech closer to what the caption says?"),
    Dimension("timbre", "Timbre similarity",
              "Do the voices sound like the reference voices?",
              "In which video do the voices sound more like the reference voices?"),
    Dimension("audio_quality", "Audio quality",
              "How good is the sound (clear, natural, free of noise)?",
              "Which video has the better sound?", checks_broken=True),
    Dimension("lip_sync", "Lip-sync",
              "Do the lips move with the speech?",
              "In which video do the lips move better with the speech?"),
)
DIMENSION_KEYS = tuple(d.key for d in DIMENSIONS)
PROTOCOLS = ("absolute", "pairwise")
#: the absolute protocol's scale and its anchors
SCALE = (1, 5)
SCALE_LABELS = {1: "very poor", 2: "poor", 3: "fair", 4: "good", 5: "excellent"}
PAIRWISE_VALUES = (-1, 0, 1)

_MIME = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png",
         ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
         ".wav": "audio/wav", ".mp3": "audio/mpeg", ".flac": "audio/flac", ".ogg": "audio/ogg",
         ".m4a": "audio/mp4"}


@dataclass
class StudyOptions:
    protocol: str = "absolute"
    #: raters (personal links) and ratings per item (each from a different rater)
    raters: int = 5
    ratings: int = 3
    #: instances drawn (seeded) from those every model has a video of; None: all of them
    instances: int | None = None
    #: the benchmark tasks rated (the paper's study rates R2AV); ("all",) for every task
    tasks: tuple[str, ...] = ("r2av",)
    #: pairwise: ``all`` pairs of models, or ``reference`` against each other model
    pairs: str = "all"
    reference: str | None = None
    #: attention checks per rater
    repeats: int = 1
    broken: int = 1
    #: a repeated item's mean absolute difference (absolute scale points; pairwise steps)
    #: above which the rater fails the check
    repeat_tolerance: float | None = None
    labels: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise OmniError(f"protocol must be one of {', '.join(PROTOCOLS)}, got "
                            f"{self.protocol!r}")
        for name in ("raters", "ratings"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise OmniError(f"{name} must be an integer >= 1, got {v!r}")
        for name in ("repeats", "broken"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise OmniError(f"{name} must be an integer >= 0, got {v!r}")
        if self.ratings > self.raters:
            raise OmniError(f"each item needs {self.ratings} ratings from different raters, "
                            f"but the study has {self.raters} raters")
        if self.instances is not None and self.instances < 1:
            raise OmniError(f"instances must be >= 1, got {self.instances}")
        if self.pairs not in ("all", "reference"):
            raise OmniError(f"pairs must be 'all' or 'reference', got {self.pairs!r}")
        if self.labels and len(self.labels) != self.raters:
            raise OmniError(f"{len(self.labels)} rater labels for {self.raters} raters")
        if self.repeat_tolerance is None:
            self.repeat_tolerance = 1.0 if self.protocol == "absolute" else 0.5


@dataclass
class StudyPlan:
    """What :func:`create_study` wrote, for the console."""

    folder: Path
    protocol: str
    models: list[str]
    instances: list[str]
    items: int
    raters: list[tuple[str, str]]  # (label, token)
    per_rater: list[int]
    #: model -> "instance: reason" of each instance left out for want of its video
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def links(self, base_url: str) -> list[tuple[str, str]]:
        base = base_url.rstrip("/")
        return [(label, f"{base}/r/{token}") for label, token in self.raters]


def mime_of(path: str | os.PathLike[str]) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in _MIME:
        raise OmniError(f"{path}: a browser cannot show a {suffix or 'suffix-less'} file in a "
                        f"study (use one of {', '.join(sorted(_MIME))})")
    return _MIME[suffix]


def _opaque() -> str:
    return secrets.token_urlsafe(12)


def _video_with_sound(video: Path, media_dir: Path) -> Path:
    """The prediction as the page plays it: the mp4 itself when it has sound, else the mp4
    with its sibling .wav muxed in (a copy in the study's media folder)."""
    from omni_core.media import probe
    from omni_core.media.ffmpeg import binary, run

    info = probe(video)
    if not info.has_video:
        raise OmniError(f"{video}: no video stream")
    wav = video.with_suffix(".wav")
    if info.has_audio or not wav.is_file():
        return video
    media_dir.mkdir(parents=True, exist_ok=True)
    out = media_dir / f"{_opaque()}.mp4"
    run([binary("ffmpeg"), "-nostdin", "-y", "-v", "error", "-i", str(video), "-i", str(wav),
         "-map", "0:v:0", "-map", "1:a:0", "-c:v", "copy", "-c:a", "aac", "-b:a", "128k",
         "-shortest", str(out)], timeout=300, what=f"{video}: muxing its .wav")
    return out


def broken_video(dest: Path, width: int = 640, height: int = 360, seconds: float = 5.0) -> Path:
    """An obviously broken video with sound: full-frame noise over grey and loud hiss."""
    from omni_core.media.ffmpeg import binary, run

    w, h = max(64, width // 2 * 2), max(64, height // 2 * 2)
    dest.parent.mkdir(parents=True, exist_ok=True)
    run([binary("ffmpeg"), "-nostdin", "-y", "-v", "error",
         "-f", "lavfi", "-i", f"color=c=gray:s={w}x{h}:d={seconds}:r=24,noise=alls=100:allf=t+u",
         "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:c=white:a=0.6:r=44100",
         "-c:v", "libx264", "-pix_fmt", "yuv420p", "-preset", "veryfast", "-crf", "40",
         "-c:a", "aac",
         "-shortest", str(dest)], timeout=300, what="the broken attention-check video")
    return dest


def comparison_inputs(comparison: str | os.PathLike[str]
                      ) -> tuple[pd.DataFrame, dict[str, Path]]:
    """The instances and the prediction folders of an ``omni benchmark run`` output."""
    from omni_core.manifests import BENCH_INSTANCES, read_manifest

    root = Path(comparison)
    inst = root / "instances.parquet"
    preds = root / "predictions"
    if not inst.is_file() or not preds.is_dir():
        raise OmniError(f"{comparison}: not an `omni benchmark run` output (needs "
                        "instances.parquet and predictions/)")
    instances = read_manifest(inst, BENCH_INSTANCES)
    order = _model_order(root)
    folders = {p.name: p for p in preds.iterdir() if p.is_dir() and not p.name.startswith(".")}
    names = [n for n in order if n in folders] + sorted(set(folders) - set(order))
    return instances, {n: folders[n] for n in names}


def bench_inputs(bench: str | os.PathLike[str], specs: list[str]
                 ) -> tuple[pd.DataFrame, dict[str, Path]]:
    """A benchmark's instances (reference paths made absolute) and the prediction folders
    given as ``NAME=DIR``."""
    from benchmark.compare import bench_instances

    instances, _ = bench_instances(bench)
    preds: dict[str, Path] = {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep or not name or not folder:
            raise OmniError(f"--predictions {spec!r}: write NAME=DIR")
        if name in preds:
            raise OmniError(f"--predictions: model {name!r} given twice")
        if not Path(folder).is_dir():
            raise OmniError(f"--predictions {name}: {folder} is not a folder")
        preds[name] = Path(folder).resolve()
    return instances, preds


def _model_order(root: Path) -> list[str]:
    try:
        summary = json.loads((root / "summary.json").read_text())
        models = summary.get("details", {}).get("models", [])
        return [str(m["name"]) for m in models if isinstance(m, dict) and "name" in m]
    except (OSError, ValueError, AttributeError):
        return []


def _balanced(units: list[str], raters: int, ratings: int, rng: random.Random
              ) -> dict[int, list[str]]:
    """Each unit to ``ratings`` distinct raters, always the least loaded (ties drawn)."""
    load = [0] * raters
    out: dict[int, list[str]] = {r: [] for r in range(raters)}
    order = list(units)
    rng.shuffle(order)
    for u in order:
        ranked = sorted(range(raters), key=lambda r: (load[r], rng.random()))
        for r in ranked[:ratings]:
            out[r].append(u)
            load[r] += 1
    return out


def create_study(out: str | os.PathLike[str], instances: pd.DataFrame,
                 predictions: dict[str, Path], options: StudyOptions | None = None, *,
                 source: dict[str, Any] | None = None) -> StudyPlan:
    """Write a new study to ``out`` (refused when one is there)."""
    o = options or StudyOptions()
    folder = Path(out)
    if (folder / DB_NAME).exists():
        raise OmniError(f"{folder} already holds a study; use another folder (a study's "
                        "items and links never change once raters have them)")
    if len(predictions) < 2:
        raise OmniError(f"a study compares two or more models; got {len(predictions)}")
    if o.reference is not None and o.reference not in predictions:
        raise OmniError(f"reference model {o.reference!r} is not among "
                        f"{', '.join(predictions)}")
    rng = random.Random(o.seed)
    models = list(predictions)
    inst = instances
    if "all" not in o.tasks:
        inst = inst[inst.task.isin(o.tasks)]
    if inst.empty:
        raise OmniError(f"no instance of task {', '.join(o.tasks)} in the benchmark")
    media_dir = folder / "media"
    folder.mkdir(parents=True, exist_ok=True)
    media: list[tuple[str, str, str]] = []  # (id, path, mime)
    # each model's video of each instance, as the page plays it (with sound); a missing or
    # unreadable one leaves the instance out, with the reason
    videos: dict[tuple[str, str], Path] = {}
    left_out: dict[str, list[str]] = {}
    usable = []
    for row in inst.itertuples(index=False):
        iid = str(row.instance_id)
        have = True
        for m in models:
            p = Path(predictions[m]) / f"{iid}.mp4"
            try:
                if not p.is_file():
                    raise OmniError("no video")
                videos[(m, iid)] = _video_with_sound(p, media_dir)
            except OmniError as exc:
                left_out.setdefault(m, []).append(f"{iid}: {exc}")
                have = False
        if have:
            usable.append(row)
    if not usable:
        raise OmniError("no instance has a readable video from every model; nothing to rate")
    if o.instances is not None and o.instances < len(usable):
        usable = rng.sample(usable, o.instances)
    usable.sort(key=lambda r: str(r.instance_id))

    path_of: dict[str, str] = {}

    def add_media(path: Path) -> str:
        mid = _opaque()
        media.append((mid, str(Path(path).resolve()), mime_of(path)))
        path_of[mid] = media[-1][1]
        return mid

    if o.protocol == "absolute":
        combos: list[tuple[str, ...]] = [(m,) for m in models]
    elif o.pairs == "reference":
        ref = o.reference or models[0]
        combos = [(ref, m) for m in models if m != ref]
    else:
        combos = list(itertools.combinations(models, 2))

    items: list[dict[str, Any]] = []
    refs_of: dict[str, tuple[list[str], list[str]]] = {}
    for row in usable:
        iid = str(row.instance_id)
        images = [add_media(Path(p)) for p in row.image_refs]
        voices = [add_media(Path(p)) for p in row.audio_refs]
        refs_of[iid] = (images, voices)
        for combo in combos:
            item = {"item_id": _opaque(), "kind": "rated", "instance_id": iid,
                    "split": getattr(row, "split", None), "caption": str(row.caption),
                    "images": images, "voices": voices, "repeat_of": None,
                    "models": combo,
                    "videos": [add_media(videos[(m, iid)]) for m in combo]}
            items.append(item)
    by_id = {it["item_id"]: it for it in items}
    assigned = _balanced(list(by_id), o.raters, o.ratings, rng)

    broken_src = None
    if o.broken:
        from omni_core.media import probe

        first = probe(videos[(models[0], str(usable[0].instance_id))])
        broken_src = broken_video(media_dir / "attention-check.mp4", first.width or 640,
                                  first.height or 360, min(8.0, first.duration_s or 5.0))

    labels = list(o.labels) or [f"rater {i + 1}" for i in range(o.raters)]
    raters = [(labels[r], secrets.token_urlsafe(18)) for r in range(o.raters)]
    plan_rows: list[tuple[int, int, str, int]] = []  # (rater, position, item, flipped)
    extra: list[dict[str, Any]] = []
    for r in range(o.raters):
        order = list(assigned[r])
        rng.shuffle(order)
        for _ in range(min(o.repeats, len(order))):
            orig = by_id[rng.choice([i for i in order if by_id[i]["kind"] == "rated"])]
            copy = {**orig, "item_id": _opaque(), "kind": "repeat",
                    "repeat_of": orig["item_id"],
                    "videos": [add_media(Path(path_of[v])) for v in orig["videos"]]}
            extra.append(copy)
            by_id[copy["item_id"]] = copy
            start = order.index(orig["item_id"]) + 2
            order.insert(rng.randint(min(start, len(order)), len(order)), copy["item_id"])
        for _ in range(o.broken):
            row = rng.choice(usable)
            iid = str(row.instance_id)
            images, voices = refs_of[iid]
            bad = add_media(broken_src)
            if o.protocol == "absolute":
                combo, vids = (None,), [bad]
            else:
                m = rng.choice(models)
                combo, vids = (None, m), [bad, add_media(videos[(m, iid)])]
            item = {"item_id": _opaque(), "kind": "broken", "instance_id": iid,
                    "split": getattr(row, "split", None), "caption": str(row.caption),
                    "images": images, "voices": voices, "repeat_of": None,
                    "models": combo, "videos": vids}
            extra.append(item)
            by_id[item["item_id"]] = item
            order.insert(rng.randint(1, len(order)), item["item_id"])
        for pos, item_id in enumerate(order):
            flipped = int(o.protocol == "pairwise" and rng.random() < 0.5)
            plan_rows.append((r + 1, pos, item_id, flipped))

    con = connect(folder, create=True)
    try:
        with transaction(con):
            set_meta(con, schema_version=SCHEMA_VERSION, protocol=o.protocol,
                     dimensions=[asdict(d) for d in DIMENSIONS], scale=list(SCALE),
                     scale_labels={str(k): v for k, v in SCALE_LABELS.items()},
                     options=asdict(o), source=source or {},
                     created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            con.executemany("INSERT INTO models (model_id, name, source) VALUES (?, ?, ?)",
                            [(i + 1, m, str(predictions[m])) for i, m in enumerate(models)])
            con.executemany("INSERT INTO media (media_id, path, mime) VALUES (?, ?, ?)", media)
            model_id = {m: i + 1 for i, m in enumerate(models)}
            for it in [*items, *extra]:
                mods = [None if m is None else model_id[m] for m in it["models"]]
                con.execute(
                    "INSERT INTO items (item_id, kind, instance_id, split, caption, images, "
                    "voices, model_a, video_a, model_b, video_b, repeat_of) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (it["item_id"], it["kind"], it["instance_id"], it["split"], it["caption"],
                     json.dumps(it["images"]), json.dumps(it["voices"]), mods[0],
                     it["videos"][0], mods[1] if len(mods) > 1 else None,
                     it["videos"][1] if len(it["videos"]) > 1 else None, it["repeat_of"]))
            con.executemany("INSERT INTO raters (rater_id, token, label) VALUES (?, ?, ?)",
                            [(i + 1, tok, label) for i, (label, tok) in enumerate(raters)])
            con.executemany("INSERT INTO assignments (rater_id, position, item_id, flipped) "
                            "VALUES (?, ?, ?, ?)", plan_rows)
    finally:
        con.close()
    per_rater = [sum(1 for p in plan_rows if p[0] == r + 1) for r in range(o.raters)]
    return StudyPlan(folder, o.protocol, models, [str(r.instance_id) for r in usable],
                     len(items), raters, per_rater, left_out)


def write_links(plan: StudyPlan, base_url: str) -> Path:
    """``STUDY/links.txt``: one personal link per rater (readable by the owner only: a link
    is a rater's password)."""
    path = plan.folder / "links.txt"
    text = "".join(f"{label}\t{url}\n" for label, url in plan.links(base_url))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)
    return path
