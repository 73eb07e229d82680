"""conftest's DevTools driver on a real page: headless Chromium over the DevTools protocol,
a study-like page with a real video (h264 + aac mp4) and sound (wav) served on 127.0.0.1.

The media server answers byte ranges (``Range: bytes=a-b`` -> 206 with ``Accept-Ranges``):
Chromium plays a file from a server without them (its ``Range: bytes=0-`` gets a 200 and it
reads on), but then the media is not seekable, and setting ``currentTime`` lands on 0
(test_without_byte_ranges_media_plays_but_does_not_seek)."""

from __future__ import annotations

import http.server
import io
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Rating</title></head>
<body>
<h1 id="title">Rate the clips</h1>
<video id="clip" src="media/clip.mp4" preload="auto" width="160" height="120"></video>
<audio id="tone" src="media/tone.wav" preload="auto" controls></audio>
<p>Last answer: <span id="restored"></span></p>
<div style="height: 1600px"></div>
<form id="rating">
  <label for="q1-1">bad</label> <input type="radio" name="q1" id="q1-1" value="1">
  <label><input type="radio" name="q1" id="q1-2" value="2"> good</label>
  <button type="submit" id="submit">Submit</button>
</form>
<button type="button" id="oops">Report</button>
<script>
  window.changes = 0;
  window.trusted = [];
  for (const radio of document.querySelectorAll("input[name=q1]")) {
    radio.addEventListener("change", (e) => {
      window.changes += 1;
      window.trusted.push(e.isTrusted);
      localStorage.setItem("q1", e.target.value);
    });
  }
  document.getElementById("restored").textContent = localStorage.getItem("q1") || "none";
  document.getElementById("rating").addEventListener("submit", (e) => {
    e.preventDefault();
    window.submitted = new FormData(e.target).get("q1");
  });
  document.getElementById("oops").addEventListener("click", () => {
    console.error("rating failed", 42);
    throw new Error("deliberate failure");
  });
  document.body.insertAdjacentHTML("beforeend", '<p id="ready">scripts ran</p>');
</script>
</body></html>
"""


class _Files(http.server.SimpleHTTPRequestHandler):
    """The site's folder; a single byte range (``bytes=a-`` or ``bytes=a-b``) is answered
    206 when the server's ``ranges`` is on, as a real media server does. Records every
    (path, Range) in the server's ``seen``."""

    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".mp4": "video/mp4", ".wav": "audio/wav"}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def end_headers(self) -> None:
        if self.server.ranges:  # type: ignore[attr-defined]
            self.send_header("Accept-Ranges", "bytes")
        super().end_headers()

    def send_head(self) -> Any:
        self.server.seen.append((self.path, self.headers.get("Range")))  # type: ignore[attr-defined]
        m = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range") or "")
        path = Path(self.translate_path(self.path))
        if not (self.server.ranges and m and path.is_file()):  # type: ignore[attr-defined]
            return super().send_head()
        data = path.read_bytes()
        start, end = int(m[1]), min(int(m[2] or len(data) - 1), len(data) - 1)
        if start > end:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(str(path)))
        self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        return io.BytesIO(data[start:end + 1])


@dataclass
class Site:
    folder: Path
    url: str  # byte ranges answered
    plain_url: str  # Python's plain file server: no ranges
    seen: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range) of `url`


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    from omni_core.media.ffmpeg import binary, run

    folder = tmp_path_factory.mktemp("study_site")
    (folder / "media").mkdir()
    (folder / "study.html").write_text(PAGE)
    ff = [binary("ffmpeg"), "-nostdin", "-y", "-loglevel", "error"]
    run([*ff, "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=2",
         "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=2",
         "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
         "-shortest", str(folder / "media" / "clip.mp4")], what="study clip")
    run([*ff, "-f", "lavfi", "-i", "sine=frequency=660:sample_rate=44100:duration=1",
         str(folder / "media" / "tone.wav")], what="study tone")

    servers = []
    for ranges in (True, False):
        httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(folder)))
        httpd.daemon_threads = True
        httpd.ranges, httpd.seen = ranges, []  # type: ignore[attr-defined]
        threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(httpd)
    ranged, plain = servers
    try:
        yield Site(folder, f"http://127.0.0.1:{ranged.server_address[1]}",
                   f"http://127.0.0.1:{plain.server_address[1]}", ranged.seen)
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


