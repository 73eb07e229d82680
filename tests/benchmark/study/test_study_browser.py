"""A rater in a real headless Chromium: opens the link, plays the references and the videos
with sound, answers every item (a reload midway resumes), and the answers are in the
database and in the table."""

from __future__ import annotations

import json
import threading

from benchmark.study.aggregate import human_eval
from benchmark.study.db import connect
from benchmark.study.design import DIMENSION_KEYS, StudyOptions, create_study
from benchmark.study.server import make_server

PLAYED = """(() => [...document.querySelectorAll('video, audio')].every(
    m => m.currentTime > 0.2 && m.readyState >= 2))()"""


def _progress(dt):
    return dt.eval("document.querySelector('[data-testid=progress]').textContent")


def test_a_rater_rates_every_item_in_chromium_and_resumes_after_a_reload(study_inputs, tmp_path,
                                                                         devtools):
    plan = create_study(tmp_path / "s", study_inputs.instances, study_inputs.predictions,
                        StudyOptions(protocol="pairwise", raters=2, ratings=1, repeats=1,
                                     broken=1, seed=8))
    server = make_server(plan.folder, "127.0.0.1", 0, quiet=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        link = plan.links(server.url)[0][1]
        total = plan.per_rater[0]
        con = connect(plan.folder)
        design = {r[0]: (r[1], r[2], r[3]) for r in con.execute(
            "SELECT i.item_id, i.kind, i.repeat_of, a.flipped FROM assignments a JOIN items i "
            "USING (item_id) WHERE a.rater_id = 1")}
        con.close()
        given: dict[str, dict[str, str]] = {}
        devtools.goto(link)
        for k in range(total):
            devtools.wait_for(f"document.querySelector('[data-testid=progress]') && "
                              f"document.querySelector('[data-testid=progress]').textContent"
                              f".startsWith('Item {k + 1} of {total}')")
            # the references: every photo decoded
            devtools.wait_for("[...document.images].length > 0 && [...document.images].every("
                              "i => i.complete && i.naturalWidth > 0)")
            assert devtools.eval("document.querySelectorAll('[data-testid=video]').length") == 2
            # answer as an attentive rater: the test (not the page) knows which item is a
            # check: the broken video loses, a repeat gets the first answers again
            item = devtools.eval(f"fetch('{link}/api/state').then(r => r.json())"
                                 ".then(s => s.item.id)")
            kind, repeat_of, flipped = design[item]
            if kind == "broken":  # model a's video is the broken one
                choice = dict.fromkeys(DIMENSION_KEYS, "left" if flipped else "right")
            elif kind == "repeat":
                choice = given[repeat_of] if flipped == design[repeat_of][2] else {
                    d: {"left": "right", "right": "left"}.get(v, v)
                    for d, v in given[repeat_of].items()}
            else:
                choice = {d: ["left", "same", "right"][(k + i) % 3]
                          for i, d in enumerate(DIMENSION_KEYS)}
            given[item] = choice
            # every answer given but nothing played yet: the page asks to play first
            for d, v in choice.items():
                devtools.click(f"[data-testid='{d}-{v}']")
            assert devtools.eval("document.querySelector('[data-testid=submit]').disabled")
            assert "Play every video" in devtools.eval(
                "document.querySelector('[data-testid=hint]').textContent")
            # play the voices and the videos with sound (user-visible players, unmuted)
            devtools.eval("Promise.all([...document.querySelectorAll('video, audio')].map("
                          "m => { m.muted = false; return m.play(); }))")
            devtools.wait_for(PLAYED, timeout=60)
            assert devtools.eval("[...document.querySelectorAll('video, audio')].every("
                                 "m => !m.muted && m.volume > 0)")
            devtools.wait_for("!document.querySelector('[data-testid=submit]').disabled")
            devtools.click("[data-testid=submit]")
            if k == 1:  # the rater reloads midway: the link resumes at the next item
                devtools.wait_for(f"document.querySelector('[data-testid=progress]')"
                                  f".textContent.startsWith('Item 3 of {total}')")
                devtools.reload()
        devtools.wait_for("document.querySelector('[data-testid=finished]') !== null")
        assert f"{total} of {total} done" in _progress(devtools)
        page = devtools.html()
        requests = devtools.requests()
        console = devtools.console()
    finally:
        server.shutdown()
        server.server_close()

    con = connect(plan.folder)
    try:
        stored = con.execute("SELECT COUNT(DISTINCT item_id), COUNT(*) FROM answers "
                             "WHERE rater_id = 1").fetchone()
        flips = dict(con.execute("SELECT item_id, flipped FROM assignments WHERE rater_id = 1"))
        rows = con.execute("SELECT item_id, value FROM answers WHERE rater_id = 1 AND "
                           "dimension = 'identity'").fetchall()
    finally:
        con.close()
    assert tuple(stored) == (total, total * len(DIMENSION_KEYS))
    # stored from model a's side whatever side it was shown on
    shown = {r[0]: r[1] for r in rows}
    assert any(flips[i] for i in shown) and any(not flips[i] for i in shown)
    h = human_eval(plan.folder, n_boot=100)
    rater = h.raters.set_index("rater_id").loc[1]
    assert rater["answered"] == total and rater["checked"] and not rater["excluded"]
    (row,) = h.rows
    assert row["cells"]["identity"]["n"] == total - 2  # the two checks are not data
    # blind in the browser too: nothing the page or its requests carried names a model
    media = [r for r in requests if "/m/" in r["url"]]
    assert media and all(r["status"] in (200, 206) for r in media)
    seen = (page + json.dumps(requests)).lower()
    for secret in ("zeta-model", "omega-model", ".mp4", str(study_inputs.bench).lower()):
        assert secret not in seen, secret
    problems = [c for c in console if c["level"] in ("error", "warning")
                or c["kind"] == "exception"]
    assert problems == [], problems
