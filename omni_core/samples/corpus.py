"""The deterministic offline sample corpus: talking clips, a real recording, broken inputs.

:func:`plan_corpus` decides everything a seed determines (who appears where, which voice says
which sentence when) and synthesises the speech; :func:`make_corpus` renders and writes the
files, the three ground-truth tables and a README, and stamps the directory with
``corpus.json`` so that a rerun with the same seed and generator version does nothing.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import OmniError
from ..manifests import write_manifest
from ..media.write import write_mp4
from . import broken as broken_mod
from . import recording as recording_mod
from .faces import FACES, FaceSource, face_crop
from .render import envelope, layout, render
from .speech import FEMALE_VOICES, MALE_VOICES, SAMPLE_RATE, SENTENCES, Voice, synthesize

GENERATOR_VERSION = 2
STAMP = "corpus.json"

WIDTH, HEIGHT, FPS = 640, 360, 25
CLIP_PEOPLE = (1, 1, 2, 2, 3, 3)
FACE_PX = {1: 160, 2: 160, 3: 136}  # face box side in video pixels
FACE_MARGIN = 0.25
OVERLAP_CLIP = 5  # this clip's second turn starts before the first one ends
OVERLAP_S = 0.35
MIN_S, MAX_S, TAIL_S = 4.0, 9.6, 0.5
BACKGROUNDS = (
    ((214, 222, 232), (120, 138, 160)),
    ((236, 226, 206), (160, 136, 104)),
    ((210, 230, 214), (104, 140, 118)),
    ((228, 214, 230), (140, 112, 150)),
    ((200, 210, 220), (60, 72, 92)),
    ((240, 236, 224), (180, 170, 150)),
)
SUBDIRS = ("talking", "recording", "broken", "truth")

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Utterance:
    person: int
    text: str
    start: int  # sample index in the clip's audio
    audio: np.ndarray = field(repr=False)

    @property
    def end(self) -> int:
        return self.start + len(self.audio)


@dataclass(frozen=True)
class ClipPlan:
    name: str  # relative path, e.g. talking/talk02_2p.mp4
    faces: tuple[FaceSource, ...]
    voices: tuple[Voice, ...]
    utterances: tuple[Utterance, ...]
    n_frames: int
    background: tuple[tuple[int, int, int], tuple[int, int, int]]
    phase: float

    @property
    def n_samples(self) -> int:
        return self.n_frames * SAMPLE_RATE // FPS

    @property
    def duration_s(self) -> float:
        return self.n_frames / FPS

    def tracks(self) -> np.ndarray:
        """Per-person speech (n_people, n_samples); the clip's audio is their sum."""
        out = np.zeros((len(self.faces), self.n_samples), dtype=np.float32)
        for u in self.utterances:
            out[u.person, u.start:u.end] += u.audio
        return out


@dataclass(frozen=True)
class CorpusSummary:
    """What :func:`make_corpus` built (or found already built)."""

    out: Path
    seed: int
    n_talking: int
    n_recording: int
    n_broken: int
    n_people: int  # rows of corpus_people
    n_turns: int  # rows of corpus_turns
    files_table: Path
    people_table: Path
    turns_table: Path
    reused: bool = False  # True when an identical corpus was already there
    seconds: float = 0.0

    def describe(self) -> str:
        """A few human-readable lines for the CLI."""
        how = "already built, nothing changed" if self.reused else f"built in {self.seconds:.1f} s"
        return "\n".join([
            f"sample corpus (seed {self.seed}) in {self.out}: {how}",
            f"  {self.n_talking} talking clips, {self.n_recording} recording, "
            f"{self.n_broken} broken inputs; {self.n_people} people, {self.n_turns} turns",
            f"  truth: {self.files_table}, {self.people_table}, {self.turns_table}",
            f"  see {self.out / 'README.md'}",
        ])


def _voice_map(rng: np.random.Generator) -> dict[str, Voice]:
    female = [FEMALE_VOICES[i] for i in rng.permutation(len(FEMALE_VOICES))]
    male = [MALE_VOICES[i] for i in rng.permutation(len(MALE_VOICES))]
    out = {}
    for face in FACES:
        pool = female if face.gender == "f" else male
        if not pool:
            raise RuntimeError("more faces of one gender than voices")
        out[face.key] = pool.pop(0)
    return out


