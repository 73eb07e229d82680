"""The study's database: one SQLite file, ``STUDY/study.sqlite``, in WAL mode.

Tables:

- ``meta`` (key, value): the protocol, dimensions, scale, options, where the study came from;
- ``models`` (model_id, name, source): the compared systems (never sent to a browser);
- ``media`` (media_id, path, mime): every file a rater's page shows, under an opaque random
  id (the same video under another id for a repeated item, so a repeat is not visible from
  its address);
- ``items`` (item_id, kind, instance_id, split, caption, images, voices, model_a, video_a,
  model_b, video_b, repeat_of): what one rating is about. ``kind``: ``rated`` (an instance's
  video, or two models' videos of it), ``repeat`` (a rated item shown again to the same
  rater, an attention check) or ``broken`` (an obviously broken video, an attention check);
- ``raters`` (rater_id, token, label): one personal link each (the token: 144 random bits);
- ``assignments`` (rater_id, position, item_id, flipped): each rater's items in their random
  order; ``flipped``: in a pairwise item, model b's video is shown on the left;
- ``answers`` (rater_id, item_id, dimension, value, answered_at): one row per dimension; the
  primary key (rater, item, dimension) makes an answer final. A pairwise value is stored from
  model a's side (+1: a better, 0: same, -1: b better), whatever side it was shown on.

Every write is one transaction with ``synchronous=FULL``: an answer the server acknowledged
is on disk, and a server killed at any moment loses none (WAL recovery on the next open).
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DB_NAME = "study.sqlite"
SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS models (
    model_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS media (
    media_id TEXT PRIMARY KEY, path TEXT NOT NULL, mime TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    item_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('rated', 'repeat', 'broken')),
    instance_id TEXT NOT NULL, split TEXT, caption TEXT NOT NULL,
    images TEXT NOT NULL, voices TEXT NOT NULL,
    model_a INTEGER REFERENCES models, video_a TEXT NOT NULL REFERENCES media,
    model_b INTEGER REFERENCES models, video_b TEXT REFERENCES media,
    repeat_of TEXT REFERENCES items);
CREATE TABLE IF NOT EXISTS raters (
    rater_id INTEGER PRIMARY KEY, token TEXT NOT NULL UNIQUE, label TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS assignments (
    rater_id INTEGER NOT NULL REFERENCES raters, position INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items, flipped INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (rater_id, position), UNIQUE (rater_id, item_id));
CREATE TABLE IF NOT EXISTS answers (
    rater_id INTEGER NOT NULL REFERENCES raters, item_id TEXT NOT NULL REFERENCES items,
    dimension TEXT NOT NULL, value INTEGER NOT NULL, answered_at TEXT NOT NULL,
    PRIMARY KEY (rater_id, item_id, dimension));
"""


def db_path(study: str | os.PathLike[str]) -> Path:
    return Path(study) / DB_NAME


def connect(study: str | os.PathLike[str], *, create: bool = False) -> sqlite3.Connection:
    """A connection to the study's database (WAL, full sync, foreign keys, a busy timeout so
    that concurrent raters wait for each other instead of failing)."""
    from omni_core.errors import OmniError

    path = db_path(study)
    if not create and not path.is_file():
        raise OmniError(f"{study}: not a study folder (no {DB_NAME}); make one with "
                        "`omni study create`")
    con = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    con.row_factory = sqlite3.Row
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA foreign_keys=ON")
    con.execute("PRAGMA busy_timeout=30000")
    if create:
        con.executescript(SCHEMA)
    return con


@contextmanager
def transaction(con: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any error)."""
    con.execute("BEGIN IMMEDIATE")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def get_meta(con: sqlite3.Connection) -> dict[str, Any]:
    return {r["key"]: json.loads(r["value"]) for r in con.execute("SELECT key, value FROM meta")}


def set_meta(con: sqlite3.Connection, **values: Any) -> None:
    con.executemany("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                    [(k, json.dumps(v, sort_keys=True)) for k, v in values.items()])
