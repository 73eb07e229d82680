"""Typed, versioned manifest tables stored as Parquet.

Every table the suite writes (curation outputs, evaluation results, errors, the sample corpus's
ground truth) has a :class:`Schema` registered here: its columns with Arrow types and
nullability, its key, and a version. :func:`write_manifest` validates before it writes and
stamps the schema name and version into the Parquet metadata; :func:`read_manifest` refuses a
file whose schema name or version differs from what this code expects, instead of letting a
stale column layout flow silently into a training run.

A manifest is either one ``.parquet`` file or a directory of ``*.parquet`` shards (what Ray
Data writes); both read the same way.

``Schema.dummy(n)`` builds valid rows for tests and for users trying things in a notebook.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ManifestError
from .urls import redact

SCHEMA_KEY = b"omni.schema"
VERSION_KEY = b"omni.schema_version"
PROVENANCE_KEY = b"omni.provenance"


@dataclass(frozen=True)
class Column:
    """One column: Arrow type, nullability, allowed values (if an enum) and its meaning."""

    name: str
    type: pa.DataType
    nullable: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""


@dataclass(frozen=True)
class Schema:
    """A versioned table layout.

    ``key`` names the columns whose values identify a row; they must be unique in a table.
    ``check`` adds row-level rules that Arrow types cannot say (e.g. ``start_s <= end_s``);
    it returns one message per violated rule.
    """

    name: str
    version: int
    columns: tuple[Column, ...]
    key: tuple[str, ...]
    doc: str = ""
    check: Callable[[pd.DataFrame], list[str]] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"schema {self.name}: duplicate column names")
        missing = [k for k in self.key if k not in names]
        if missing:
            raise ValueError(f"schema {self.name}: key columns {missing} are not columns")

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def arrow_schema(self) -> pa.Schema:
        return pa.schema(
            [pa.field(c.name, c.type, nullable=c.nullable) for c in self.columns],
            metadata={SCHEMA_KEY: self.name.encode(), VERSION_KEY: str(self.version).encode()},
        )

    def to_table(self, data: pd.DataFrame | Sequence[Mapping[str, Any]]) -> pa.Table:
        """Validate ``data`` against the schema and return it as an Arrow table."""
        df = data if isinstance(data, pd.DataFrame) else pd.DataFrame(list(data))
        where = f"manifest {self.name} v{self.version}"
        extra = [c for c in df.columns if c not in self.column_names]
        if extra:
            raise ManifestError(f"{where}: unknown column(s) {extra}")
        absent = [c for c in self.column_names if c not in df.columns]
        if absent:
            raise ManifestError(f"{where}: missing column(s) {absent}")
        df = df[self.column_names]
        strict = self.arrow_schema()
        loose = pa.schema([f.with_nullable(True) for f in strict], metadata=strict.metadata)
        try:
            table = pa.Table.from_pandas(df, schema=loose, preserve_index=False, safe=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ManifestError(f"{where}: {exc}") from exc
        self._validate(table, df, where)
        return table.cast(strict)

    def validate_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        """Validate a DataFrame and return it with canonical column order and dtypes."""
        return self.to_table(df).to_pandas()

    def _validate(self, table: pa.Table, df: pd.DataFrame, where: str) -> None:
        for col in self.columns:
            arr = table.column(col.name)
            if not col.nullable and arr.null_count:
                raise ManifestError(f"{where}: column {col.name!r} has {arr.null_count} null(s)")
            if col.choices is not None:
                values = {v for v in arr.to_pylist() if v is not None}
                bad = sorted(values - set(col.choices))
                if bad:
                    raise ManifestError(
                        f"{where}: column {col.name!r} has value(s) {bad[:5]} outside "
                        f"{list(col.choices)}")
        if self.key and table.num_rows:
            keys = table.select(list(self.key)).to_pandas()
            dup = keys.duplicated()
            if dup.any():
                first = keys[dup].iloc[0].to_dict()
                raise ManifestError(f"{where}: duplicate key {first} ({int(dup.sum())} row(s))")
        if self.check is not None and len(df):
            problems = self.check(df)
            if problems:
                raise ManifestError(f"{where}: {'; '.join(problems)}")

    def empty(self) -> pd.DataFrame:
        return self.arrow_schema().empty_table().to_pandas()

    def dummy(self, n: int = 1, **overrides: Any) -> pd.DataFrame:
        """``n`` valid rows with placeholder values; ``overrides`` set whole columns."""
        rows = []
        for i in range(n):
            row = {c.name: _dummy_value(c, i) for c in self.columns}
            row.update({k: (v[i] if isinstance(v, list) and len(v) == n else v)
                        for k, v in overrides.items()})
            rows.append(row)
        return self.validate_frame(pd.DataFrame(rows, columns=self.column_names))


def _dummy_value(col: Column, i: int) -> Any:
    t = col.type
    if col.choices:
        return col.choices[i % len(col.choices)]
    if pa.types.is_string(t):
        return f"{col.name}-{i:04d}"
    if pa.types.is_boolean(t):
        return bool(i % 2)
    if pa.types.is_integer(t):
        return i
    if pa.types.is_floating(t):
        return float(i)
    if pa.types.is_timestamp(t):
        return pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(seconds=i)
    if pa.types.is_list(t) or pa.types.is_fixed_size_list(t):
        inner = Column("x", t.value_type)
        size = t.list_size if pa.types.is_fixed_size_list(t) else 2
        return [_dummy_value(inner, i + j) for j in range(size)]
    raise TypeError(f"no dummy value for {t}")


SCHEMAS: dict[str, Schema] = {}


def register(schema: Schema) -> Schema:
    """Add a schema to the registry (a name can be registered once)."""
    if schema.name in SCHEMAS and SCHEMAS[schema.name] != schema:
        raise ValueError(f"schema {schema.name!r} already registered with another layout")
    SCHEMAS[schema.name] = schema
    return schema


def get_schema(name: str | Schema) -> Schema:
    if isinstance(name, Schema):
        return name
    try:
        return SCHEMAS[name]
    except KeyError:
        raise ManifestError(f"unknown manifest schema {name!r}; known: {sorted(SCHEMAS)}") from None


def write_manifest(data: pd.DataFrame | Sequence[Mapping[str, Any]], schema: str | Schema,
                   path: str | os.PathLike, *,
                   provenance: Mapping[str, Any] | None = None) -> Path:
    """Validate and write one Parquet file atomically (tmp file + rename). ``provenance``
    (JSON-serialisable: where the rows come from, e.g. a benchmark's revision) is stored in
    the file's metadata; :func:`manifest_provenance` reads it back."""
    sch = get_schema(schema)
    table = sch.to_table(data)
    if provenance is not None:
        import json

        meta = dict(table.schema.metadata or {})
        meta[PROVENANCE_KEY] = json.dumps(dict(provenance), sort_keys=True,
                                          default=str).encode()
        table = table.replace_schema_metadata(meta)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def manifest_provenance(path: str | os.PathLike) -> dict[str, Any]:
    """The ``provenance`` a manifest file was written with (:func:`write_manifest`); ``{}``
    when it has none."""
    import json

    meta: dict[bytes, bytes] = {}
    for f in manifest_files(path)[:1]:
        meta = pq.read_schema(f).metadata or {}
    raw = meta.get(PROVENANCE_KEY)
    return json.loads(raw) if raw else {}


def manifest_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files of a manifest: the file itself, or a directory's shards, sorted."""
    path = Path(path)
    if path.is_dir():
        return sorted(p for p in path.rglob("*.parquet") if not p.name.startswith("."))
    if path.is_file():
        return [path]
    raise ManifestError(f"manifest not found: {path}")


def read_manifest(path: str | os.PathLike, schema: str | Schema | None = None, *,
                  columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Read a manifest file or shard directory, check its schema stamp and validate it.

    ``schema`` defaults to the one stamped in the file. A different name or version is an
    error that says which was found and which was expected. A remote file (``s3://...``) is
    read from a local copy (:func:`omni_core.storage.local_input`). ``columns`` reads only
    those (the stamp is checked; row rules that need other columns are not): a report
    counting a million rows need not load their embeddings.
    """
    from .storage import is_remote, local_input

    if is_remote(path):
        path = local_input(path)
    files = manifest_files(path)
    expected = get_schema(schema) if schema is not None else None
    tables = []
    for f in files:
        try:
            meta = pq.read_schema(f).metadata or {}
        except (pa.ArrowInvalid, OSError) as exc:
            raise ManifestError(f"{f}: not a readable Parquet file ({exc})") from exc
        name = meta.get(SCHEMA_KEY, b"").decode() or None
        version = meta.get(VERSION_KEY, b"").decode() or None
        if name is None:
            raise ManifestError(f"{f}: no omni schema stamp; not written by write_manifest")
        sch = expected or get_schema(name)
        if name != sch.name or version != str(sch.version):
            raise ManifestError(
                f"{f}: schema {name} v{version} found, {sch.name} v{sch.version} expected; "
                "rebuild it with this version of the suite or read it with the matching one")
        expected = sch
        tables.append(pq.read_table(f, columns=list(columns) if columns else None))
    if expected is None:  # empty shard directory: requires a schema to know the columns
        raise ManifestError(f"{path}: no Parquet files")
    if columns:
        unknown = [c for c in columns if c not in expected.column_names]
        if unknown:
            raise ManifestError(f"{path}: no column(s) {unknown} in {expected.name}")
        if not tables:
            return expected.empty()[list(columns)]
        return pa.concat_tables(tables).to_pandas()
    if not tables:
        return expected.empty()
    table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
    return expected.validate_frame(table.to_pandas())


def stable_id(*parts: object, length: int = 16) -> str:
    """Deterministic id from its parts (path, content hash, time span...), for idempotent reruns."""
    h = hashlib.sha256("\x1f".join(_canon(p) for p in parts).encode())
    return h.hexdigest()[:length]


def _canon(p: object) -> str:
    if isinstance(p, float):
        return f"{p:.6f}"
    return str(p)


# ----------------------------------------------------------------------------- schemas

STR, F64, I64, BOOL = pa.string(), pa.float64(), pa.int64(), pa.bool_()
TS = pa.timestamp("us", tz="UTC")
BOX = pa.list_(pa.float32(), 4)  # x0, y0, x1, y1 in pixels of the frame it refers to
EMB = pa.list_(pa.float32())


def _spans_ordered(start: str, end: str) -> Callable[[pd.DataFrame], list[str]]:
    def check(df: pd.DataFrame) -> list[str]:
        s, e = df[start], df[end]
        bad = (s.notna() & e.notna() & (s > e)) | (s < 0)
        return [f"{int(bad.sum())} row(s) with {start} > {end} or {start} < 0"] if bad.any() else []
    return check


VIDEOS = register(Schema(
    "videos", 1, doc="One row per input media file that probed as usable video.",
    key=("video_id",),
    columns=(
        Column("video_id", STR, doc="stable_id(source path, content hash)"),
        Column("path", STR, doc="input path or URL as given"),
        Column("content_hash", STR, doc="sha256 of the file bytes"),
        Column("duration_s", F64),
        Column("fps", F64, doc="average frame rate"),
        Column("n_frames", I64),
        Column("width", I64),
        Column("height", I64),
        Column("video_codec", STR),
        Column("has_audio", BOOL),
        Column("audio_codec", STR, nullable=True),
        Column("sample_rate", I64, nullable=True),
        Column("vfr", BOOL, doc="variable frame rate detected from packet timestamps"),
    ),
))

CLIP_STATUS = ("sample", "no_speech", "no_faces", "unmatched", "filtered", "ambiguous",
               "no_reference")

CLIPS = register(Schema(
    "clips", 2, doc="A time span of one video inside one shot, resampled to the target rates.",
    key=("clip_id",), check=_spans_ordered("start_s", "end_s"),
    columns=(
        Column("clip_id", STR, doc="stable_id(video_id, start_s, end_s)"),
        Column("video_id", STR),
        Column("shot_index", I64),
        Column("start_s", F64, doc="start in the source video"),
        Column("end_s", F64),
        Column("path", STR, nullable=True, doc="written clip mp4 (relative to the output root)"),
        Column("fps", F64),
        Column("n_frames", I64),
        Column("width", I64),
        Column("height", I64),
        Column("sample_rate", I64),
        Column("status", STR, choices=CLIP_STATUS,
               doc="sample: became a training sample; otherwise the filter that stopped it "
                   "(no_speech, no_faces, unmatched: a speaker without a face, filtered: "
                   "sync below the floor, ambiguous: assignment margin too small, "
                   "no_reference: a subject without a usable face or voice reference)"),
        Column("status_reason", STR, nullable=True, doc="one line, null for samples"),
        Column("n_speakers", I64, doc="diarized speakers with words in the clip"),
        Column("n_faces", I64, doc="face tracks that passed the quality filters"),
        Column("best_sync", F64, nullable=True,
               doc="best speaker/face association score (Sync-C or motion correlation)"),
    ),
))

SPEECH_SEGMENTS = register(Schema(
    "speech_segments", 1, doc="Who speaks when inside a clip, with the words said.",
    key=("segment_id",), check=_spans_ordered("start_s", "end_s"),
    columns=(
        Column("segment_id", STR),
        Column("clip_id", STR),
        Column("speaker", STR, doc="diarization label, local to the clip"),
        Column("start_s", F64, doc="relative to the clip start"),
        Column("end_s", F64),
        Column("text", STR, nullable=True),
        Column("confidence", F64, nullable=True),
    ),
))

FACE_TRACKS = register(Schema(
    "face_tracks", 1, doc="A face followed across the sampled frames of a clip.",
    key=("track_id",),
    columns=(
        Column("track_id", STR),
        Column("clip_id", STR),
        Column("frame_indices", pa.list_(I64), doc="clip frame index of each detection"),
        Column("boxes", pa.list_(BOX), doc="one box per detection"),
        Column("det_scores", pa.list_(pa.float32())),
        Column("min_face_px", F64, doc="smallest box side over the track"),
        Column("sharpness", F64, nullable=True, doc="variance of the Laplacian, median"),
        Column("embedding", EMB, nullable=True, doc="mean ArcFace embedding, L2-normalised"),
        Column("identity_id", STR, nullable=True),
        Column("passed", BOOL, doc="passed the quality filters"),
        Column("reject_reason", STR, nullable=True),
    ),
))

IDENTITIES = register(Schema(
    "identities", 2, doc="One person in one clip: face track(s) joined with a speaker.",
    key=("identity_id",),
    columns=(
        Column("identity_id", STR),
        Column("clip_id", STR),
        Column("track_ids", pa.list_(STR)),
        Column("speaker", STR, nullable=True, doc="speech_segments.speaker assigned to this face"),
        Column("sync_confidence", F64, nullable=True,
               doc="association score of the speaker with this face (Sync-C or correlation)"),
        Column("margin", F64, nullable=True,
               doc="that score minus its best alternative (inf: no alternative)"),
        Column("embedding", EMB, nullable=True),
    ),
))

REFERENCES = register(Schema(
    "references", 2,
    doc="Identity (image) and timbre (audio) references with where they were taken (masks).",
    key=("reference_id",),
    columns=(
        Column("reference_id", STR),
        Column("identity_id", STR),
        Column("kind", STR, choices=("image", "audio")),
        Column("path", STR, doc="png or wav, relative to the output root"),
        Column("source_clip_id", STR),
        Column("frame_index", I64, nullable=True, doc="image: clip frame of the crop (M_v)"),
        Column("box", BOX, nullable=True, doc="image: crop box in that frame (M_v)"),
        Column("start_s", F64, nullable=True, doc="audio: span in the clip (M_a)"),
        Column("end_s", F64, nullable=True),
        Column("augment", STR, nullable=True,
               doc="image: JSON of the augmentation applied (flip, jitter, scale), null if none"),
    ),
))

SAMPLES = register(Schema(
    "samples", 2, doc="A training sample: target clip, caption, references per subject.",
    key=("sample_id",),
    columns=(
        Column("sample_id", STR),
        Column("kind", STR, choices=("inpair", "crosspair")),
        Column("task", STR, choices=("r2av", "rv2av", "ra2v")),
        Column("clip_id", STR),
        Column("clip_path", STR),
        Column("caption_path", STR),
        Column("identity_ids", pa.list_(STR), doc="subject k = element k-1 (<subK>)"),
        Column("image_reference_ids", pa.list_(STR)),
        Column("audio_reference_ids", pa.list_(STR)),
        Column("n_speakers", I64),
        Column("mask_frames", pa.list_(I64),
               doc="M_v: clip frame of subject k's identity crop at index k-1"),
        Column("mask_boxes", pa.list_(BOX), doc="M_v: that crop's box in the frame"),
        Column("mask_spans", pa.list_(pa.list_(F64, 2)),
               doc="M_a: [start_s, end_s] of subject k's timbre reference in the clip"),
        Column("caption_flags", pa.list_(STR), doc="see pipelines.inpair.caption FLAG_*"),
    ),
))

IDENTITY_MATCHES = register(Schema(
    "identity_matches", 1,
    doc="Cross-pair retrieval: a candidate of the same person in another clip, and the verdict.",
    key=("query_identity_id", "match_identity_id"),
    columns=(
        Column("query_identity_id", STR, doc="the subject looked for"),
        Column("match_identity_id", STR, doc="an identity of another clip (another video)"),
        Column("match_clip_id", STR),
        Column("match_video_id", STR),
        Column("cosine", F64, doc="of the L2-normalised mean ArcFace embeddings"),
        Column("rank", I64, doc="1 = the query's most similar candidate"),
        Column("margin", F64, doc="cosine minus the best cosine below the threshold"),
        Column("mutual", BOOL, doc="the query is among the match's top-k"),
        Column("duplicate", BOOL, doc="the crops are the same picture"),
        Column("verified", BOOL),
        Column("reason", STR, nullable=True, doc="why it was refused; null when verified"),
    ),
))

VOICES = register(Schema(
    "voices", 1,
    doc="A cloned timbre reference: the speaker's voice saying other words, and its check.",
    key=("voice_id",),
    columns=(
        Column("voice_id", STR, doc="the audio reference id of the clone"),
        Column("identity_id", STR, doc="the speaker's identity in the prompt clip"),
        Column("prompt_reference_id", STR, doc="the in-pair timbre reference cloned from"),
        Column("prompt_clip_id", STR),
        Column("backend", STR, doc="clone backend (a test double says so in its name)"),
        Column("text", STR, doc="what the clone says"),
        Column("prompt_text", STR, nullable=True, doc="Whisper's transcript of the prompt"),
        Column("path", STR, nullable=True, doc="16 kHz wav relative to the output root; "
                                                 "null when the check failed"),
        Column("duration_s", F64, nullable=True),
        Column("similarity", F64, nullable=True,
               doc="WavLM-ECAPA cosine of the clone with the prompt speech"),
        Column("wer", F64, nullable=True, doc="Whisper transcript of the clone vs the text"),
        Column("transcript", STR, nullable=True),
        Column("passed", BOOL),
        Column("reason", STR, nullable=True, doc="the failed test; null when passed"),
    ),
))

SPEAKER_LABELS = register(Schema(
    "speaker_labels", 1,
    doc="A multimodal LLM's reading of who says each segment of a multi-speaker clip.",
    key=("segment_id",),
    columns=(
        Column("segment_id", STR),
        Column("clip_id", STR),
        Column("speaker", STR, doc="the diarization label"),
        Column("refined_speaker", STR, doc="the MLLM's label (a speaker of the clip or "
                                           "'unknown')"),
    ),
))

CROSSPAIR_SOURCES = register(Schema(
    "crosspair_sources", 1,
    doc="What became of each in-pair sample in cross-pair curation.",
    key=("inpair_sample_id",),
    columns=(
        Column("inpair_sample_id", STR),
        Column("run", STR, doc="the in-pair run folder"),
        Column("status", STR, choices=("sample", "no_match", "no_voice"),
               doc="sample: became a cross-pair sample; no_match: a subject without a "
                   "verified face in another clip; no_voice: a subject's clone failed"),
        Column("reason", STR, nullable=True),
        Column("sample_id", STR, nullable=True, doc="the cross-pair sample"),
    ),
))

EVAL_RESULTS = register(Schema(
    "eval_results", 2, doc="One metric on one benchmark instance, for one model.",
    key=("model", "instance_id", "metric"),
    columns=(
        Column("model", STR, doc="the method being scored (a row of the tables)"),
        Column("instance_id", STR),
        Column("task", STR, choices=("r2av", "rv2av", "ra2v")),
        Column("split", STR, choices=("S", "M"), doc="single- or multi-person instance"),
        Column("metric", STR),
        Column("metric_version", STR),
        Column("value", F64, nullable=True, doc="null unless status == ok"),
        Column("status", STR, choices=("ok", "missing", "error", "not_computed")),
        Column("reason", STR, nullable=True),
    ),
))

EVAL_TURNS = register(Schema(
    "eval_turns", 1,
    doc="A per-speaker-turn score of a multi-person instance (WER, T-Sim), for one model: "
        "the breakdown behind the instance's value.",
    key=("model", "instance_id", "metric", "speaker", "turn"),
    columns=(
        Column("model", STR),
        Column("instance_id", STR),
        Column("task", STR, choices=("r2av", "rv2av", "ra2v")),
        Column("split", STR, choices=("S", "M")),
        Column("metric", STR, doc="the output scored per turn (wer, t_sim or a lite variant)"),
        Column("speaker", STR, doc="the caption's subject, e.g. <sub1>"),
        Column("turn", I64, doc="the speaker's turn, 0-based in time order"),
        Column("start_s", F64, doc="the turn in the generated audio (caption timestamps)"),
        Column("end_s", F64),
        Column("value", F64, nullable=True, doc="null: the turn could not be scored"),
    ),
))

ERRORS = register(Schema(
    "errors", 1, doc="An input or item that a stage could not process, and why.",
    key=("item", "stage"),
    columns=(
        Column("item", STR, doc="input path or item id"),
        Column("stage", STR),
        Column("error_type", STR),
        Column("reason", STR, doc="one line"),
        Column("time", TS),
    ),
))


def error_row(item: str, stage: str, exc: BaseException) -> dict[str, Any]:
    """An ``errors`` row: ``exc``'s type and the first line of its message (one line, never
    a traceback), with the time it happened (ISO, UTC). URLs in it are redacted
    (:func:`omni_core.urls.redact`)."""
    import time

    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    return {"item": redact(item), "stage": stage, "error_type": type(exc).__name__,
            "reason": redact(reason),
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def rows_frame(table: str, rows: Sequence[Mapping[str, Any]],
               sort_keys: Sequence[str]) -> pd.DataFrame:
    """Rows of ``table`` (plain dicts, e.g. read back from JSON result records) as a validated
    frame sorted by ``sort_keys`` (stable: the result does not depend on the order in which
    work finished); timestamp columns are parsed from their ISO strings."""
    sch = get_schema(table)
    if not rows:
        return sch.empty()
    df = pd.DataFrame(list(rows))
    for col in sch.columns:
        if pa.types.is_timestamp(col.type) and col.name in df:
            df[col.name] = pd.to_datetime(df[col.name], utc=True)
    df = sch.validate_frame(df)
    if not sort_keys:
        return df
    return df.sort_values(list(sort_keys), kind="stable").reset_index(drop=True)


def errors_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """``errors`` rows (:func:`error_row`) as a validated table sorted by stage, item and
    reason (so a rerun writes the same order)."""
    if not rows:
        return ERRORS.empty()
    df = pd.DataFrame(list(rows))
    df["time"] = pd.to_datetime(df["time"], utc=True)
    df = ERRORS.validate_frame(df)
    return df.sort_values(["stage", "item", "reason"], kind="stable").reset_index(drop=True)

BENCH_INSTANCES = register(Schema(
    "bench_instances", 1,
    doc="A benchmark instance: what a model is given, and what the metrics compare against.",
    key=("instance_id",),
    columns=(
        Column("instance_id", STR, doc="the prediction is <instance_id>.mp4"),
        Column("task", STR, choices=("r2av", "rv2av", "ra2v")),
        Column("split", STR, choices=("S", "M"), doc="single- or multi-person"),
        Column("caption", STR, doc="structured caption, released block format"),
        Column("image_refs", pa.list_(STR), doc="identity image of <subK> at index K-1"),
        Column("audio_refs", pa.list_(STR), doc="timbre wav of <subK> at index K-1"),
        Column("source_video", STR, nullable=True, doc="rv2av: the masked source video"),
        Column("driving_audio", STR, nullable=True, doc="ra2v: the driving speech"),
    ),
))

# --- ground truth of the bundled sample corpus (omni samples make) -------------------------

CORPUS_FILES = register(Schema(
    "corpus_files", 1, doc="Every file of the sample corpus, with what a reader should find.",
    key=("file",),
    columns=(
        Column("file", STR, doc="path relative to the corpus root"),
        Column("kind", STR, choices=("talking", "recording", "broken")),
        Column("n_people", I64, nullable=True),
        Column("duration_s", F64, nullable=True),
        Column("fps", F64, nullable=True),
        Column("width", I64, nullable=True),
        Column("height", I64, nullable=True),
        Column("expected_error", STR, nullable=True, doc="broken files: what is wrong"),
        Column("description", STR),
    ),
))

CORPUS_PEOPLE = register(Schema(
    "corpus_people", 1, doc="The people in each talking clip: face, voice, placement.",
    key=("file", "person"),
    columns=(
        Column("file", STR),
        Column("person", STR, doc="p0, p1, ... in left-to-right order"),
        Column("face_source", STR, doc="where the photo comes from (package and item)"),
        Column("voice", STR, doc="espeak-ng voice used for this person's speech"),
        Column("face_box", BOX, doc="face box in video pixels (static placement)"),
        Column("mouth_box", BOX, doc="region animated with the person's speech energy"),
    ),
))

CORPUS_TURNS = register(Schema(
    "corpus_turns", 1, doc="Who speaks when and what, per file (the reference transcript).",
    key=("file", "source", "start_s", "speaker"), check=_spans_ordered("start_s", "end_s"),
    columns=(
        Column("file", STR),
        Column("source", STR, choices=("generated", "rttm", "stm"),
               doc="generated: talking clips (who, when and what); rttm: the recording's "
                   "diarization reference (text null); stm: its transcript reference"),
        Column("speaker", STR, doc="person id (talking clips) or RTTM label (recording; STM "
                                   "names are mapped to the RTTM label they overlap most)"),
        Column("start_s", F64),
        Column("end_s", F64),
        Column("text", STR, nullable=True),
    ),
))


HELDOUT = register(Schema(
    "heldout", 1,
    doc="An identity a benchmark built from curated data holds out of training "
        "(benchmark/build.py; read by omni_core.heldout for `omni latents` and `omni train`).",
    key=("identity_id",),
    columns=(
        Column("identity_id", STR, doc="curation identity: one person in one clip"),
        Column("person_id", STR, doc="identities joined by verified cross-pair matches (no "
                                     "cross-pair run: the identity alone)"),
        Column("held_out", BOOL, doc="the person is held out (drawn, or joined by the closure); "
                                     "False: a co-star of a benchmark clip kept for training "
                                     "(costars: keep); its clip stays held out"),
        Column("reason", STR, doc="why: drawn, or the clip / video that joins it to a held-out "
                                  "person"),
        Column("clip_id", STR, nullable=True, doc="its clip: a benchmark-only clip"),
        Column("video_id", STR, nullable=True, doc="its video: every clip of it is held out"),
        Column("video_path", STR, nullable=True, doc="the source video as curation read it"),
        Column("video_hash", STR, nullable=True, doc="sha256 of the source video's bytes"),
        Column("run", STR, nullable=True,
               doc="the in-pair run; null when known only from the cross-pair matches"),
        Column("embedding", EMB, nullable=True, doc="mean ArcFace embedding (curation's)"),
        Column("instance_ids", pa.list_(STR), doc="benchmark instances that show it"),
    ),
))

BENCH_SOURCES = register(Schema(
    "bench_sources", 1,
    doc="Where each instance of a benchmark built from curated data comes from.",
    key=("instance_id",),
    columns=(
        Column("instance_id", STR),
        Column("task", STR, choices=("r2av", "rv2av", "ra2v")),
        Column("sample_id", STR, doc="the in-pair sample (target clip, caption, references)"),
        Column("clip_id", STR),
        Column("video_id", STR, nullable=True),
        Column("clip_path", STR, doc="the ground-truth clip (absolute path or URL)"),
        Column("run", STR, doc="the in-pair run"),
        Column("identity_ids", pa.list_(STR), doc="subject k = element k-1 (<subK>)"),
        Column("person_ids", pa.list_(STR), doc="the held-out person of each subject"),
    ),
))
