"""Score an in-pair curation run against the ground truth of the sample corpus.

``omni samples make CORPUS`` writes who is where (``corpus_people``: a static face box per
person), who speaks when and what (``corpus_turns``, ``source == "generated"`` for the talking
files) and what every file is (``corpus_files``). :func:`score_run` reads a run's manifests
(``omni curate inpair --input CORPUS --out RUN``) and compares, per talking file and overall:

- **DER** (``pyannote.metrics.DiarizationErrorRate``): per clip, the reference is the file's
  generated turns cut to the clip span and shifted to clip time, the hypothesis the clip's
  ``speech_segments``, both scored over the whole clip (the UEM). One metric object accumulates
  every clip (the overall value is ``abs(metric)``: total error over total reference speech, not
  a mean of clip values) and one per file. ``collar`` is pyannote's: the *total* width of the
  no-score zone centred on each reference boundary (half before, half after), default 0.
- **Speaker<->face association**: an identity that was given a speaker names a truth person by
  face (the person whose ``face_box`` has the highest mean IoU with the boxes of the identity's
  tracks; below ``association_iou`` it is ``unmatched``) and one by voice (the person whose
  generated turns overlap that speaker's segments the longest in the clip). It is correct when
  both name the same person. Also counted: the truth people who speak in some curated clip and
  received at least one correct assignment.
- **Transcript WER** (seed-tts-eval's English normalisation, jiwer; :mod:`omni_core.wer`): per
  clip, the reference is the texts of the turns lying entirely inside the clip, the hypothesis
  the texts of the segments whose midpoint falls inside one of those turns, both in time order.
  A turn crossing a clip boundary makes the clip unscorable (counted). The value is the corpus
  WER: substitutions + deletions + insertions over reference words of all scored clips.
- **Face detection**: the truth faces are the (file, person) pairs of talking files with at least
  one clip; a face is found when a face track of one of that file's clips has a mean IoU of at
  least ``face_iou`` with its box. Tracks matching no truth face lower the track precision.
- **Stages**: clips by status, errors by stage, inputs by corpus kind, and for every broken file
  the error row(s) it produced, or that it produced none (each broken file should).

Run paths (``videos.path``, an input error's ``item``) map to corpus files by their path relative
to the corpus root, after resolving both. Tables a run does not have yet (e.g. no faces stage)
read as empty and are listed in ``missing_tables``.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from omni_core.errors import OmniError
from omni_core.manifests import get_schema, read_manifest
from omni_core.models.face import box_iou
from omni_core.wer import utterance_wer

UNMATCHED = "unmatched"
REQUIRED_TABLES = ("videos", "clips")
OPTIONAL_TABLES = ("speech_segments", "face_tracks", "identities", "errors")


@dataclass(frozen=True)
class ScoreOptions:
    """How a run is compared with the truth; recorded in the score."""

    #: DER: total width in seconds of the no-score zone centred on every reference turn
    #: boundary (pyannote's convention, half on each side); 0 scores every instant.
    collar: float = 0.0
    #: DER: the whole run is also scored at this collar (0.25 s, the convention of most
    #: diarization papers and of pyannote's published benchmarks); None: not.
    also_collar: float | None = 0.25
    #: DER: leave the reference's overlapped speech out of the scored time.
    skip_overlap: bool = False
    #: Face detection: mean IoU a track needs with a truth face box for that face to be found.
    face_iou: float = 0.5
    #: Association: mean IoU an identity's boxes need with a truth face box to name that person.
    association_iou: float = 0.3
    #: Face detection: count only tracks that passed the quality filters (default: every track).
    passed_only: bool = False
    #: WER: a turn sticking out of a clip by at most this many seconds still lies inside it.
    turn_tolerance_s: float = 0.0

    def __post_init__(self) -> None:
        if self.collar < 0 or self.turn_tolerance_s < 0 or (self.also_collar or 0) < 0:
            raise OmniError("ScoreOptions: collar and turn_tolerance_s must be >= 0")
        for name in ("face_iou", "association_iou"):
            if not 0.0 < getattr(self, name) <= 1.0:
                raise OmniError(f"ScoreOptions.{name} must be in (0, 1]")


# --------------------------------------------------------------------------------------------
# results


def _ratio(num: float, den: float) -> float | None:
    return num / den if den else None


@dataclass
class DERScore:
    """Accumulated DER components in seconds; ``value`` None when no clip was scored."""

    value: float | None = None
    missed_s: float = 0.0
    false_alarm_s: float = 0.0
    confusion_s: float = 0.0
    total_s: float = 0.0
    clips: int = 0


@dataclass
class AssociationScore:
    """``correct`` of ``assigned`` identities (those with a speaker); ``people_correct`` of the
    ``people_total`` truth people speaking in a curated clip got a correct assignment."""

    correct: int = 0
    assigned: int = 0
    people_correct: int = 0
    people_total: int = 0

    @property
    def accuracy(self) -> float | None:
        return _ratio(self.correct, self.assigned)


@dataclass
class WERScore:
    """Word error counts over the scored clips (normalised words)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    reference_words: int = 0
    clips_scored: int = 0
    clips_unscorable: int = 0  # a turn crosses the clip boundary
    clips_without_speech: int = 0  # no turn inside or crossing

    @property
    def value(self) -> float | None:
        return _ratio(self.substitutions + self.deletions + self.insertions,
                      self.reference_words)


