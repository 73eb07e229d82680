"""Serving a study to its raters: a small web app, on 127.0.0.1 by default.

Each rater opens their personal link, ``/r/<token>``. The page (``static/``, no inline code:
its Content-Security-Policy admits only this server's own files) asks the API for the
rater's next item and shows the reference photos, plays the reference voices, shows the
caption, plays the video(s) with sound and records the answers:

- ``GET /r/<token>/api/state``: the protocol, the dimensions, the progress and the first
  unanswered item of this rater (None when all are answered): so a rater can stop, and a
  reload or a later visit resumes where they were;
- ``POST /r/<token>/api/answer``: ``{"item": id, "answers": {dimension: value}}``, every
  dimension once, a score 1-5 (absolute protocol) or ``left`` / ``same`` / ``right``
  (pairwise). Validated here: a malformed body, a wrong type, a missing or unknown dimension
  or a value out of range is a 400; an item that is not this rater's a 404 (another rater's
  items cannot even be named); an item already answered a 409 (answers are final). Nothing
  is stored unless everything is valid; an accepted answer is committed (WAL, full sync)
  before the reply;
- ``GET /r/<token>/m/<id>``: a file of one of this rater's items (byte ranges, so videos
  seek), under an opaque random id.

Blind by construction: no model name, prediction path, file name or instance id reaches the
browser (ids are random; the order is the rater's shuffled one; a pairwise item's sides are
drawn per rater); responses carry no file names, dates or server version. An unknown token
is a 404. The log names raters by number, never by token.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .db import connect, get_meta, transaction

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY = 16 * 1024
CHUNK = 256 * 1024
_TOKEN = r"[A-Za-z0-9_-]{16,64}"
_ROUTES = [
    ("GET", re.compile(rf"^/r/({_TOKEN})/?$"), "page"),
    ("GET", re.compile(rf"^/r/({_TOKEN})/api/state$"), "state"),
    ("POST", re.compile(rf"^/r/({_TOKEN})/api/answer$"), "answer"),
    ("GET", re.compile(rf"^/r/({_TOKEN})/m/([A-Za-z0-9_-]{{8,64}})$"), "media"),
    ("GET", re.compile(r"^/static/(study\.js|study\.css)$"), "static"),
    ("GET", re.compile(r"^/favicon\.ico$"), "favicon"),
]
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self'; media-src 'self'; connect-src 'self'; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Resource-Policy": "same-origin",
}


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Study:
    """The served study: its settings, read once, and a connection per server thread."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        con = connect(self.folder)
        try:
            self.meta = get_meta(con)
        finally:
            con.close()
        self.protocol = self.meta["protocol"]
        self.dimensions = [d["key"] for d in self.meta["dimensions"]]
        self._local = threading.local()
        self._allowed: dict[int, frozenset[str]] = {}
        self._lock = threading.Lock()

    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = connect(self.folder)
        return con

    def rater(self, token: str) -> int | None:
        row = self.con().execute("SELECT rater_id FROM raters WHERE token = ?",
                                 (token,)).fetchone()
        return None if row is None else int(row["rater_id"])

    def state(self, rater: int) -> dict[str, Any]:
        con = self.con()
        total = con.execute("SELECT COUNT(*) FROM assignments WHERE rater_id = ?",
                            (rater,)).fetchone()[0]
        row = con.execute(
            "SELECT a.position, a.flipped, i.* FROM assignments a JOIN items i USING (item_id)"
            " WHERE a.rater_id = ? AND NOT EXISTS (SELECT 1 FROM answers x WHERE"
            " x.rater_id = a.rater_id AND x.item_id = a.item_id) ORDER BY a.position LIMIT 1",
            (rater,)).fetchone()
        done = con.execute("SELECT COUNT(DISTINCT item_id) FROM answers WHERE rater_id = ?",
                           (rater,)).fetchone()[0]
        dims = [{"key": d["key"], "label": d["label"], "question": d[self.protocol]}
                for d in self.meta["dimensions"]]
        out: dict[str, Any] = {"protocol": self.protocol, "dimensions": dims,
                               "scale": self.meta["scale"],
                               "scale_labels": self.meta["scale_labels"],
                               "total": total, "done": done, "item": None}
        if row is not None:
            videos = [row["video_a"]] + ([row["video_b"]] if row["video_b"] else [])
            if row["flipped"]:
                videos.reverse()
            out["item"] = {"id": row["item_id"], "caption": row["caption"],
                           "script": script(row["caption"]),
                           "images": json.loads(row["images"]),
                           "voices": json.loads(row["voices"]), "videos": videos}
        return out

    def allowed_media(self, rater: int) -> frozenset[str]:
        with self._lock:
            if rater not in self._allowed:
                ids: set[str] = set()
                for r in self.con().execute(
                        "SELECT i.images, i.voices, i.video_a, i.video_b FROM assignments a"
                        " JOIN items i USING (item_id) WHERE a.rater_id = ?", (rater,)):
                    ids.update(json.loads(r["images"]), json.loads(r["voices"]))
                    ids.update(v for v in (r["video_a"], r["video_b"]) if v)
                self._allowed[rater] = frozenset(ids)
            return self._allowed[rater]

    def media(self, rater: int, media_id: str) -> tuple[Path, str] | None:
        if media_id not in self.allowed_media(rater):
            return None
        row = self.con().execute("SELECT path, mime FROM media WHERE media_id = ?",
                                 (media_id,)).fetchone()
        return None if row is None else (Path(row["path"]), row["mime"])

    def answer(self, rater: int, body: Any) -> dict[str, int]:
        """Validate and store one item's answers (see the module docstring)."""
        if not isinstance(body, dict) or set(body) != {"item", "answers"}:
            raise BadRequest(400, "the body must be {\"item\": ..., \"answers\": {...}}")
        item, answers = body["item"], body["answers"]
        if not isinstance(item, str) or not isinstance(answers, dict):
            raise BadRequest(400, "item must be a string and answers an object")
        if set(answers) != set(self.dimensions):
            missing = sorted(set(self.dimensions) - set(answers))
            extra = sorted(set(answers) - set(self.dimensions))
            raise BadRequest(400, f"answer every dimension once (missing: {missing}, "
                             f"unknown: {extra})")
        con = self.con()
        row = con.execute("SELECT flipped FROM assignments WHERE rater_id = ? AND item_id = ?",
                          (rater, item)).fetchone()
        if row is None:
            raise BadRequest(404, "no such item")
        values = {d: self._value(d, answers[d], bool(row["flipped"])) for d in self.dimensions}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            with transaction(con):
                con.executemany(
                    "INSERT INTO answers (rater_id, item_id, dimension, value, answered_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    [(rater, item, d, v, now) for d, v in values.items()])
        except sqlite3.IntegrityError:
            raise BadRequest(409, "this item is already answered; answers are final") from None
        state = self.state(rater)
        return {"done": state["done"], "total": state["total"]}

    def _value(self, dim: str, value: Any, flipped: bool) -> int:
        if self.protocol == "absolute":
            low, high = self.meta["scale"]
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise BadRequest(400, f"{dim}: a score is an integer from {low} to {high}")
            return value
        sides = {"left": 1, "same": 0, "right": -1}
        if not isinstance(value, str) or value not in sides:
            raise BadRequest(400, f"{dim}: the answer is one of left, same, right")
        v = sides[value]  # +1: the left video is better
        return -v if flipped else v  # stored from model a's side


def script(caption: str) -> dict[str, Any] | None:
    """The caption as a rater reads it: the scene, the people, what they do, the sound and
    who says what when (people numbered as their reference photos); None when the caption is
    not in the released block format (the page then shows it as it is)."""
    from omni_core.captions import CaptionError, parse_caption

    try:
        cap = parse_caption(caption)
        speech = cap.speech()
    except (CaptionError, ValueError):
        return None

    def person(text: str) -> str:
        return re.sub(r"<sub(\d+)>", r"Person \1", text).strip()

    lines = [{"person": person(u.subject or ""), "text": u.text.strip(), "start": u.start_s,
              "end": u.end_s} for u in speech]
    out = {"scene": person(cap.scene), "appearance": person(cap.appearance),
           "actions": person(cap.actions), "audio": person(cap.audio_description),
           "speech": lines}
    return out if any(out.values()) else None


class Handler(BaseHTTPRequestHandler):
    server_version = "omni-study"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    timeout = 60  # a client that stalls mid-request does not hold a thread for ever
    study: Study
    quiet = False

    # -- plumbing

    def _route(self, method: str) -> None:
        path = self.path.split("?", 1)[0]
        self._rater_no: int | None = None
        try:
            for m, pattern, name in _ROUTES:
                match = pattern.match(path)
                if match and m == method:
                    getattr(self, f"_{name}")(*match.groups())
                    return
                if match:
                    raise BadRequest(405, "method not allowed")
            raise BadRequest(404, "not found")
        except BadRequest as exc:
            self._json(exc.status, {"error": str(exc)})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:  # noqa: N802 - http.server's names
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._json(405, {"error": "method not allowed"})

    do_DELETE = do_PATCH = do_PUT  # noqa: N815

    def _headers(self, status: int, ctype: str, length: int,
                 extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        for k, v in {**SECURITY_HEADERS, **(extra or {})}.items():
            self.send_header(k, v)
        self.end_headers()

    def _json(self, status: int, data: Any) -> None:
        body = json.dumps(data).encode()
        self._headers(status, "application/json; charset=utf-8", len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _file(self, path: Path, ctype: str) -> None:
        try:
            body = path.read_bytes()
        except OSError:
            raise BadRequest(404, "not found") from None
        self._headers(200, ctype, len(body))
        if self.command != "HEAD":
            self.wfile.write(body)

    def _rater(self, token: str) -> int:
        rater = self.study.rater(token)
        if rater is None:
            raise BadRequest(404, "not found")
        self._rater_no = rater
        return rater

    def send_response(self, code: int, message: str | None = None) -> None:
        # http.server adds a Date header; it says nothing a rater needs, so it goes
        self.log_request(code)
        self.send_response_only(code, message)
        self.send_header("Server", self.version_string())

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.quiet:
            return
        line = format % args
        line = re.sub(rf"/r/{_TOKEN}", f"/r/<rater {self._rater_no or '?'}>", line)
        sys.stderr.write(f"omni study: {line}\n")

    # -- routes

    def _page(self, token: str) -> None:
        self._rater(token)
        self._file(STATIC / "study.html", "text/html; charset=utf-8")

    def _static(self, name: str) -> None:
        ctype = "text/javascript; charset=utf-8" if name.endswith(".js") else \
            "text/css; charset=utf-8"
        self._file(STATIC / name, ctype)

    def _favicon(self) -> None:  # browsers ask for one: nothing, without an error
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _state(self, token: str) -> None:
        self._json(200, self.study.state(self._rater(token)))

    def _answer(self, token: str) -> None:
        rater = self._rater(token)
        ctype = self.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if ctype != "application/json":
            raise BadRequest(415, "send the answers as application/json")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise BadRequest(411, "a Content-Length is needed") from None
        if length < 0 or length > MAX_BODY:
            self.close_connection = True
            raise BadRequest(413, f"the body is limited to {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise BadRequest(400, "the body is not JSON") from None
        self._json(200, self.study.answer(rater, body))

    def _media(self, token: str, media_id: str) -> None:
        found = self.study.media(self._rater(token), media_id)
        if found is None:
            raise BadRequest(404, "not found")
        path, ctype = found
        try:
            f = path.open("rb")
        except OSError:
            raise BadRequest(404, "not found") from None
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end, status = 0, size - 1, 200
            rng = self.headers.get("Range")
            if rng:
                m = re.fullmatch(r"bytes=(\d*)-(\d*)", rng.strip())
                if not m or (not m.group(1) and not m.group(2)):
                    raise BadRequest(416, "unsupported range")
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:  # the last N bytes
                    start = max(0, size - int(m.group(2)))
                if start >= size or start > end:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status = 206
            extra = {"Accept-Ranges": "bytes"}
            if status == 206:
                extra["Content-Range"] = f"bytes {start}-{end}/{size}"
            self._headers(status, ctype, end - start + 1, extra)
            if self.command == "HEAD":
                return
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = f.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)


class StudyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that drops a connection (a video seeks, a tab closes, a keep-alive
        times out) is no error; anything else is printed as http.server does."""
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def make_server(study: str | os.PathLike[str], host: str = "127.0.0.1", port: int = 8765, *,
                quiet: bool = False) -> StudyServer:
    """A server for ``study`` bound to ``host:port`` (port 0: a free one), not yet serving
    (call ``serve_forever``)."""
    handler = type("BoundHandler", (Handler,), {"study": Study(study), "quiet": quiet})
    return StudyServer((host, port), handler)
