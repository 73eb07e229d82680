"""An IDBench-Omni-style benchmark built from curated data, held out of training by identity.

``omni benchmark build --curation RUN [--curation RUN ...] [--crosspair XRUN] --out B``

1. **Persons.** Every identity of the in-pair runs (one person in one clip) is a node; the
   verified matches of a cross-pair run (``identity_matches.parquet``: the same face in
   another video) join nodes into persons. Without a cross-pair run a person is known within
   one clip only (and, through the rule below, one video); the output says so.
2. **Held-out persons.** Among the persons who are a subject of some sample, ``persons`` (a
   count) or ``fraction`` of them are drawn with ``seed``. The held-out set is then closed:
   every clip of a video that shows a held-out person is a benchmark clip (a video's clips
   share their people, and cross-pair retrieval only matches across videos), and with
   ``costars: holdout`` (the default) every other person seen in a benchmark clip is held out
   too, until nothing changes, so that no benchmark face is ever trained on. With
   ``costars: keep`` the co-stars stay trainable in their other clips (the benchmark clips
   themselves stay held out); heldout.parquet marks them ``held_out = False``.
3. **Instances.** Every sample of a benchmark clip becomes an instance: its references (the
   in-pair identity crops and timbre spans), its structured caption, and a task. Tasks are
   dealt per set in the ratio ``mix`` (the paper's 100 R2AV : 50 RV2AV : 50 RA2V by default;
   the order from a hash of the seed and the sample id), or every task per sample
   (``every_task``). RV2AV gets the masked source video: the clip with every subject's head
   (face track boxes interpolated per frame, widened by ``head_expand``) filled with grey,
   as ``omni latents`` masks the RV2AV source for training (:func:`omni_model.latents.
   grey_heads`); no sound. RA2V gets the driving audio: the clip's own sound, 16 kHz mono.

Written to ``B``:

* the released layout, one set folder per number of subjects (``oneip``, ``twoip``,
  ``threeip``, then ``<n>ip``): ``<set>/imgs/<id>/``, ``<set>/audios/<id>/`` (``<id>.png``
  for one person, ``0.png, 1.png, ...`` for several), ``<set>/captions/<id>.json``, and our
  extensions ``<set>/videos/<id>.mp4`` (RV2AV) and ``<set>/driving_audios/<id>.wav`` (RA2V);
  ``<id>`` is ``<sample id>-<task>``, the instance ``<set>_<id>``;
* ``bench_instances.parquet``: the same instances as :func:`benchmark.released.
  import_released` reads back from the folder, with the build's provenance in the file;
* ``heldout.parquet`` (schema ``heldout``): the held-out identities with their person, why,
  clip, video (path and content hash), run, embedding and instances; ``omni latents`` and
  ``omni train`` refuse samples that touch them (``--heldout B``, :mod:`omni_core.heldout`);
* ``bench_sources.parquet``: each instance's sample, clip, run and persons;
* ``errors.parquet`` (an instance that cannot be written: stage ``build``, with the reason;
  its partial files are removed) and ``summary.json``.

A rebuild into the same folder replaces the previous build; a folder that is not empty and
not a build is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omni_core.errors import OmniError
from omni_core.manifests import (
    error_row,
    errors_frame,
    read_manifest,
    stable_id,
    write_manifest,
)
from omni_core.storage import RunFolder, exists, join, local_input, resolve
from omni_core.tasks import TASKS, deal_tasks

JOB = "benchmark"
SETS = {1: "oneip", 2: "twoip", 3: "threeip"}
#: the paper's IDBench-Omni: 100 R2AV, 50 RV2AV, 50 RA2V instances
PAPER_MIX = {"r2av": 2.0, "rv2av": 1.0, "ra2v": 1.0}
COSTARS = ("holdout", "keep")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3")
DRIVING_RATE = 16000
OUR_FILES = ("bench_instances.parquet", "heldout.parquet", "bench_sources.parquet",
             "errors.parquet", "summary.json")
NO_CROSSPAIR = ("no cross-pair run: a person is known within one video only (its clips are "
                "held out together); the same person in another video is not found and may "
                "be in training. Give --crosspair to hold people out across videos")


def set_name(n_people: int) -> str:
    """The set folder of instances with ``n_people`` subjects."""
    return SETS.get(n_people, f"{n_people}ip")


@dataclass
class BuildOptions:
    """What to hold out and how to make instances (recorded in summary.json)."""

    persons: int | None = None  # how many persons to draw (else ``fraction``)
    fraction: float = 0.1  # of the persons who are a subject of some sample
    seed: int = 0
    mix: dict[str, float] = field(default_factory=lambda: dict(PAPER_MIX))
    every_task: bool = False  # one instance per task of ``mix`` for every sample
    costars: str = "holdout"  # holdout | keep
    head_expand: float = 1.6  # as omni latents' RV2AV source (LatentsConfig.head_expand)

    def __post_init__(self) -> None:
        if self.persons is not None and self.persons < 1:
            raise OmniError("--persons must be at least 1")
        if self.persons is None and not 0.0 < self.fraction <= 1.0:
            raise OmniError(f"--fraction must be in (0, 1], not {self.fraction}")
        if self.costars not in COSTARS:
            raise OmniError(f"--costars is one of {', '.join(COSTARS)}, not {self.costars!r}")
        if self.head_expand < 1.0:
            raise OmniError("--head-expand must be at least 1")
        deal_tasks(self.mix, 1)  # the mix's own error for a bad mix


def parse_mix(text: str) -> dict[str, float]:
    """``r2av=2,rv2av=1,ra2v=1`` (or ``r2av:rv2av:ra2v`` weights ``2:1:1``) -> weights."""
    text = text.strip()
    if re.fullmatch(r"[\d.]+(:[\d.]+){2}", text):
        return dict(zip(TASKS, (float(x) for x in text.split(":")), strict=True))
    out: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, eq, value = part.partition("=")
        if not eq or name.strip() not in TASKS:
            raise OmniError(f"--mix {text!r}: expected TASK=WEIGHT,... with tasks "
                            f"{', '.join(TASKS)} (or W:W:W)")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise OmniError(f"--mix {text!r}: {value!r} is not a number") from None
    return out


# --------------------------------------------------------------------------------------------
# the curation runs


@dataclass
class Curation:
    """The tables of the in-pair runs, with the run of every row; media paths absolute."""

    runs: list[str]
    identities: pd.DataFrame
    clips: pd.DataFrame
    videos: pd.DataFrame
    samples: pd.DataFrame
    references: pd.DataFrame
    tracks: pd.DataFrame


def load_curation(runs: Sequence[str | os.PathLike[str]]) -> Curation:
    names = ("identities", "clips", "videos", "samples", "references", "face_tracks")
    parts: dict[str, list[pd.DataFrame]] = {n: [] for n in names}
    roots = []
    for run in runs:
        root = RunFolder(run).out  # absolute path, or the URL
        if not exists(join(root, "samples.parquet")) or not exists(join(root,
                                                                        "videos.parquet")):
            raise OmniError(f"{root} is not an in-pair curation run (no samples.parquet and "
                            "videos.parquet): give the runs of `omni curate inpair` as "
                            "--curation, a cross-pair run as --crosspair")
        roots.append(root)
        for n in names:
            df = read_manifest(join(root, f"{n}.parquet"), n).assign(run=root)
            if n == "clips":
                df["path"] = [None if pd.isna(p) else resolve(root, p) for p in df.path]
            elif n == "samples":
                df["clip_path"] = [resolve(root, p) for p in df.clip_path]
                df["caption_path"] = [resolve(root, p) for p in df.caption_path]
            elif n == "references":
                df["path"] = [resolve(root, p) for p in df.path]
            parts[n].append(df)
    if not roots:
        raise OmniError("no in-pair run given (--curation)")
    tables = {n: pd.concat(v, ignore_index=True) for n, v in parts.items()}
    for n, key in (("identities", "identity_id"), ("samples", "sample_id"),
                   ("clips", "clip_id")):
        dup = tables[n][key][tables[n][key].duplicated()]
        if len(dup):
            raise OmniError(f"{n} {dup.iloc[0]} appears in two runs: give each video to one "
                            "in-pair run")
    return Curation(roots, tables["identities"], tables["clips"],
                    tables["videos"].drop_duplicates("video_id"), tables["samples"],
                    tables["references"].drop_duplicates("reference_id"),
                    tables["face_tracks"])


def read_matches(crosspair: str | os.PathLike[str] | None) -> pd.DataFrame | None:
    """The verified rows of a cross-pair run's ``identity_matches`` (the folder or the file);
    None without a cross-pair run."""
    if crosspair is None:
        return None
    path = os.fspath(crosspair)
    f = path if path.endswith(".parquet") else join(path, "identity_matches.parquet")
    if not exists(f):
        raise OmniError(f"{path}: no identity_matches.parquet: not a cross-pair run (`omni "
                        "curate crosspair`)")
    m = read_manifest(f, "identity_matches")
    return m[m.verified].reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# persons and the held-out set


class _Union:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def join(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclass
class Holdout:
    """Who is held out and which clips and videos go to the benchmark."""

    person_of: dict[str, str]  # identity -> person
    members: dict[str, list[str]]  # person -> identities
    eligible: list[str]  # persons who are a subject of some sample
    drawn: list[str]
    held: dict[str, str]  # held-out person -> reason
    clips: dict[str, str]  # benchmark clip -> why (the held-out person it shows, or whose
    #                        video it is in)
    videos: set[str]
    clip_of: dict[str, str | None]  # identity -> clip
    video_of: dict[str, str | None]  # clip -> video
    outside: list[str]  # identities known only from the cross-pair matches


def choose_heldout(cur: Curation, matches: pd.DataFrame | None,
                   opts: BuildOptions) -> Holdout:
    u = _Union()
    clip_of: dict[str, str | None] = dict(zip(cur.identities.identity_id,
                                              cur.identities.clip_id, strict=True))
    video_of: dict[str, str | None] = dict(zip(cur.clips.clip_id, cur.clips.video_id,
                                               strict=True))
    for i in clip_of:
        u.find(i)
    outside: list[str] = []
    if matches is not None:
        for m in matches.itertuples(index=False):
            for i in (m.query_identity_id, m.match_identity_id):
                if i not in clip_of:
                    clip_of[i] = None
                    outside.append(i)
            if clip_of.get(m.match_identity_id) is None:
                clip_of[m.match_identity_id] = m.match_clip_id
            video_of.setdefault(m.match_clip_id, m.match_video_id)
            u.join(m.query_identity_id, m.match_identity_id)
    roots: dict[str, list[str]] = {}
    for i in sorted(clip_of):
        roots.setdefault(u.find(i), []).append(i)
    members = {f"person-{stable_id('person', *ids, length=12)}": ids
               for ids in roots.values()}
    person_of = {i: p for p, ids in members.items() for i in ids}
    in_clip: dict[str, list[str]] = {}
    for i, c in clip_of.items():
        if c is not None:
            in_clip.setdefault(c, []).append(i)
    clips_of_video: dict[str, set[str]] = {}
    for c, v in video_of.items():
        if v is not None:
            clips_of_video.setdefault(v, set()).add(c)

    subjects = {i for ids in cur.samples.identity_ids for i in ids}
    eligible = sorted({person_of[i] for i in subjects})
    if not eligible:
        raise OmniError("the in-pair runs have no sample: nothing to build a benchmark from")
    if opts.persons is not None:
        k = opts.persons
        if k > len(eligible):
            raise OmniError(f"--persons {k}: the runs have {len(eligible)} person(s) with a "
                            "sample")
    else:
        k = max(1, int(round(opts.fraction * len(eligible))))
    rng = np.random.default_rng(opts.seed)
    drawn = sorted(eligible[int(j)] for j in rng.choice(len(eligible), k, replace=False))
    held = {p: f"drawn (seed {opts.seed})" for p in drawn}
    clips: dict[str, str] = {}  # benchmark clip -> why
    videos: set[str] = set()
    while True:
        for p in sorted(held):
            for i in members[p]:
                c = clip_of.get(i)
                if c is None:
                    continue
                clips.setdefault(c, f"shows held-out {p}")
                v = video_of.get(c)
                if v is not None and v not in videos:
                    videos.add(v)
                    for other in sorted(clips_of_video.get(v, ())):
                        clips.setdefault(other, f"is in video {v} with held-out {p}")
        if opts.costars != "holdout":
            break
        new = {}
        for c in sorted(clips):
            for i in in_clip.get(c, []):
                q = person_of[i]
                if q not in held and q not in new:
                    new[q] = f"in benchmark clip {c}, which {clips[c]}"
        if not new:
            break
        held.update(new)
    return Holdout(person_of, members, eligible, drawn, held, clips, videos, clip_of,
                   video_of, sorted(set(outside)))


def heldout_rows(cur: Curation, h: Holdout, instances_of: Mapping[str, list[str]]
                 ) -> pd.DataFrame:
    """The ``heldout`` table: every identity of a held-out person and of a benchmark clip."""
    ids = {i for p in h.held for i in h.members[p]}
    ids |= {i for i, c in h.clip_of.items() if c in h.clips}
    ident = cur.identities.set_index("identity_id")
    videos = cur.videos.set_index("video_id")
    rows = []
    for i in sorted(ids):
        p = h.person_of[i]
        c = h.clip_of.get(i)
        v = h.video_of.get(c) if c is not None else None
        known = i in ident.index
        emb = ident.embedding[i] if known else None
        emb = None if emb is None or np.size(emb) == 0 else [float(x) for x in emb]
        rows.append({
            "identity_id": i, "person_id": p, "held_out": p in h.held,
            "reason": h.held.get(p) or f"co-star in benchmark clip {c}, which "
                                       f"{h.clips.get(c)} (costars: keep)",
            "clip_id": c, "video_id": v,
            "video_path": str(videos.path[v]) if v in videos.index else None,
            "video_hash": str(videos.content_hash[v]) if v in videos.index else None,
            "run": str(ident.run[i]) if known else None,
            "embedding": emb,
            "instance_ids": sorted(instances_of.get(i, []))})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------------------------
# instances


@dataclass
class Planned:
    instance_id: str
    set_name: str
    case: str
    task: str
    sample: dict[str, Any]


def plan_instances(cur: Curation, h: Holdout, opts: BuildOptions) -> list[Planned]:
    chosen = cur.samples[cur.samples.clip_id.isin(set(h.clips))]
    by_set: dict[str, list[dict[str, Any]]] = {}
    for s in chosen.to_dict("records"):
        by_set.setdefault(set_name(len(s["identity_ids"])), []).append(s)
    tasks = [t for t in TASKS if float(opts.mix.get(t, 0)) > 0]
    out = []
    for name in sorted(by_set):
        rows = sorted(by_set[name], key=lambda s: (stable_id("bench-task", opts.seed,
                                                             s["sample_id"]), s["sample_id"]))
        dealt = ([tasks] * len(rows) if opts.every_task else
                 [[t] for t in deal_tasks(opts.mix, len(rows))])
        for s, ts in zip(rows, dealt, strict=True):
            for t in ts:
                case = f"{s['sample_id']}-{t}"
                out.append(Planned(f"{name}_{case}", name, case, t, s))
    return sorted(out, key=lambda p: p.instance_id)


def _copy_ref(src: str, dst_stem: Path, suffixes: tuple[str, ...], kind: str) -> Path:
    """A reference file into the layout: copied when its format is one the layout takes,
    else converted (PNG, 16 kHz wav)."""
    from omni_core.media import load_audio, read_image, write_image, write_wav

    local = local_input(src)
    suffix = Path(local).suffix.lower()
    dst_stem.parent.mkdir(parents=True, exist_ok=True)
    if suffix in suffixes:
        dst = dst_stem.with_suffix(suffix)
        shutil.copyfile(local, dst)
        return dst
    if kind == "image":
        return Path(write_image(dst_stem.with_suffix(".png"), read_image(local)))
    return Path(write_wav(dst_stem.with_suffix(".wav"), load_audio(local, DRIVING_RATE),
                          DRIVING_RATE))


def masked_source(clip: str, tracks: list[tuple[list[int], list[tuple[float, ...]]]],
                  head_expand: float) -> tuple[np.ndarray, float]:
    """The clip's frames with every subject's head filled with grey, as ``omni latents``
    masks the RV2AV source (the face track boxes interpolated per frame, widened
    ``head_expand`` times); (frames, fps). Cropped to even sides for H.264."""
    from omni_core.media import probe, read_frames
    from omni_model.latents import Fit, grey_heads, interpolate_boxes

    info = probe(clip)
    if not info.n_frames:
        raise OmniError(f"{clip}: no video frames")
    frames = read_frames(clip, list(range(int(info.n_frames))))
    n, hgt, wid = frames.shape[:3]
    per_frame = [interpolate_boxes(fr, bx, n) for fr, bx in tracks]
    out = grey_heads(frames, per_frame, Fit(1.0, 0.0, 0.0, wid, hgt), head_expand)
    return out[:, : hgt - hgt % 2, : wid - wid % 2], float(info.fps or 25.0)


def _subject_tracks(cur_tracks: pd.DataFrame, identities: pd.DataFrame,
                    ids: Sequence[str]) -> list[tuple[list[int], list[tuple[float, ...]]]]:
    out = []
    for i in ids:
        if i not in identities.index:
            continue
        for tid in identities.track_ids[i]:
            if tid in cur_tracks.index:
                t = cur_tracks.loc[tid]
                out.append(([int(x) for x in t.frame_indices],
                            [tuple(map(float, b)) for b in t.boxes]))
    return out


def write_instance(root: Path, p: Planned, refs: pd.DataFrame, identities: pd.DataFrame,
                   tracks: pd.DataFrame, opts: BuildOptions) -> dict[str, Any]:
    """One instance in the released layout; its ``bench_instances`` row (paths absolute, as
    :func:`benchmark.released.import_released` gives them). The caption is written last: a
    case without one is no case of the layout."""
    from omni_core.captions import CaptionError, parse_caption, read_caption_text
    from omni_core.media import load_audio, write_mp4, write_wav

    s = p.sample
    set_dir = root / p.set_name
    n = len(s["identity_ids"])
    names = [p.case] if n == 1 else [str(k) for k in range(n)]
    if len(s["image_reference_ids"]) != n or len(s["audio_reference_ids"]) != n:
        raise OmniError(f"sample {s['sample_id']}: {n} subject(s) but "
                        f"{len(s['image_reference_ids'])} identity and "
                        f"{len(s['audio_reference_ids'])} timbre reference(s)")
    text = read_caption_text(local_input(s["caption_path"]))
    try:
        cap = parse_caption(text)
    except CaptionError as exc:
        raise CaptionError(f"{s['caption_path']}: {exc}") from None
    if cap.subjects and len(cap.subjects) != n:
        raise CaptionError(f"{s['caption_path']}: caption names {len(cap.subjects)} "
                           f"subject(s), the sample has {n}")
    images, audios = [], []
    for k in range(n):
        rid, aid = s["image_reference_ids"][k], s["audio_reference_ids"][k]
        for r, kind in ((rid, "image"), (aid, "audio")):
            if r not in refs.index:
                raise OmniError(f"sample {s['sample_id']}: reference {r} is not in "
                                "references.parquet")
            if refs.kind[r] != kind:
                raise OmniError(f"sample {s['sample_id']}: reference {r} is a "
                                f"{refs.kind[r]} reference, not an {kind} one")
        images.append(_copy_ref(refs.path[rid], set_dir / "imgs" / p.case / names[k],
                                IMAGE_SUFFIXES, "image"))
        audios.append(_copy_ref(refs.path[aid], set_dir / "audios" / p.case / names[k],
                                AUDIO_SUFFIXES, "audio"))
    source = driving = None
    if p.task == "rv2av":
        tr = _subject_tracks(tracks, identities, s["identity_ids"])
        if not tr:
            raise OmniError(f"sample {s['sample_id']}: no face track of its subjects to mask")
        frames, fps = masked_source(local_input(s["clip_path"]), tr, opts.head_expand)
        source = write_mp4(set_dir / "videos" / f"{p.case}.mp4", frames, fps)
    elif p.task == "ra2v":
        wav = load_audio(local_input(s["clip_path"]), DRIVING_RATE)
        if not len(wav):
            raise OmniError(f"{s['clip_path']}: no sound to drive with")
        driving = write_wav(set_dir / "driving_audios" / f"{p.case}.wav", wav, DRIVING_RATE)
    cap_file = set_dir / "captions" / f"{p.case}.json"
    cap_file.parent.mkdir(parents=True, exist_ok=True)
    cap_file.write_text(json.dumps(text), encoding="utf-8")
    return {"instance_id": p.instance_id, "task": p.task, "split": "S" if n == 1 else "M",
            "caption": text, "image_refs": [str(x) for x in images],
            "audio_refs": [str(x) for x in audios],
            "source_video": None if source is None else str(source),
            "driving_audio": None if driving is None else str(driving)}


def _remove_case(root: Path, p: Planned) -> None:
    set_dir = root / p.set_name
    for d in (set_dir / "imgs" / p.case, set_dir / "audios" / p.case):
        shutil.rmtree(d, ignore_errors=True)
    for f in (set_dir / "videos" / f"{p.case}.mp4",
              set_dir / "driving_audios" / f"{p.case}.wav",
              set_dir / "captions" / f"{p.case}.json"):
        f.unlink(missing_ok=True)


def _prepare_out(out: Path) -> None:
    """An empty folder, or a previous build (its sets and files removed); else an error."""
    if not out.exists():
        out.mkdir(parents=True)
        return
    if not out.is_dir():
        raise OmniError(f"{out} is a file, not a folder")
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    if not entries:
        return
    summary = out / "summary.json"
    try:
        ours = json.loads(summary.read_text()).get("job") == JOB
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise OmniError(f"{out} is not empty and holds no benchmark build: give an empty or "
                        "new folder (a rebuild replaces only a previous `omni benchmark build`)")
    for p in entries:
        if p.is_dir() and (p / "captions").is_dir():
            shutil.rmtree(p)
        elif p.name in OUR_FILES:
            p.unlink()


# --------------------------------------------------------------------------------------------
# the job


@dataclass
class BuildResult:
    out: Path
    instances: pd.DataFrame
    heldout: pd.DataFrame
    errors: pd.DataFrame
    summary: Any  # JobSummary


def build_benchmark(curation: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str],
                    *, crosspair: str | os.PathLike[str] | None = None,
                    options: BuildOptions | None = None,
                    progress: bool = True) -> BuildResult:
    """Build the benchmark from the in-pair runs ``curation`` (and the cross-pair run's
    identity matches) into ``out``; see the module docstring."""
    from omni_core.jobs import JobSummary, driver_stage, provenance, result_key
    from omni_core.jobs.progress import ProgressBoard, ProgressView

    t0 = time.perf_counter()
    opts = options or BuildOptions()
    root = Path(out).expanduser().resolve()
    cur = load_curation(curation)
    cross = None if crosspair is None else RunFolder(crosspair).out
    matches = read_matches(cross)
    _prepare_out(root)

    ts = time.perf_counter()
    h = choose_heldout(cur, matches, opts)
    plan = plan_instances(cur, h, opts)
    t_hold = time.perf_counter() - ts

    ts = time.perf_counter()
    refs = cur.references.set_index("reference_id")
    identities = cur.identities.set_index("identity_id")
    tracks = cur.tracks.set_index("track_id")
    rows, errors, sources = [], [], []
    board = view = None
    if progress:
        board = ProgressBoard(["instances"], len(plan), ["instances"])
        view = ProgressView(board.snapshot)
    try:
        for p in plan:
            try:
                rows.append(write_instance(root, p, refs, identities, tracks, opts))
                s = p.sample
                sources.append({
                    "instance_id": p.instance_id, "task": p.task, "sample_id": s["sample_id"],
                    "clip_id": s["clip_id"], "video_id": h.video_of.get(s["clip_id"]),
                    "clip_path": s["clip_path"], "run": s["run"],
                    "identity_ids": list(s["identity_ids"]),
                    "person_ids": [h.person_of[i] for i in s["identity_ids"]]})
                failed = 0
            except Exception as exc:  # one bad instance is an error row, never the run
                _remove_case(root, p)
                errors.append(error_row(p.instance_id, "build", exc))
                failed = 1
            if board is not None:
                board.add("instances", done=1, failed=failed)
    finally:
        if view is not None:
            view.close()
    t_write = time.perf_counter() - ts

    instances_of: dict[str, list[str]] = {}
    for src in sources:
        for i in src["identity_ids"]:
            instances_of.setdefault(i, []).append(src["instance_id"])
    held_df = heldout_rows(cur, h, instances_of)
    config = {**asdict(opts), "curation": cur.runs, "crosspair": cross}
    prov = {"kind": "built", "job": JOB, "curation": cur.runs, "crosspair": cross,
            "seed": opts.seed, "heldout": str(root / "heldout.parquet")}
    inst = pd.DataFrame(rows, columns=["instance_id", "task", "split", "caption",
                                       "image_refs", "audio_refs", "source_video",
                                       "driving_audio"])
    write_manifest(inst, "bench_instances", root / "bench_instances.parquet",
                   provenance=prov)
    write_manifest(held_df, "heldout", root / "heldout.parquet")
    write_manifest(pd.DataFrame(sources, columns=["instance_id", "task", "sample_id",
                                                  "clip_id", "video_id", "clip_path", "run",
                                                  "identity_ids", "person_ids"]),
                   "bench_sources", root / "bench_sources.parquet")
    errs = errors_frame(errors)
    write_manifest(errs, "errors", root / "errors.parquet")

    inst = read_manifest(root / "bench_instances.parquet", "bench_instances")
    trainable = cur.samples[~cur.samples.clip_id.isin(set(h.clips))]
    sets = {k: int(v) for k, v in inst.instance_id.str.split("_").str[0]
            .value_counts().sort_index().items()} if len(inst) else {}
    tasks = {t: int((inst.task == t).sum()) for t in TASKS if (inst.task == t).any()}
    added = len(h.held) - len(h.drawn)
    details = {
        "persons": {"total": len(h.members), "eligible": len(h.eligible),
                    "drawn": len(h.drawn), "held_out": len(h.held),
                    "joined_by_closure": added, "costars": opts.costars},
        "heldout_identities": int(held_df.held_out.sum()) if len(held_df) else 0,
        "benchmark_clips": len(h.clips), "benchmark_videos": len(h.videos),
        "samples": {"total": len(cur.samples), "benchmark": len(cur.samples) - len(trainable),
                    "trainable": len(trainable)},
        "sets": sets, "tasks": tasks, "crosspair": cross,
        "outside_identities": len(h.outside), "options": asdict(opts)}
    notes = []
    if matches is None:
        notes.append(NO_CROSSPAIR)
    notes.append(f"held out: {len(h.held)} person(s): {len(h.drawn)} drawn of the "
                 f"{len(h.eligible)} with a sample, {added} joined (seen in a benchmark "
                 "clip)" if added else
                 f"held out: {len(h.drawn)} person(s), drawn of the {len(h.eligible)} with a "
                 "sample")
    notes.append(f"benchmark: {len(h.clips)} clip(s) of {len(h.videos)} video(s) -> "
                 f"{len(inst)} instance(s): " + ", ".join(f"{k} {v}" for k, v in sets.items())
                 + "; " + ", ".join(f"{k} {v}" for k, v in tasks.items()))
    notes.append(f"training keeps {len(trainable)} of {len(cur.samples)} sample(s); pass "
                 f"--heldout {root} to `omni latents` / `omni train`")
    if not len(trainable):
        notes.append("WARNING: no sample is left for training: every clip shows a held-out "
                     "person or shares a clip with one (draw fewer persons, or --costars keep)")
    if h.outside:
        notes.append(f"{len(h.outside)} identity(ies) of the cross-pair matches are outside "
                     "the given in-pair runs: recorded in heldout.parquet")
    notes += [f"error {e.item}: {e.reason}" for e in errs.head(20).itertuples()]
    key = result_key(config, cur.runs)
    summary = JobSummary.build(
        JOB, str(root), total=len(plan), skipped=0,
        stages=[driver_stage("holdout", len(h.eligible), len(h.held), t_hold),
                driver_stage("instances", len(plan), len(rows), t_write, len(errors))],
        errors=errs, counts={"instances": len(inst), "heldout": len(held_df),
                             "bench_sources": len(sources), "errors": len(errs)},
        wall_s=time.perf_counter() - t0, result_key=key, details=details,
        provenance=provenance(config, weights=None,
                              inputs=[*cur.runs, *([cross] if cross else [])]),
        notes=notes)
    summary.write(RunFolder(str(root)))
    return BuildResult(root, inst, held_df, errs, summary)