@dataclass
class FaceScore:
    """Truth faces ``found`` of ``total``; ``tracks`` counted, ``tracks_unmatched`` of them
    match no truth face of their file."""

    found: int = 0
    total: int = 0
    tracks: int = 0
    tracks_unmatched: int = 0

    @property
    def recall(self) -> float | None:
        return _ratio(self.found, self.total)

    @property
    def precision(self) -> float | None:
        return _ratio(self.tracks - self.tracks_unmatched, self.tracks)


@dataclass
class FileScore:
    """One talking file (or ``file == "all"``: the whole run)."""

    file: str
    n_people: int
    clips: int
    der: DERScore
    association: AssociationScore
    wer: WERScore
    faces: FaceScore
    #: the whole run's DER at ``ScoreOptions.also_collar`` (None for files, or when off)
    der_also: DERScore | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file, "n_people": self.n_people, "clips": self.clips,
            "der": asdict(self.der),
            **({"der_also": asdict(self.der_also)} if self.der_also is not None else {}),
            "association": {**asdict(self.association), "accuracy": self.association.accuracy},
            "wer": {**asdict(self.wer), "value": self.wer.value},
            "faces": {**asdict(self.faces), "recall": self.faces.recall,
                      "precision": self.faces.precision},
        }


@dataclass(frozen=True)
class IdentityCheck:
    """One identity with a speaker: the truth person its face and its voice point to."""

    file: str
    clip_id: str
    identity_id: str
    speaker: str
    face_person: str
    voice_person: str

    @property
    def correct(self) -> bool:
        return self.face_person == self.voice_person != UNMATCHED


@dataclass
class StageCounts:
    """Where the inputs went."""

    clips_by_status: dict[str, int] = field(default_factory=dict)
    errors_by_stage: dict[str, int] = field(default_factory=dict)
    #: corpus kind -> {files, videos, with_clips, errors}: how many files of that kind the
    #: truth lists, became a ``videos`` row, have at least one clip, have an error row.
    inputs_by_kind: dict[str, dict[str, int]] = field(default_factory=dict)
    #: broken file -> its error rows as "stage: reason"
    broken_errors: dict[str, list[str]] = field(default_factory=dict)
    #: broken files without any error row (each should have one)
    broken_not_in_errors: list[str] = field(default_factory=list)
    #: videos.path values that are no file of the corpus
    unmapped_videos: list[str] = field(default_factory=list)