def _plan_clip(index: int, n_people: int, rng: np.random.Generator,
               voices: dict[str, Voice]) -> ClipPlan:
    faces = tuple(FACES[i] for i in rng.choice(len(FACES), n_people, replace=False))
    clip_voices = tuple(voices[f.key] for f in faces)
    order = [int(i) for i in rng.permutation(n_people)]
    sentences = [SENTENCES[i] for i in rng.permutation(len(SENTENCES))]
    target_s = float(rng.uniform(6.0, MAX_S))
    max_end = int((MAX_S - TAIL_S) * SAMPLE_RATE)
    start = int(rng.uniform(0.3, 0.7) * SAMPLE_RATE)
    utterances: list[Utterance] = []
    used: set[str] = set()
    while True:
        k = len(utterances)
        if k < len(order):
            person = order[k]
        elif n_people == 1:
            person = 0
        else:
            prev = utterances[-1].person
            person = int(rng.choice([p for p in range(n_people) if p != prev]))
        if k == 1 and index == OVERLAP_CLIP:
            start = utterances[-1].end - int(OVERLAP_S * SAMPLE_RATE)
        chosen = None
        for text in sentences:
            if text in used:
                continue
            audio = synthesize(text, clip_voices[person])
            if start + len(audio) <= max_end:
                chosen = (text, audio)
                break
        if chosen is None:
            if k < n_people:
                raise OmniError(f"sample corpus: clip {index} cannot fit one sentence per "
                                f"person into {MAX_S} s")
            break
        used.add(chosen[0])
        utterances.append(Utterance(person, chosen[0], start, chosen[1]))
        end_s = utterances[-1].end / SAMPLE_RATE
        if k + 1 >= n_people and end_s + TAIL_S >= max(target_s, MIN_S):
            break
        start = utterances[-1].end + int(rng.uniform(0.25, 0.6) * SAMPLE_RATE)
    last = max(u.end for u in utterances)
    n_frames = math.ceil((last / SAMPLE_RATE + TAIL_S) * FPS)
    bg = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    return ClipPlan(f"talking/talk{index:02d}_{n_people}p.mp4", faces, clip_voices,
                    tuple(utterances), n_frames, bg, float(rng.uniform()))


def plan_corpus(seed: int = 0) -> list[ClipPlan]:
    """Everything ``seed`` decides about the talking clips (speech synthesised, not rendered)."""
    rng = np.random.default_rng([GENERATOR_VERSION, seed])
    voices = _voice_map(rng)
    return [_plan_clip(i, n, rng, voices) for i, n in enumerate(CLIP_PEOPLE)]


def _r(x: float) -> float:
    return round(float(x), 4)


def talking_rows(plan: ClipPlan) -> tuple[dict, list[dict], list[dict], list]:
    """corpus_files row, corpus_people rows, corpus_turns rows and the placements."""
    crops = [face_crop(f, FACE_PX[len(plan.faces)], FACE_MARGIN) for f in plan.faces]
    placements = layout(crops, WIDTH, HEIGHT)
    n = len(plan.faces)
    who = ", ".join(f"p{i}={f.key}" for i, f in enumerate(plan.faces))
    file_row = dict(file=plan.name, kind="talking", n_people=n, duration_s=plan.duration_s,
                    fps=float(FPS), width=WIDTH, height=HEIGHT, expected_error=None,
                    description=f"{n} real face photo(s) ({who}) with espeak-ng speech and "
                                "mouths animated from each person's own speech energy")
    people = [dict(file=plan.name, person=f"p{i}", face_source=f.source, voice=v.label,
                   face_box=[_r(x) for x in p.face_box], mouth_box=[_r(x) for x in p.mouth_box])
              for i, (f, v, p) in enumerate(zip(plan.faces, plan.voices, placements,
                                                 strict=True))]
    turns = [dict(file=plan.name, source="generated", speaker=f"p{u.person}",
                  start_s=_r(u.start / SAMPLE_RATE), end_s=_r(u.end / SAMPLE_RATE), text=u.text)
             for u in plan.utterances]
    return file_row, people, turns, placements


# ----------------------------------------------------------------------------- stamp


