"""The rating server: blind, token-isolated, validating, durable, concurrent."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import pytest

from benchmark.study.db import connect
from benchmark.study.design import DIMENSION_KEYS, StudyOptions, create_study
from benchmark.study.server import make_server


@pytest.fixture(scope="module")
def study(study_inputs, tmp_path_factory):
    root = tmp_path_factory.mktemp("study_server")
    return create_study(root / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=3, ratings=2, repeats=1, broken=1, seed=5))


@pytest.fixture(scope="module")
def untouched(study_inputs, tmp_path_factory):
    """A study that no test may answer (refusals only)."""
    root = tmp_path_factory.mktemp("study_refusals")
    return create_study(root / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=2, ratings=1, seed=6))


@pytest.fixture
def fresh(study_inputs, tmp_path):
    return create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(raters=3, ratings=2, repeats=1, broken=1, seed=5))


@contextmanager
def serving(folder):
    server = make_server(folder, "127.0.0.1", 0, quiet=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.url
    finally:
        server.shutdown()
        server.server_close()


def call(url, *, method="GET", body=None, headers=None):
    """(status, headers, body bytes) of one request; 4xx/5xx are returned, not raised."""
    data = body if body is None or isinstance(body, bytes) else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def answers(value=4):
    return dict.fromkeys(DIMENSION_KEYS, value)


def count_answers(folder):
    con = connect(folder)
    try:
        return con.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    finally:
        con.close()


def test_nothing_that_names_a_model_or_a_file_reaches_the_browser(study, study_inputs):
    """Every page, script, API answer, media URL and header a rater gets, through a whole
    study: no model name, prediction path, file name or instance id."""
    secrets = {"zeta-model", "omega-model", "zeta", "omega", ".mp4", ".wav", ".png",
               "attention-check", "broken", "repeat_of", "model_a", "instance_id"}
    for row in study_inputs.instances.itertuples():
        secrets.add(str(row.instance_id))
        secrets.update(os.path.basename(p) for p in [*row.image_refs, *row.audio_refs])
    secrets.update(str(p) for p in study_inputs.predictions.values())
    seen_text, seen_meta = [], []
    with serving(study.folder) as url:
        for _, link in study.links(url):
            for u in (link, f"{url}/static/study.js", f"{url}/static/study.css"):
                status, headers, body = call(u)
                assert status == 200
                seen_text.append(body.decode())
                seen_meta += [u, json.dumps(headers)]
            while True:
                status, headers, body = call(f"{link}/api/state")
                state = json.loads(body)
                seen_text.append(body.decode())
                if state["item"] is not None:  # what an item says about itself: no kind
                    assert set(state["item"]) == {"id", "caption", "script", "images",
                                                  "voices", "videos"}
                seen_meta.append(json.dumps(headers))
                if state["item"] is None:
                    break
                item = state["item"]
                for mid in [*item["images"], *item["voices"], *item["videos"]]:
                    status, headers, _ = call(f"{link}/m/{mid}", headers={"Range": "bytes=0-99"})
                    assert status == 206
                    seen_meta += [f"{link}/m/{mid}", json.dumps(headers)]
                status, headers, body = call(f"{link}/api/answer", method="POST",
                                             body={"item": item["id"], "answers": answers()})
                assert status == 200
                seen_text.append(body.decode())
                seen_meta.append(json.dumps(headers))
    everything = "\n".join(seen_text + seen_meta).lower()
    leaks = sorted(s for s in secrets if s.lower() in everything)
    assert leaks == [], leaks
    for headers in seen_meta:
        assert "last-modified" not in headers.lower() and "content-disposition" not in \
            headers.lower() and "date" not in re.findall(r'"(\w+)":', headers.lower())
    assert count_answers(study.folder) == sum(study.per_rater) * len(DIMENSION_KEYS)


def test_one_rater_cannot_read_or_write_another_raters_items(fresh):
    with serving(fresh.folder) as url:
        (_, one), (_, two), _ = fresh.links(url)
        item = json.loads(call(f"{one}/api/state")[2])["item"]
        mine2 = json.loads(call(f"{two}/api/state")[2])["item"]
        only_one = set(item["videos"]) - set(mine2["videos"])
        con = connect(fresh.folder)
        rater2 = {r[0] for r in con.execute(
            "SELECT i.video_a FROM assignments a JOIN items i USING (item_id) "
            "WHERE a.rater_id = 2")}
        con.close()
        foreign = [v for v in only_one if v not in rater2]
        for v in foreign:
            assert call(f"{two}/m/{v}")[0] == 404  # not this rater's media
        assert call(f"{one}/m/{item['videos'][0]}")[0] == 200
        own2 = {r["item_id"] for r in _assigned(fresh.folder, 2)}
        if item["id"] not in own2:
            status, _, _ = call(f"{two}/api/answer", method="POST",
                                body={"item": item["id"], "answers": answers(1)})
            assert status == 404 and count_answers(fresh.folder) == 0
        assert call(f"{url}/r/{'A' * 24}/api/state")[0] == 404  # unknown token
        assert call(f"{url}/r/{'A' * 24}")[0] == 404
        assert call(f"{url}/")[0] == 404
        # rater one's answer is theirs: final, and rater two's state does not move
        assert call(f"{one}/api/answer", method="POST",
                    body={"item": item["id"], "answers": answers(5)})[0] == 200
        assert call(f"{one}/api/answer", method="POST",
                    body={"item": item["id"], "answers": answers(1)})[0] == 409
        assert json.loads(call(f"{two}/api/state")[2])["done"] == 0
    values = {r["value"] for r in _answers(fresh.folder)}
    assert values == {5}


def _assigned(folder, rater):
    con = connect(folder)
    try:
        return [dict(r) for r in con.execute("SELECT * FROM assignments WHERE rater_id = ?",
                                             (rater,))]
    finally:
        con.close()


def _answers(folder):
    con = connect(folder)
    try:
        return [dict(r) for r in con.execute("SELECT * FROM answers")]
    finally:
        con.close()


@pytest.mark.parametrize("body, headers, status", [
    (b"not json", None, 400),
    (b"[1, 2]", None, 400),
    ({"item": "x"}, None, 400),
    ({"answers": {}}, None, 400),
    ("ITEM", None, 400),  # every dimension 6
    ("ITEM0", None, 400),  # every dimension 0
    ("ITEMBOOL", None, 400),  # True is not a score
    ("ITEMFLOAT", None, 400),  # 3.5 is not a score
    ("ITEMSTR", None, 400),  # "4" is not a score
    ("ITEMMISSING", None, 400),  # a dimension missing
    ("ITEMEXTRA", None, 400),  # an unknown dimension
    ("OK", {"Content-Type": "text/plain"}, 415),
    (b"x" * 20000, None, 413),
])
def test_malformed_or_out_of_range_answers_are_refused_and_nothing_stored(untouched, body,
                                                                          headers, status):
    fresh = untouched
    with serving(fresh.folder) as url:
        link = fresh.links(url)[0][1]
        item = json.loads(call(f"{link}/api/state")[2])["item"]["id"]
        bad = {"ITEM": answers(6), "ITEM0": answers(0), "ITEMBOOL": answers(True),
               "ITEMFLOAT": answers(3.5), "ITEMSTR": answers("4"),
               "ITEMMISSING": {k: 3 for k in DIMENSION_KEYS[1:]},
               "ITEMEXTRA": {**answers(3), "charm": 3}, "OK": answers(3)}
        if isinstance(body, str):
            body = json.dumps({"item": item, "answers": bad[body]}).encode()
        got, hdrs, text = call(f"{link}/api/answer", method="POST", body=body, headers=headers)
        assert got == status, text
        assert "error" in json.loads(text)
        assert count_answers(fresh.folder) == 0
        assert call(f"{link}/api/answer", method="GET")[0] == 405


def test_media_are_served_in_byte_ranges(fresh):
    with serving(fresh.folder) as url:
        link = fresh.links(url)[0][1]
        vid = json.loads(call(f"{link}/api/state")[2])["item"]["videos"][0]
        status, headers, whole = call(f"{link}/m/{vid}")
        assert status == 200 and headers["Content-Type"] == "video/mp4"
        assert headers["Accept-Ranges"] == "bytes"
        status, headers, part = call(f"{link}/m/{vid}", headers={"Range": "bytes=10-29"})
        assert status == 206 and part == whole[10:30]
        assert headers["Content-Range"] == f"bytes 10-29/{len(whole)}"
        status, _, tail = call(f"{link}/m/{vid}", headers={"Range": "bytes=-5"})
        assert status == 206 and tail == whole[-5:]
        status, headers, _ = call(f"{link}/m/{vid}",
                                  headers={"Range": f"bytes={len(whole) + 5}-"})
        assert status == 416 and headers["Content-Range"] == f"bytes */{len(whole)}"


def test_concurrent_raters_are_all_recorded(fresh):
    errors = []

    def rate(link):
        try:
            while True:
                item = json.loads(call(f"{link}/api/state")[2])["item"]
                if item is None:
                    return
                status, _, text = call(f"{link}/api/answer", method="POST",
                                       body={"item": item["id"], "answers": answers(3)})
                if status != 200:
                    errors.append((status, text))
                    return
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    with serving(fresh.folder) as url:
        threads = [threading.Thread(target=rate, args=(link,)) for _, link in fresh.links(url)
                   for _ in range(2)]  # each rater in two tabs at once
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert not errors or all(e[0] == 409 for e in errors), errors  # a race: answers are final
    assert count_answers(fresh.folder) == sum(fresh.per_rater) * len(DIMENSION_KEYS)


def test_a_server_killed_between_answers_loses_none(fresh):
    """``omni study serve`` killed with SIGKILL after acknowledging answers: restarted, every
    acknowledged answer is there and the rater resumes at the next item."""
    def start():
        proc = subprocess.Popen([sys.executable, "-m", "omni_cli.main", "study", "serve",
                                 str(fresh.folder), "--port", "0", "--quiet"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = proc.stdout.readline()
        m = re.search(r"at (http://127\.0\.0\.1:\d+)", line)
        assert m, line
        return proc, m.group(1)

    proc, url = start()
    try:
        link = fresh.links(url)[0][1]
        acked = []
        for _ in range(3):
            item = json.loads(call(f"{link}/api/state")[2])["item"]
            assert call(f"{link}/api/answer", method="POST",
                        body={"item": item["id"], "answers": answers(2)})[0] == 200
            acked.append(item["id"])
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        stored = {(r["item_id"]) for r in _answers(fresh.folder)}
        assert stored == set(acked) and count_answers(fresh.folder) == 3 * len(DIMENSION_KEYS)
        proc, url = start()
        link = fresh.links(url)[0][1]
        state = json.loads(call(f"{link}/api/state")[2])
        assert state["done"] == 3 and state["item"]["id"] not in acked
    finally:
        proc.kill()
        proc.wait(30)
        time.sleep(0.1)