def _eventually(check: Callable[[], Any], timeout: float = 5) -> Any:
    """``check()`` once truthy (CDP events trail the command that caused them a little)."""
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


PLAY = "Promise.all([clip.play(), tone.play()]).then(() => 'playing')"
SEEK = ("clip.currentTime = 1.5; new Promise(r => clip.addEventListener('seeked', "
        "() => r(clip.currentTime), {once: true}))")


def test_goto_eval_html(devtools, site):
    from conftest import DevToolsError

    devtools.goto(f"{site.url}/study.html")
    assert devtools.eval("document.getElementById('title').textContent") == "Rate the clips"
    assert devtools.eval("document.title") == "Rating"
    html = devtools.html()
    assert '<video id="clip" src="media/clip.mp4"' in html
    assert '<p id="ready">scripts ran</p>' in html  # the DOM after the page's scripts
    # as in the console: declarations may repeat, await works, values come back as JSON
    assert devtools.eval("const n = document.querySelectorAll('input').length; n") == 2
    assert devtools.eval("const n = 3; await new Promise(r => setTimeout(r, 10)); n") == 3
    assert devtools.eval("({a: [1, 'x', null], b: true})") == {"a": [1, "x", None], "b": True}
    assert devtools.eval("undefined") is None
    with pytest.raises(DevToolsError, match="Error: boom"):
        devtools.eval("throw new Error('boom')")
    with pytest.raises(DevToolsError, match="TypeError"):
        devtools.eval("Promise.reject(new TypeError('nope'))")


def test_video_and_audio_play_with_sound(devtools, site):
    devtools.goto(f"{site.url}/study.html")
    assert devtools.eval(PLAY) == "playing"  # no gesture needed, not muted
    devtools.wait_for("clip.currentTime > 0.3 && tone.currentTime > 0.3", timeout=10)
    for m in devtools.eval("[clip, tone].map(m => ({ready: m.readyState, muted: m.muted, "
                           "volume: m.volume, paused: m.paused, error: m.error, "
                           "sound: m.webkitAudioDecodedByteCount}))"):
        assert m["ready"] >= 2 and not m["paused"] and m["error"] is None, m
        assert not m["muted"] and m["volume"] == 1 and m["sound"] > 0, m  # sound decoded
    assert devtools.eval("[clip.videoWidth, clip.videoHeight, clip.duration, "
                         "clip.webkitVideoDecodedByteCount > 0]") == [160, 120, 2, True]
    assert devtools.eval("[clip.seekable.length, clip.seekable.end(0)]") == [1, 2]
    assert devtools.eval(SEEK, timeout=10) == pytest.approx(1.5, abs=0.05)
    devtools.wait_for("clip.ended && tone.ended", timeout=10)


def test_without_byte_ranges_media_plays_but_does_not_seek(devtools, site):
    devtools.goto(f"{site.plain_url}/study.html")
    assert devtools.eval(PLAY) == "playing"
    devtools.wait_for("clip.currentTime > 0.3 && tone.currentTime > 0.3", timeout=10)
    assert devtools.eval("clip.readyState") >= 2
    (clip,) = [r for r in devtools.requests() if r["url"].endswith("/media/clip.mp4")]
    assert clip["request_headers"].get("range") == "bytes=0-"
    assert clip["status"] == 200 and "accept-ranges" not in clip["headers"]
    assert devtools.eval("[clip.seekable.length, clip.seekable.end(0)]") == [1, 0]
    assert devtools.eval(SEEK, timeout=10) < 0.2  # back at the start (and playing on)