@dataclass
class CurationScore:
    """A run compared with the corpus truth; see the module docstring for each number."""

    run: str
    corpus: str
    options: ScoreOptions
    overall: FileScore
    files: list[FileScore]
    stages: StageCounts
    identities: list[IdentityCheck]
    missing_tables: list[str]

    def file(self, name: str) -> FileScore:
        for f in self.files:
            if f.file == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": self.run, "corpus": self.corpus, "options": asdict(self.options),
            "overall": self.overall.to_dict(), "files": [f.to_dict() for f in self.files],
            "stages": asdict(self.stages),
            "identities": [{**asdict(i), "correct": i.correct} for i in self.identities],
            "missing_tables": list(self.missing_tables),
        }

    def lines(self) -> list[str]:
        o = self.options
        out = [f"curation score: {self.run} vs {self.corpus}",
               f"  options: collar {o.collar:g} s, skip_overlap {o.skip_overlap}, "
               f"face IoU {o.face_iou:g}, association IoU {o.association_iou:g}"]
        if self.missing_tables:
            out.append(f"  tables not in the run (read as empty): "
                       f"{', '.join(self.missing_tables)}")
        width = max([len(f.file) for f in self.files] + [4])
        out.append(f"  {'file':<{width}}  clips  DER     assoc   WER     faces")
        for f in [*self.files, self.overall]:
            a = f.association
            assoc = f"{a.correct}/{a.assigned}"
            out.append(f"  {f.file:<{width}}  {f.clips:>5}  {_fmt(f.der.value):<6}  "
                       f"{assoc:<7} {_fmt(f.wer.value):<6}  {f.faces.found}/{f.faces.total}")
        d, a, w, fc = self.overall.der, self.overall.association, self.overall.wer, \
            self.overall.faces
        out.append(f"  DER {_fmt(d.value)}: missed {d.missed_s:.2f} s, false alarm "
                   f"{d.false_alarm_s:.2f} s, confusion {d.confusion_s:.2f} s of "
                   f"{d.total_s:.2f} s reference speech in {d.clips} clips")
        if self.overall.der_also is not None:
            d = self.overall.der_also
            out.append(f"  DER {_fmt(d.value)} at collar {o.also_collar:g} s: missed "
                       f"{d.missed_s:.2f} s, false alarm {d.false_alarm_s:.2f} s, confusion "
                       f"{d.confusion_s:.2f} s of {d.total_s:.2f} s scored")
        out.append(f"  association: {a.correct}/{a.assigned} identities correct "
                   f"({_fmt(a.accuracy)}); {a.people_correct}/{a.people_total} people with a "
                   "correct assignment")
        out.append(f"  WER {_fmt(w.value)}: S {w.substitutions} D {w.deletions} "
                   f"I {w.insertions} over {w.reference_words} words in {w.clips_scored} clips; "
                   f"{w.clips_unscorable} unscorable (a turn crosses the clip boundary)")
        out.append(f"  faces: recall {fc.found}/{fc.total} ({_fmt(fc.recall)}), "
                   f"{fc.tracks_unmatched} of {fc.tracks} tracks match no truth face "
                   f"(precision {_fmt(fc.precision)})")
        s = self.stages
        out.append("  clips by status: " + (_counts(s.clips_by_status) or "none"))
        out.append("  errors by stage: " + (_counts(s.errors_by_stage) or "none"))
        out.append("  inputs: " + "; ".join(
            f"{k} {v['files']} ({v['videos']} videos, {v['with_clips']} with clips, "
            f"{v['errors']} with errors)" for k, v in s.inputs_by_kind.items()))
        out.append("  broken files not in errors: "
                   + (", ".join(s.broken_not_in_errors) or "none"))
        if s.unmapped_videos:
            out.append(f"  videos outside the corpus: {len(s.unmapped_videos)}")
        return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _counts(d: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(d.items()))


# --------------------------------------------------------------------------------------------
# small pure helpers


def mean_iou(boxes: Iterable[Sequence[float]], box: Sequence[float]) -> float:
    """Mean IoU of ``boxes`` (rows with NaN skipped) with one box; 0 for no boxes."""
    values = [box_iou(b, box) for b in boxes if not np.isnan(np.asarray(b, float)).any()]
    return float(np.mean(values)) if values else 0.0


def best_person(boxes: Sequence[Sequence[float]], people: dict[str, Sequence[float]],
                threshold: float) -> str:
    """The person whose face box has the highest mean IoU with ``boxes`` (ties: first in
    sorted order), or :data:`UNMATCHED` when that IoU is below ``threshold``."""
    best, best_iou = UNMATCHED, -1.0
    for person in sorted(people):
        v = mean_iou(boxes, people[person])
        if v > best_iou:
            best, best_iou = person, v
    return best if best_iou >= threshold else UNMATCHED


def overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


@dataclass(frozen=True)
class Turn:
    speaker: str
    start_s: float
    end_s: float
    text: str | None = None


def clip_turns(turns: Sequence[Turn], start_s: float, end_s: float) -> list[Turn]:
    """``turns`` (source time) cut to ``[start_s, end_s]`` and shifted to clip time."""
    out = []
    for t in turns:
        a, b = max(t.start_s, start_s), min(t.end_s, end_s)
        if b > a:
            out.append(Turn(t.speaker, a - start_s, b - start_s, t.text))
    return out