def _read_stamp(out: Path) -> dict | None:
    try:
        return json.loads((out / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _stamp_matches(out: Path, stamp: dict | None, seed: int) -> bool:
    if not stamp or stamp.get("status") != "complete":
        return False
    if stamp.get("version") != GENERATOR_VERSION or stamp.get("seed") != seed:
        return False
    for rel, size in stamp.get("files", {}).items():
        p = out / rel
        if not p.is_file() or p.stat().st_size != size:
            return False
    return bool(stamp.get("files"))


def _write_stamp(out: Path, data: dict) -> None:
    tmp = out / f".{STAMP}.tmp"
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, out / STAMP)


def _summary(out: Path, seed: int, counts: dict, reused: bool, seconds: float) -> CorpusSummary:
    return CorpusSummary(out=out, seed=seed, files_table=out / "truth" / "files.parquet",
                         people_table=out / "truth" / "people.parquet",
                         turns_table=out / "truth" / "turns.parquet", reused=reused,
                         seconds=seconds, **counts)


# ----------------------------------------------------------------------------- build


def make_corpus(out: str | os.PathLike, seed: int = 0,
                progress: Progress | None = None) -> CorpusSummary:
    """Build the sample corpus for ``seed`` under ``out`` (see the package docstring).

    Deterministic for a seed; offline. If ``out`` already holds a complete corpus with the
    same seed and generator version, nothing is written and the summary says ``reused``. A
    corpus with another seed/version, or a half-built one, is replaced. A non-empty directory
    without a ``corpus.json`` stamp is refused rather than overwritten.
    """
    t0 = time.perf_counter()
    out = Path(out)
    stamp = _read_stamp(out)
    if _stamp_matches(out, stamp, seed):
        return _summary(out, seed, stamp["counts"], True, time.perf_counter() - t0)
    if out.exists() and stamp is None and any(out.iterdir()):
        raise OmniError(f"{out} is not empty and has no {STAMP}: refusing to build the sample "
                        "corpus over files it did not write; pick an empty or new directory")
    out.mkdir(parents=True, exist_ok=True)
    for sub in SUBDIRS:
        shutil.rmtree(out / sub, ignore_errors=True)
    (out / "README.md").unlink(missing_ok=True)
    _write_stamp(out, {"status": "building", "seed": seed, "version": GENERATOR_VERSION})

    plans = plan_corpus(seed)
    total = len(plans) + 4
    step = 0

    def tick(msg: str) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(step, total, msg)

    files: list[dict] = []
    people: list[dict] = []
    turns: list[dict] = []
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for i, plan in enumerate(plans):
        file_row, p_rows, t_rows, placements = talking_rows(plan)
        tracks = plan.tracks()
        openings = [envelope(tr, SAMPLE_RATE, FPS, plan.n_frames) for tr in tracks]
        frames = render(placements, openings, WIDTH, HEIGHT, plan.background, FPS, plan.phase)
        mix = tracks.sum(axis=0)
        write_mp4(out / plan.name, frames, FPS, mix, SAMPLE_RATE)
        files.append(file_row)
        people += p_rows
        turns += t_rows
        if i in (0, 2):  # material for the broken files (clip 2: only its audio)
            kept[plan.name] = (frames if i == 0 else frames[:0], mix)
        tick(f"talking clip {plan.name} ({len(plan.faces)} people, {plan.duration_s:.1f} s)")

    rec_file, rec_turns, rec_desc = recording_mod.copy_recording(out / "recording")
    files.append(rec_file)
    turns += rec_turns
    tick("pyannote.audio sample recording")

    frames0, mix0 = kept[plans[0].name]
    _, mix2 = kept[plans[2].name]
    broken_rows = broken_mod.make_broken(out / "broken", source_clip=out / plans[-1].name,
                                         frames=frames0, fps=FPS, audio=mix2,
                                         sample_rate=SAMPLE_RATE)
    for b in broken_rows:
        files.append(dict(file=f"broken/{b.name}", kind="broken", n_people=None,
                          duration_s=b.duration_s, fps=b.fps, width=b.width, height=b.height,
                          expected_error=b.expected_error, description=b.description))
    tick("broken inputs")

    summary_counts = dict(
        n_talking=len(plans), n_recording=1, n_broken=len(broken_rows), n_people=len(people),
        n_turns=len(turns))
    write_manifest(pd.DataFrame(files), "corpus_files", out / "truth" / "files.parquet")
    write_manifest(pd.DataFrame(people), "corpus_people", out / "truth" / "people.parquet")
    write_manifest(pd.DataFrame(turns), "corpus_turns", out / "truth" / "turns.parquet")
    tick("truth tables")

    from .readme import readme_text

    (out / "README.md").write_text(readme_text(seed, plans, broken_rows, rec_desc,
                                                  version=GENERATOR_VERSION,
                                                  size=(WIDTH, HEIGHT), fps=FPS,
                                                  face_px=FACE_PX))
    tick("README.md")

    listed = sorted(p for sub in SUBDIRS for p in (out / sub).rglob("*") if p.is_file())
    listed.append(out / "README.md")
    _write_stamp(out, {
        "status": "complete", "seed": seed, "version": GENERATOR_VERSION,
        "generator": "omni_core.samples.make_corpus", "counts": summary_counts,
        "files": {p.relative_to(out).as_posix(): p.stat().st_size for p in listed},
    })
    return _summary(out, seed, summary_counts, False, time.perf_counter() - t0)


def summary_dict(s: CorpusSummary) -> dict:
    """JSON-friendly view of a summary (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(s).items()}