def test_click_is_a_user_click(devtools, site):
    from conftest import DevToolsError

    devtools.goto(f"{site.url}/study.html")
    assert devtools.eval("scrollY") == 0
    devtools.click("#q1-2")  # below the fold: scrolled into view first
    assert devtools.eval("scrollY") > 0
    assert devtools.eval("[document.getElementById('q1-2').checked, changes, trusted, "
                         "document.activeElement.id]") == [True, 1, [True], "q1-2"]
    devtools.click("label[for=q1-1]")  # a label checks its radio
    assert devtools.eval("[document.getElementById('q1-1').checked, changes]") == [True, 2]
    devtools.click("#q1-1")  # already checked: no change event
    assert devtools.eval("changes") == 2
    devtools.click("#submit")
    assert devtools.wait_for("window.submitted") == "1"

    devtools.eval("document.body.insertAdjacentHTML('beforeend', "
                  "'<div id=\"veil\" style=\"position: fixed; inset: 0\"></div>')")
    with pytest.raises(DevToolsError, match="something else is on top.*veil"):
        devtools.click("#q1-2")
    with pytest.raises(DevToolsError, match="no element matches"):
        devtools.click("#missing")
    assert devtools.eval("changes") == 2


def test_reload_keeps_local_storage_not_the_form(devtools, site):
    devtools.goto(f"{site.url}/study.html")
    assert devtools.eval("document.getElementById('restored').textContent") == "none"
    devtools.click("#q1-2")
    assert devtools.eval("localStorage.getItem('q1')") == "2"
    before = len(site.seen)
    devtools.reload()
    assert ("/study.html", None) in site.seen[before:]  # a real reload reached the server
    assert devtools.eval("[...document.querySelectorAll('input[name=q1]')]"
                         ".map(r => r.checked)") == [False, False]
    assert devtools.eval("changes") == 0
    assert devtools.eval("localStorage.getItem('q1')") == "2"
    assert devtools.eval("document.getElementById('restored').textContent") == "2"
    pages = [r for r in devtools.requests() if r["url"] == f"{site.url}/study.html"]
    assert len(pages) == 2 and all(r["type"] == "Document" for r in pages)


def test_requests_list_the_media_and_their_headers(devtools, site):
    devtools.goto(f"{site.url}/study.html")
    devtools.wait_for("clip.readyState >= 2 && tone.readyState >= 2", timeout=10)
    reqs = devtools.requests()
    (page,) = [r for r in reqs if r["url"] == f"{site.url}/study.html"]
    assert page["type"] == "Document" and page["status"] == 200
    assert page["headers"]["content-type"].startswith("text/html")
    for name, mime in [("clip.mp4", "video/mp4"), ("tone.wav", "audio/wav")]:
        size = (site.folder / "media" / name).stat().st_size
        mine = [r for r in reqs if r["url"] == f"{site.url}/media/{name}"]
        assert mine and all(r["type"] == "Media" and r["error"] is None for r in mine), mine
        first = mine[0]
        assert first["request_headers"].get("range") == "bytes=0-"
        assert first["status"] == 206 and first["mime"] == mime
        assert first["headers"]["content-type"] == mime
        assert first["headers"]["accept-ranges"] == "bytes"
        assert first["headers"]["content-range"] == f"bytes 0-{size - 1}/{size}"
        assert (f"/media/{name}", "bytes=0-") in site.seen  # what the browser says it sent
    assert _eventually(lambda: all(r["finished"] for r in devtools.requests()
                                   if "/media/" in r["url"]))