def voice_person(segments: Sequence[tuple[float, float]], turns: Sequence[Turn]) -> str:
    """The truth speaker whose turns overlap ``segments`` the longest (clip time), or
    :data:`UNMATCHED` when none overlaps at all."""
    totals: dict[str, float] = {}
    for s0, s1 in segments:
        for t in turns:
            totals[t.speaker] = totals.get(t.speaker, 0.0) + overlap(s0, s1, t.start_s, t.end_s)
    if not totals or max(totals.values()) <= 0:
        return UNMATCHED
    return max(sorted(totals), key=lambda k: totals[k])


def wer_texts(turns: Sequence[Turn], start_s: float, end_s: float,
              segments: Sequence[Turn], tolerance_s: float = 0.0
              ) -> tuple[str, str] | str | None:
    """Reference and hypothesis text of one clip for WER.

    ``turns`` in source time, ``segments`` in clip time. Returns ``"unscorable"`` when a turn
    crosses the clip boundary, ``None`` when no turn lies inside the clip.
    """
    inside: list[Turn] = []
    for t in sorted(turns, key=lambda t: t.start_s):
        if overlap(t.start_s, t.end_s, start_s, end_s) <= 0:
            continue
        if t.start_s < start_s - tolerance_s or t.end_s > end_s + tolerance_s:
            return "unscorable"
        inside.append(Turn(t.speaker, t.start_s - start_s, t.end_s - start_s, t.text))
    if not inside:
        return None
    hyp = [s for s in sorted(segments, key=lambda s: (s.start_s, s.end_s))
           if any(t.start_s <= (s.start_s + s.end_s) / 2 <= t.end_s for t in inside)]
    return (" ".join(t.text or "" for t in inside).strip(),
            " ".join(s.text or "" for s in hyp).strip())


def corpus_file(path: str | os.PathLike[str], root: Path) -> str | None:
    """``path`` relative to the corpus ``root`` (POSIX), both resolved; None if outside."""
    try:
        return Path(path).resolve().relative_to(root).as_posix()
    except (ValueError, OSError):
        return None


# --------------------------------------------------------------------------------------------
# DER


def _annotation(spans: Iterable[tuple[float, float, str]]) -> Any:
    from pyannote.core import Annotation, Segment

    ann = Annotation()
    for i, (a, b, label) in enumerate(spans):
        if b > a:
            ann[Segment(a, b), i] = label
    return ann


def _der_metric(options: ScoreOptions, collar: float | None = None) -> Any:
    from pyannote.metrics.diarization import DiarizationErrorRate

    return DiarizationErrorRate(collar=options.collar if collar is None else collar,
                                skip_overlap=options.skip_overlap)


def _der_score(metric: Any, clips: int) -> DERScore:
    if not clips:
        return DERScore()
    acc = metric.accumulated_
    return DERScore(value=float(abs(metric)), missed_s=float(acc["missed detection"]),
                    false_alarm_s=float(acc["false alarm"]),
                    confusion_s=float(acc["confusion"]), total_s=float(acc["total"]),
                    clips=clips)


# --------------------------------------------------------------------------------------------
# reading


def _read(path: Path, name: str) -> pd.DataFrame | None:
    p = path / f"{name}.parquet"
    return read_manifest(p, name) if p.exists() else None  # a ManifestError is an OmniError


def read_run(out: str | os.PathLike[str]) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The run's tables (absent optional ones as empty frames) and the names of those absent."""
    root = Path(out)
    if not root.is_dir():
        raise OmniError(f"run folder not found: {out}")
    tables: dict[str, pd.DataFrame] = {}
    missing: list[str] = []
    for name in (*REQUIRED_TABLES, *OPTIONAL_TABLES):
        df = _read(root, name)
        if df is None:
            if name in REQUIRED_TABLES:
                raise OmniError(f"not a curation run: {root / (name + '.parquet')} is missing")
            missing.append(name)
            df = get_schema(name).empty()
        tables[name] = df
    return tables, missing


def read_truth(corpus: str | os.PathLike[str]) -> dict[str, pd.DataFrame]:
    """The corpus truth tables: ``files``, ``people`` and ``turns``."""
    root = Path(corpus) / "truth"
    out = {}
    for table, schema in (("files", "corpus_files"), ("people", "corpus_people"),
                          ("turns", "corpus_turns")):
        path = root / f"{table}.parquet"
        if not path.exists():
            raise OmniError(f"no ground truth at {path}: not a sample corpus (omni samples make)")
        out[table] = read_manifest(path, schema)
    return out


# --------------------------------------------------------------------------------------------
# scoring


