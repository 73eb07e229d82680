"""The `omni` console script as a user runs it: exit codes, help, one-line errors."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

OMNI = str(Path(sys.executable).with_name("omni"))


def omni(*args, env=None, timeout=120):
    e = {**os.environ, **(env or {})}
    return subprocess.run([OMNI, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env=e)


def test_help_and_usage_errors():
    r = omni("--help")
    assert r.returncode == 0
    for cmd in ("doctor", "weights", "samples", "probe"):
        assert cmd in r.stdout
    assert omni("probe", "--help").returncode == 0
    assert omni("nonsense").returncode == 2
    assert omni("probe").returncode == 2  # missing PATH
    assert omni("weights", "fetch").returncode == 2  # no names, no --all


def test_probe_corpus_every_broken_file_has_a_one_line_reason(sample_corpus):
    r = omni("probe", sample_corpus.out, "--json", timeout=300)
    assert r.returncode == 1  # some files cannot be used
    assert "Traceback" not in r.stderr
    results = {Path(x["path"]).relative_to(sample_corpus.out).as_posix(): x
               for x in json.loads(r.stdout)}
    unreadable = ["broken/empty.mp4", "broken/not_a_video.mp4",
                  "broken/truncated_faststart.mp4", "broken/truncated_no_moov.mp4"]
    for name in unreadable:
        assert not results[name]["ok"]
        assert "\n" not in results[name]["error"] and name in results[name]["error"]
    assert "no audio stream" in results["broken/no_audio.mp4"]["warnings"]
    assert "no video stream" in results["broken/audio_only.mp4"]["warnings"]
    assert results["broken/vfr.mp4"]["vfr"] is True
    talking = [k for k in results if k.startswith("talking/")]
    assert len(talking) >= 6 and all(results[k]["ok"] for k in talking)


def test_probe_table_and_require(sample_corpus):
    ok = sample_corpus.out / "talking/talk00_1p.mp4"
    r = omni("probe", ok)
    assert r.returncode == 0 and "h264 / aac 16000 Hz" in r.stdout
    r = omni("probe", ok, sample_corpus.out / "broken/empty.mp4")
    assert r.returncode == 1
    assert "ERROR" in r.stdout and "empty file (0 bytes)" in r.stdout
    r = omni("probe", "--require", "av", sample_corpus.out / "broken/no_audio.mp4")
    assert r.returncode == 1 and "required stream missing" in r.stdout


def test_doctor_lists_missing_weights_with_how_to_get_them(tmp_path):
    r = omni("doctor", "--weights", tmp_path)
    assert r.returncode == 0, r.stderr
    for lib in ("torch", "ray", "pyannote.audio", "openai-whisper", "insightface", "decord",
                "ffmpeg"):
        assert lib in r.stdout
    assert "GPU: " in r.stdout
    assert "omni weights fetch whisper-large-v3" in r.stdout
    assert "gated: accept the terms" in r.stdout  # pyannote
    rep = json.loads(omni("doctor", "--weights", tmp_path, "--json").stdout)
    assert {w["state"] for w in rep["weights"]} == {"missing"}
    assert not rep["problems"]


def test_weights_fetch_resume_and_hash_rejection_through_the_cli(server, tmp_path):
    url, state = server
    good = os.urandom(300_000)
    state.files["/ckpt.bin"] = good
    state.files["/evil.bin"] = b"x" * 1000
    manifest = tmp_path / "weights.yaml"
    entry = {"description": "test", "homepage": url, "license": "MIT", "used_by": ["tests"],
             "gated": False}
    manifest.write_text(yaml.safe_dump({"version": 1, "entries": [
        {**entry, "name": "good", "files": [{"path": "ckpt.bin", "url": url + "/ckpt.bin",
                                             "sha256": hashlib.sha256(good).hexdigest(),
                                             "size": len(good)}]},
        {**entry, "name": "evil", "files": [{"path": "evil.bin", "url": url + "/evil.bin",
                                             "sha256": "0" * 64, "size": 1000}]},
    ]}))
    base = ["weights", "--manifest", manifest, "--weights", tmp_path / "w"]

    r = omni(*base, "path", "good")
    assert r.returncode == 1 and "omni weights fetch good" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1

    state.drop_after = 100_000  # the first transfer breaks off
    r = omni(*base, "fetch", "good")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    r = omni(*base, "fetch", "good")
    assert r.returncode == 0, r.stderr
    assert state.requests[-1]["range"] == "bytes=100000-"
    assert (tmp_path / "w/good/ckpt.bin").read_bytes() == good
    assert omni(*base, "verify", "good").returncode == 0
    r = omni(*base, "path", "good", "ckpt.bin")
    assert r.returncode == 0 and r.stdout.strip() == str(tmp_path / "w/good/ckpt.bin")

    r = omni(*base, "fetch", "evil")
    assert r.returncode == 1 and "sha256" in r.stderr
    assert not (tmp_path / "w/evil/evil.bin").exists()

    (tmp_path / "w/good/ckpt.bin").write_bytes(b"y" * len(good))  # corrupted on disk
    r = omni(*base, "verify", "good")
    assert r.returncode == 1 and "FAIL" in r.stdout

    listing = json.loads(omni(*base, "list", "--json").stdout)
    assert {x["name"]: x["present"] for x in listing} == {"good": True, "evil": False}


@pytest.mark.parametrize("argv", [["weights", "path", "no-such-entry"],
                                  ["weights", "verify", "whisper-lrage-v3"]])
def test_unknown_entries_are_one_line_errors(argv, tmp_path):
    r = omni(argv[0], "--weights", tmp_path, *argv[1:])
    assert r.returncode == 1
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