def test_console_catches_errors_and_uncaught_exceptions(devtools, site):
    devtools.goto(f"{site.url}/study.html")
    devtools.click("#oops")  # its handler logs an error, then throws
    devtools.eval("setTimeout(() => { throw new TypeError('late failure'); }); "
                  "console.log('hello', 7); fetch('/missing.json')")

    def got(kind: str, text: str) -> list[dict[str, Any]]:
        return [c for c in devtools.console() if c["kind"] == kind and text in c["text"]]

    (error,) = _eventually(lambda: got("console", "rating failed"))
    assert error["level"] == "error" and error["text"] == "rating failed 42"
    assert error["url"] == f"{site.url}/study.html"
    (thrown,) = _eventually(lambda: got("exception", "deliberate failure"))
    assert thrown["level"] == "error" and thrown["text"].startswith("Error: deliberate failure")
    assert _eventually(lambda: got("exception", "TypeError: late failure"))
    (hello,) = _eventually(lambda: got("console", "hello"))
    assert hello["level"] == "log" and hello["text"] == "hello 7"
    missing = _eventually(lambda: [c for c in got("log", "404")  # the browser's own report
                                   if c["url"] == f"{site.url}/missing.json"])
    assert missing[0]["level"] == "error"


def test_every_wait_has_a_timeout(devtools, site):
    from conftest import DevToolsError

    devtools.goto(f"{site.url}/study.html")
    t0 = time.monotonic()
    with pytest.raises(DevToolsError, match="no answer in 1 s"):
        devtools.eval("new Promise(() => {})", timeout=1)
    with pytest.raises(DevToolsError, match="still running after 0.75 s|no answer in 1 s"):
        devtools.eval("while (true) {}", timeout=1)  # V8 stops it: the page answers after
    with pytest.raises(DevToolsError, match="not truthy in 0.5 s; last value: 0"):
        devtools.wait_for("document.querySelectorAll('.nothing').length", timeout=0.5)
    with pytest.raises(DevToolsError, match="not truthy.*last value.*ReferenceError"):
        devtools.wait_for("notYetDefined.ok", timeout=0.5)
    assert time.monotonic() - t0 < 8
    assert devtools.eval("1 + 1") == 2  # the page answers again
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DevToolsError, match="net::ERR_CONNECTION_REFUSED"):
        devtools.goto(f"http://127.0.0.1:{port}/")


def test_a_dead_browser_fails_fast(devtools, site):
    import psutil
    from conftest import DevToolsError

    devtools.goto(f"{site.url}/study.html")
    # the reaper's children: the browser, and the crash reporters it daemonised
    (browser,) = [p for p in psutil.Process(devtools.pid).children() if p.name() == "chromium"]
    browser.kill()
    t0 = time.monotonic()
    with pytest.raises(DevToolsError, match="DevTools connection|page is gone"):
        devtools.wait_for("false", timeout=20)
    assert time.monotonic() - t0 < 10
    assert not psutil.Process(devtools.pid).wait(10)  # the reaper cleaned up and left


def test_close_kills_and_reaps_every_chromium_process(site, tmp_path):
    import psutil
    from conftest import DevTools, DevToolsError

    page = DevTools(profile=tmp_path / "profile")
    try:
        page.goto(f"{site.url}/study.html")
        assert page.eval(PLAY) == "playing"
        page.wait_for("clip.currentTime > 0.3", timeout=10)
        procs = [psutil.Process(page.pid), *psutil.Process(page.pid).children(recursive=True)]
        assert sum("chrom" in p.name() for p in procs) >= 3  # browser, zygotes, renderers...
    finally:
        page.close()
    alive = [p for p in procs if p.is_running()]  # a zombie still counts as running
    assert not alive, [(p.pid, p.status()) for p in alive]
    left = [p.pid for p in psutil.process_iter(["cmdline"])
            if str(tmp_path / "profile") in " ".join(p.info["cmdline"] or [])]
    assert not left
    page.close()  # again: nothing to do
    with pytest.raises(DevToolsError, match="closed"):
        page.eval("1")