@dataclass
class _FileAcc:
    """Running totals of one file (or of the whole run)."""

    der_metric: Any
    der_clips: int = 0
    clips: int = 0
    association: AssociationScore = field(default_factory=AssociationScore)
    wer: WERScore = field(default_factory=WERScore)
    faces: FaceScore = field(default_factory=FaceScore)

    def add_wer(self, texts: tuple[str, str] | str | None) -> None:
        if texts is None:
            self.wer.clips_without_speech += 1
        elif isinstance(texts, str):
            self.wer.clips_unscorable += 1
        else:
            d = utterance_wer(*texts)
            self.wer.substitutions += d.substitutions
            self.wer.deletions += d.deletions
            self.wer.insertions += d.insertions
            self.wer.reference_words += d.n_reference_words
            self.wer.clips_scored += 1

    def result(self, file: str, n_people: int) -> FileScore:
        return FileScore(file, n_people, self.clips, _der_score(self.der_metric, self.der_clips),
                         self.association, self.wer, self.faces)


def score_run(out: str | os.PathLike[str], corpus: str | os.PathLike[str],
              options: ScoreOptions | None = None) -> CurationScore:
    """Compare the manifests in ``out`` with the truth of the sample corpus ``corpus``."""
    from pyannote.core import Segment, Timeline

    o = options or ScoreOptions()
    root = Path(corpus).resolve()
    truth = read_truth(root)
    run, missing = read_run(out)
    files, people_df = truth["files"], truth["people"]
    gen = truth["turns"][truth["turns"]["source"] == "generated"]
    talking = sorted(files.loc[files["kind"] == "talking", "file"])
    people: dict[str, dict[str, list[float]]] = {f: {} for f in talking}
    for r in people_df.itertuples():
        if r.file in people:
            people[r.file][r.person] = [float(v) for v in r.face_box]
    turns: dict[str, list[Turn]] = {f: [] for f in talking}
    for r in gen.sort_values("start_s").itertuples():
        if r.file in turns:
            turns[r.file].append(Turn(r.speaker, float(r.start_s), float(r.end_s),
                                      None if pd.isna(r.text) else str(r.text)))

    videos = run["videos"]
    video_file = {v.video_id: corpus_file(v.path, root) for v in videos.itertuples()}
    clips = run["clips"].sort_values(["video_id", "start_s", "clip_id"])
    segs = run["speech_segments"]
    segs_by_clip = {k: g.sort_values("start_s") for k, g in segs.groupby("clip_id")}
    tracks = run["face_tracks"]
    tracks_by_clip = {k: g for k, g in tracks.groupby("clip_id")}
    track_boxes = {t.track_id: [list(map(float, b)) for b in t.boxes] for t in tracks.itertuples()}
    idents_by_clip = {k: g for k, g in run["identities"].groupby("clip_id")}

    overall = _FileAcc(_der_metric(o))
    der_also = None if o.also_collar is None else _der_metric(o, o.also_collar)
    acc = {f: _FileAcc(_der_metric(o)) for f in talking}
    checks: list[IdentityCheck] = []
    spoke: dict[str, set[str]] = {f: set() for f in talking}  # people speaking in a clip
    correct_people: dict[str, set[str]] = {f: set() for f in talking}
    found: dict[str, set[str]] = {f: set() for f in talking}

    for c in clips.itertuples():
        f = video_file.get(c.video_id)
        if f not in acc:
            continue
        a, start, end = acc[f], float(c.start_s), float(c.end_s)
        a.clips += 1
        overall.clips += 1
        cturns = clip_turns(turns[f], start, end)
        spoke[f].update(t.speaker for t in cturns)
        cseg = segs_by_clip.get(c.clip_id, segs.iloc[:0])
        seg_turns = [Turn(s.speaker, float(s.start_s), float(s.end_s),
                          None if pd.isna(s.text) else str(s.text)) for s in cseg.itertuples()]

        # DER over the whole clip
        uem = Timeline([Segment(0.0, end - start)])
        ref = _annotation((t.start_s, t.end_s, t.speaker) for t in cturns)
        hyp = _annotation((s.start_s, min(s.end_s, end - start), s.speaker) for s in seg_turns)
        for m, holder in ((a.der_metric, a), (overall.der_metric, overall)):
            m(ref, hyp, uem=uem)
            holder.der_clips += 1
        if der_also is not None:
            der_also(ref, hyp, uem=uem)

        # WER
        texts = wer_texts(turns[f], start, end, seg_turns, o.turn_tolerance_s)
        a.add_wer(texts)
        overall.add_wer(texts)

        # association
        idents = idents_by_clip.get(c.clip_id)
        if idents is not None:
            for i in idents.itertuples():
                if i.speaker is None or pd.isna(i.speaker):
                    continue
                boxes = [b for t in i.track_ids for b in track_boxes.get(t, [])]
                spans = [(s.start_s, s.end_s) for s in seg_turns if s.speaker == i.speaker]
                chk = IdentityCheck(f, c.clip_id, i.identity_id, str(i.speaker),
                                    best_person(boxes, people[f], o.association_iou),
                                    voice_person(spans, cturns))
                checks.append(chk)
                for holder in (a, overall):
                    holder.association.assigned += 1
                    holder.association.correct += int(chk.correct)
                if chk.correct:
                    correct_people[f].add(chk.face_person)

        # face detection
        ctracks = tracks_by_clip.get(c.clip_id)
        if ctracks is not None:
            for t in ctracks.itertuples():
                if o.passed_only and not t.passed:
                    continue
                hits = [p for p, box in people[f].items()
                        if mean_iou(track_boxes[t.track_id], box) >= o.face_iou]
                found[f].update(hits)
                for holder in (a, overall):
                    holder.faces.tracks += 1
                    holder.faces.tracks_unmatched += int(not hits)

    n_people = {f: len(people[f]) for f in talking}
    results = []
    for f in talking:
        a = acc[f]
        a.association.people_total = len(spoke[f])
        a.association.people_correct = len(correct_people[f] & spoke[f])
        a.faces.total = n_people[f] if a.clips else 0
        a.faces.found = len(found[f])
        for name in ("people_total", "people_correct"):
            setattr(overall.association, name,
                    getattr(overall.association, name) + getattr(a.association, name))
        overall.faces.total += a.faces.total
        overall.faces.found += a.faces.found
        results.append(a.result(f, n_people[f]))

    return CurationScore(
        run=str(Path(out)), corpus=str(root), options=o,
        overall=replace(overall.result("all", sum(n_people.values())),
                        der_also=None if der_also is None
                        else _der_score(der_also, overall.der_clips)),
        files=results,
        stages=_stages(files, run, video_file, root), identities=checks,
        missing_tables=missing)


