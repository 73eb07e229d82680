"""The kit's pieces for a report that is a folder of pages (omni_core.report: ``page(...,
local_files=True, scripts=...)``, place_file, write_thumbnail / write_poster, linked_media,
MEDIA_SCRIPT, the filters): media placed beside the page load from disk in headless Chromium
under the page's policy, a missing one is a placeholder, the filters hide what does not match
and take their state from the address."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

import numpy as np
import soundfile as sf
from PIL import Image

from omni_core.media import write_mp4
from omni_core.report import (
    FILTER_SCRIPT,
    MEDIA_SCRIPT,
    Filter,
    filter_attrs,
    filter_bar,
    href,
    linked_media,
    page,
    place_file,
    script_hash,
    section,
    write_html,
    write_poster,
    write_thumbnail,
)
from omni_core.report.page import SCRIPT, content_security_policy

HOSTILE = '"><script>document.body.dataset.pwned=1</script>'


def parse(text: str):
    from conftest import parse_html

    return parse_html(text)


def open_page(chromium, path: Path, fragment: str = ""):
    """The DOM after the scripts ran, and the console lines (errors, policy violations)."""
    _, root, console = chromium.console(path, fragment, budget_ms=5000)
    return root, console


def test_policy_admits_the_given_scripts_and_local_files_only_when_asked() -> None:
    assert content_security_policy() == content_security_policy(())
    plain = content_security_policy()
    assert "'self'" not in plain and plain.count("sha256-") == 1
    csp = content_security_policy([FILTER_SCRIPT, MEDIA_SCRIPT, SCRIPT], local_files=True)
    assert "img-src data: 'self'" in csp and "media-src data: 'self'" in csp
    assert [script_hash(s) in csp for s in (SCRIPT, FILTER_SCRIPT, MEDIA_SCRIPT)] == [True] * 3
    assert csp.count("sha256-") == 3  # the kit's own script once
    text = page("t", ["<p>x</p>"], scripts=[FILTER_SCRIPT], local_files=True)
    assert text.count("<script>") == 2 and text.index(SCRIPT) < text.index(FILTER_SCRIPT)


def test_place_file_links_else_copies_and_keeps_what_is_there(tmp_path: Path,
                                                              monkeypatch) -> None:
    src = tmp_path / "a.wav"
    src.write_bytes(b"RIFF....")
    dest = tmp_path / "report" / "media" / "x.wav"
    assert place_file(src, dest) == "linked" and os.path.samefile(src, dest)
    assert place_file(src, dest) == "kept"

    def no_links(*_a, **_k):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    other = tmp_path / "report" / "media" / "y.wav"
    assert place_file(src, other) == "copied" and not os.path.samefile(src, other)
    assert other.read_bytes() == src.read_bytes() and place_file(src, other) == "kept"
    src.write_bytes(b"RIFF....changed")
    assert place_file(src, other) == "copied" and other.read_bytes() == src.read_bytes()
    assert not list(other.parent.glob(".*.tmp"))


def test_href_is_relative_and_percent_encoded(tmp_path: Path) -> None:
    assert href(tmp_path / "media" / "a b#1?.mp4", tmp_path / "pages") == \
        "../media/a%20b%231%3F.mp4"


def test_a_folder_page_plays_its_media_in_chromium(tmp_path: Path, chromium) -> None:
    root = tmp_path / "report"
    media = root / "media"
    t = np.arange(16000) / 16000
    wav = tmp_path / "voice.wav"
    sf.write(wav, (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), 16000)
    frames = np.zeros((12, 64, 96, 3), np.uint8)
    frames[:, :, :48] = (200, 40, 40)  # left half red: the poster is the first frame
    mp4 = tmp_path / "clip.mp4"
    write_mp4(mp4, frames, 12, audio=(0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32),
              sample_rate=16000)
    photo = tmp_path / "p.png"
    Image.fromarray(np.full((300, 200, 3), 90, np.uint8)).save(photo)

    pages = root / "pages"
    v = media / f"v {HOSTILE[:2]}.mp4"  # a name that needs percent-encoding
    place_file(mp4, v)
    place_file(wav, media / "voice.wav")
    assert write_thumbnail(photo, media / "p.jpg", 64)
    assert write_poster(v, media / "poster.jpg", 48)
    assert not write_poster(tmp_path / "none.mp4", media / "x.jpg", 48)
    assert not write_thumbnail(tmp_path / "none.png", media / "x.jpg", 48)
    with Image.open(media / "p.jpg") as im:
        assert im.size == (43, 64)
    with Image.open(media / "poster.jpg") as im:
        r, g, b = im.convert("RGB").getpixel((5, 5))
        assert im.size == (48, 32) and r > 150 and g < 90
    body = [linked_media(v, pages, testid="vid", poster=media / "poster.jpg", shown_as=HOSTILE),
            linked_media(media / "voice.wav", pages, testid="aud"),
            linked_media(media / "gone.mp4", pages, testid="gone"),
            linked_media(media / "p.jpg", pages, testid="notmedia"),
            f'<img src="{href(media / "p.jpg", pages)}" data-testid="photo">']
    path = write_html(pages / "p.html", page("folder page", [section("m", "Media", "".join(body))],
                                             scripts=[MEDIA_SCRIPT], local_files=True))
    root_node, console = open_page(chromium, path)
    assert console == []
    attrs = root_node.one("body").attrs
    assert "data-pwned" not in attrs
    assert attrs["data-media-loaded"] == "2/2" and attrs["data-media-failed"] == "0"
    assert attrs["data-images-loaded"] == "1/1"
    vid = root_node.one("video", data_testid="vid")
    assert vid.attrs["poster"] == "../media/poster.jpg" and vid.attrs["title"] == HOSTILE
    assert vid.attrs["data-media-state"] == "loaded"
    assert root_node.one(data_testid="gone-missing").text() == f"{media / 'gone.mp4'} is missing"
    assert root_node.find_all(data_testid="notmedia-missing")

    # the same page without local files: the policy blocks them, and the console says so
    path = write_html(pages / "q.html", page("no files", ["".join(body)],
                                             scripts=[MEDIA_SCRIPT]))
    root_node, console = open_page(chromium, path)
    assert root_node.one("body").attrs["data-media-loaded"] == "0/2"
    assert any("Content Security Policy" in line for line in console)


def test_filters_hide_items_and_follow_the_address(tmp_path: Path, chromium) -> None:
    items = [("a", "x", "1"), ("b", "x", "2"), ("c", "y", "1"), ("d", HOSTILE, "2")]
    bar = filter_bar([Filter("Kind", "kind", [("x", "x"), ("y", "y"), (HOSTILE, "odd")]),
                      Filter("n", "n", [("1", "one"), ("2", "two")])])
    lis = "".join(f'<li id="{i}" {filter_attrs({"Kind": k, "n": n})}>{i}</li>'
                  for i, k, n in items)
    group = f'<div data-filter-group><b data-filter-count>4</b><ul>{lis}</ul></div>'
    path = write_html(tmp_path / "f.html", page("filters", [bar, group],
                                                scripts=[FILTER_SCRIPT]))
    static = parse(path.read_text())
    assert [s.attrs["data-filter"] for s in static.find_all("select")] == ["kind", "n"]
    assert static.one("li", id="d").attrs["data-kind"] == HOSTILE

    def shown(fragment: str) -> tuple[list[str], str, str]:
        root, console = open_page(chromium, path, fragment)
        assert console == []
        b = root.one("body").attrs
        assert "data-pwned" not in b
        ids = [li.attrs["id"] for li in root.find_all("li") if "hidden" not in li.attrs]
        assert root.one(data_filter_count="").text() == str(len(ids))
        return ids, b["data-filter-state"], b["data-filter-shown"]

    assert shown("") == (["a", "b", "c", "d"], "", "4/4")
    assert shown("kind=x") == (["a", "b"], "kind=x", "2/4")
    assert shown("n=1&kind=x") == (["a"], "kind=x&n=1", "1/4")
    assert shown(f"kind={quote(HOSTILE, safe='')}")[0] == ["d"]  # round-trips the address
    assert shown("kind=zzz&n=%E0%A4%A") == (["a", "b", "c", "d"], "", "4/4")  # bad input