def _stages(files: pd.DataFrame, run: dict[str, pd.DataFrame], video_file: dict[str, str | None],
            root: Path) -> StageCounts:
    clips, errors = run["clips"], run["errors"]
    error_file = [corpus_file(item, root) if _looks_like_path(item) else None
                  for item in errors["item"]]
    in_videos = {f for f in video_file.values() if f is not None}
    with_clips = {video_file.get(v) for v in clips["video_id"]} - {None}
    with_errors = {f for f in error_file if f is not None}
    kinds: dict[str, dict[str, int]] = {}
    for kind in ("talking", "recording", "broken"):
        names = set(files.loc[files["kind"] == kind, "file"])
        kinds[kind] = {"files": len(names), "videos": len(names & in_videos),
                            "with_clips": len(names & with_clips),
                            "errors": len(names & with_errors)}
    broken = sorted(files.loc[files["kind"] == "broken", "file"])
    broken_errors: dict[str, list[str]] = {}
    for f, e in zip(error_file, errors.itertuples(), strict=True):
        if f in broken:
            broken_errors.setdefault(f, []).append(f"{e.stage}: {e.reason}")
    return StageCounts(
        clips_by_status={str(k): int(v) for k, v in clips["status"].value_counts().items()},
        errors_by_stage={str(k): int(v) for k, v in errors["stage"].value_counts().items()},
        inputs_by_kind=kinds,
        broken_errors={k: broken_errors[k] for k in sorted(broken_errors)},
        broken_not_in_errors=[f for f in broken if f not in broken_errors],
        unmapped_videos=sorted(p for p, v in zip(run["videos"]["path"], run["videos"]["video_id"],
                                                 strict=True) if video_file.get(v) is None))


def _looks_like_path(item: str) -> bool:
    return os.sep in item or "/" in item or os.path.exists(item)


def score_json(score: CurationScore) -> dict[str, Any]:
    """``score.to_dict()`` with NaN/inf replaced by None (strict JSON)."""
    def clean(x: Any) -> Any:
        if isinstance(x, float) and not math.isfinite(x):
            return None
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list):
            return [clean(v) for v in x]
        return x

    return clean(score.to_dict())
