"""Tests of omni_core.weights: manifest validation, status/verify, fetch over real HTTP, wrappers.

Downloads go to a real ``http.server`` bound to 127.0.0.1 inside the test process; nothing
leaves the machine.
"""

from __future__ import annotations

import hashlib
import io
import random
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Self

import numpy as np
import pytest
import torch
import yaml

from omni_core import weights as W
from omni_core.errors import WeightsError

ServerState = Any  # the `server` fixture's state (tests/conftest.py)

def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_of(name: str, files: list[dict[str, Any]], gated: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "description": f"test entry {name}",
        "homepage": "https://example.org/model",
        "license": "MIT",
        "used_by": ["tests"],
        "gated": gated,
        "files": files,
    }


def registry_of(*entries: dict[str, Any]) -> W.Registry:
    return W.Registry.from_data({"version": 1, "entries": list(entries)}, "test.yaml")


def one_entry(
    url: str,
    data: bytes | None = None,
    *,
    path: str = "model.bin",
    known: bool = True,
    **extra: Any,
) -> W.WeightsEntry:
    f = {
        "path": path,
        "url": url,
        "sha256": sha(data) if (known and data is not None) else None,
        "size": len(data) if (known and data is not None) else None,
        **extra,
    }
    return registry_of(entry_of("tiny", [f])).get("tiny")


PAYLOAD = random.Random(7).randbytes(3 * 1024 * 1024 + 123)  # > DOWNLOAD_CHUNK: several reads

# --------------------------------------------------------------------------------------------
# manifest


def valid_manifest() -> dict[str, Any]:
    return {
        "version": 1,
        "entries": [
            entry_of(
                "whisper-large-v3",
                [
                    {
                        "path": "large-v3.pt",
                        "url": "https://x.org/a.pt",
                        "sha256": "a" * 64,
                        "size": 10,
                    }
                ],
            ),
            entry_of(
                "buffalo_l",
                [
                    {
                        "path": "buffalo_l.zip",
                        "url": "https://x.org/b.zip",
                        "sha256": None,
                        "size": None,
                        "unpack": "zip",
                    }
                ],
            ),
        ],
    }


def test_registry_parses_temporary_yaml(tmp_path: Path) -> None:
    p = tmp_path / "weights.yaml"
    p.write_text(yaml.safe_dump(valid_manifest()), encoding="utf-8")
    reg = W.load_registry(p)
    assert reg.names() == ["whisper-large-v3", "buffalo_l"]
    e = reg.get("whisper-large-v3")
    assert e.files[0] == W.WeightFile("large-v3.pt", "https://x.org/a.pt", "a" * 64, 10)
    assert e.total_size == 10 and reg.get("buffalo_l").total_size is None
    assert "buffalo_l" in reg and len(reg) == 2
    assert [x.name for x in reg.used_by("tests")] == reg.names()


def test_packaged_manifest_loads() -> None:
    reg = W.load_registry()
    assert len(reg) > 0
    assert W.load_registry() is reg  # cached
    for e in reg:
        assert e.files and all(f.url.startswith(("http://", "https://")) for f in e.files)


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (
            lambda m: m["entries"][0].update(sha265="x"),
            "entry 'whisper-large-v3': unknown key 'sha265'",
        ),
        (
            lambda m: m["entries"][0].pop("license"),
            "entry 'whisper-large-v3': missing key 'license'",
        ),
        (
            lambda m: m["entries"][0]["files"][0].update(sha256="abc"),
            "entry 'whisper-large-v3' file 'large-v3.pt': key 'sha256'",
        ),
        (lambda m: m["entries"][0]["files"][0].pop("url"), "file 'large-v3.pt': missing key 'url'"),
        (lambda m: m["entries"][0]["files"][0].update(path="../x.pt"), "key 'path'"),
        (lambda m: m["entries"][0]["files"][0].update(size=-1), "key 'size'"),
        (
            lambda m: m["entries"][1].update(name="whisper-large-v3"),
            "entry 'whisper-large-v3': key 'name' is a duplicate",
        ),
        (lambda m: m["entries"][1].update(name="Bad Name"), "key 'name' must match"),
        (lambda m: m["entries"][1]["files"][0].update(unpack="rar"), "key 'unpack'"),
        (lambda m: m["entries"][0].update(gated="yes"), "key 'gated'"),
        (lambda m: m.update(version=2), "key 'version'"),
        (lambda m: m.update(extra=1), "unknown key 'extra'"),
    ],
)
def test_validation_errors_name_entry_and_key(mutate: Any, needle: str) -> None:
    m = valid_manifest()
    mutate(m)
    with pytest.raises(WeightsError) as exc:
        W.Registry.from_yaml(yaml.safe_dump(m), "test.yaml")
    assert needle in str(exc.value)
    assert "test.yaml" in str(exc.value) and "\n" not in str(exc.value)


def test_yaml_is_loaded_safely() -> None:
    with pytest.raises(WeightsError, match="not valid YAML"):
        W.Registry.from_yaml("!!python/object/apply:os.system ['true']\n")


def test_unknown_name_suggests_close_names() -> None:
    reg = W.Registry.from_data(valid_manifest())
    with pytest.raises(WeightsError, match="did you mean whisper-large-v3"):
        reg.get("whisper-large-v2")


def test_weights_root_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMNI_WEIGHTS", str(tmp_path / "w"))
    assert W.weights_root() == tmp_path / "w"
    monkeypatch.delenv("OMNI_WEIGHTS")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert W.weights_root() == tmp_path / "xdg" / "omni" / "weights"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert W.weights_root() == Path.home() / ".cache" / "omni" / "weights"


# --------------------------------------------------------------------------------------------
# require / status / verify


def test_require_error_names_file_entry_and_command(tmp_path: Path) -> None:
    reg = W.Registry.from_data(valid_manifest())
    with pytest.raises(WeightsError) as exc:
        W.require("whisper-large-v3", "large-v3.pt", tmp_path, registry=reg)
    msg = str(exc.value)
    assert str(tmp_path / "whisper-large-v3" / "large-v3.pt") in msg
    assert "'whisper-large-v3'" in msg and "omni weights fetch whisper-large-v3" in msg
    assert "by hand" in msg and "\n" not in msg
    with pytest.raises(WeightsError, match="omni weights fetch whisper-large-v3"):
        W.require("whisper-large-v3", root=tmp_path, registry=reg)


def test_require_uses_weights_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OMNI_WEIGHTS", str(tmp_path))
    reg = W.Registry.from_data(valid_manifest())
    folder = tmp_path / "whisper-large-v3"
    folder.mkdir()
    (folder / "large-v3.pt").write_bytes(b"0123456789")
    assert W.require("whisper-large-v3", registry=reg) == folder
    assert W.require("whisper-large-v3", "large-v3.pt", registry=reg) == folder / "large-v3.pt"
    (folder / "large-v3.pt").write_bytes(b"short")
    with pytest.raises(WeightsError, match="size-mismatch"):
        W.require("whisper-large-v3", "large-v3.pt", registry=reg)
    with pytest.raises(WeightsError, match="relative"):
        W.require("whisper-large-v3", "../etc/passwd", registry=reg)


def test_status_and_verify_report_each_state(tmp_path: Path) -> None:
    good, bad = b"good bytes", b"bad  bytes"
    reg = registry_of(
        entry_of(
            "mixed",
            [
                {
                    "path": "ok.bin",
                    "url": "https://x.org/1",
                    "sha256": sha(good),
                    "size": len(good),
                },
                {
                    "path": "corrupt.bin",
                    "url": "https://x.org/2",
                    "sha256": sha(good),
                    "size": len(good),
                },
                {"path": "gone.bin", "url": "https://x.org/3", "sha256": sha(good), "size": None},
                {"path": "sub/nohash.bin", "url": "https://x.org/4", "sha256": None, "size": None},
                {"path": "short.bin", "url": "https://x.org/5", "sha256": None, "size": 99},
            ],
        )
    )
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    (folder / "ok.bin").write_bytes(good)
    (folder / "corrupt.bin").write_bytes(bad)  # same size: only the hash can tell
    (folder / "sub" / "nohash.bin").write_bytes(bad)
    (folder / "short.bin").write_bytes(bad)
    st = {f.file.path: f.state for f in W.status("mixed", tmp_path, registry=reg).files}
    assert st == {
        "ok.bin": "present",
        "corrupt.bin": "present",
        "gone.bin": "missing",
        "sub/nohash.bin": "present",
        "short.bin": "size-mismatch",
    }
    rep = W.verify("mixed", tmp_path, registry=reg)
    by = {f.file.path: f for f in rep.files}
    assert by["ok.bin"].state == W.VerifyState.OK
    assert by["corrupt.bin"].state == W.VerifyState.MISMATCH
    assert by["corrupt.bin"].actual == sha(bad) and by["corrupt.bin"].expected == sha(good)
    assert by["gone.bin"].state == W.VerifyState.MISSING
    assert by["sub/nohash.bin"].state == W.VerifyState.UNKNOWN_HASH
    assert by["sub/nohash.bin"].detail == "present, no reference hash"
    assert by["short.bin"].state == W.VerifyState.MISMATCH
    assert not rep.ok and "corrupt.bin: mismatch" in rep.summary()


# --------------------------------------------------------------------------------------------
# fetch over real HTTP


def test_fetch_downloads_verifies_and_is_idempotent(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    entry = one_entry(base + "/m.bin", PAYLOAD)
    seen: list[tuple[str, int, int | None]] = []
    res = W.fetch(entry, tmp_path, progress=lambda *a: seen.append(a))
    dest = tmp_path / "tiny" / "model.bin"
    assert [r.action for r in res] == ["downloaded"] and res[0].path == dest
    assert sha(dest.read_bytes()) == sha(PAYLOAD)
    assert not (tmp_path / "tiny" / "model.bin.part").exists()
    assert seen[-1] == ("tiny/model.bin", len(PAYLOAD), len(PAYLOAD)) and len(seen) > 1
    assert [s[1] for s in seen] == sorted(s[1] for s in seen)
    assert W.status(entry, tmp_path).ok and W.verify(entry, tmp_path).ok
    n = len(state.requests)
    assert [r.action for r in W.fetch(entry, tmp_path)] == ["present"]
    assert len(state.requests) == n  # nothing downloaded twice
    W.fetch(entry, tmp_path, force=True)
    assert len(state.requests) == n + 1 and state.requests[-1]["range"] is None


def test_interrupted_download_resumes_with_range(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    state.drop_after = 1_500_000
    entry = one_entry(base + "/m.bin", PAYLOAD)
    with pytest.raises(WeightsError, match="interrupted .*again to resume"):
        W.fetch(entry, tmp_path)
    part = tmp_path / "tiny" / "model.bin.part"
    dest = tmp_path / "tiny" / "model.bin"
    on_disk = part.stat().st_size
    assert 0 < on_disk <= 1_500_000 and not dest.exists()
    assert W.status(entry, tmp_path).files[0].state == W.FileState.PARTIAL
    res = W.fetch(entry, tmp_path)
    assert [r.action for r in res] == ["resumed"]
    assert state.requests[-1]["range"] == f"bytes={on_disk}-"
    assert sha(dest.read_bytes()) == sha(PAYLOAD) and not part.exists()


def test_interrupted_download_unknown_size_resumes(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    """Without a manifest size the short read is still detected from Content-Length."""
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    state.drop_after = 1000
    entry = one_entry(base + "/m.bin", PAYLOAD, known=False)
    with pytest.raises(WeightsError, match="interrupted"):
        W.fetch(entry, tmp_path)
    W.fetch(entry, tmp_path)
    assert state.requests[-1]["range"] == "bytes=1000-"
    assert sha((tmp_path / "tiny" / "model.bin").read_bytes()) == sha(PAYLOAD)


def test_server_ignoring_range_restarts_from_zero(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    state.ignore_range = True
    entry = one_entry(base + "/m.bin", PAYLOAD)
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "model.bin.part").write_bytes(b"garbage that is not the file's prefix")
    assert [r.action for r in W.fetch(entry, tmp_path)] == ["downloaded"]
    assert state.requests[-1]["range"] is not None  # asked, server answered 200
    assert sha((folder / "model.bin").read_bytes()) == sha(PAYLOAD)


def test_complete_part_gets_416_and_is_verified(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    entry = one_entry(base + "/m.bin", PAYLOAD, known=False)  # size unknown: must ask
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "model.bin.part").write_bytes(PAYLOAD)
    assert [r.action for r in W.fetch(entry, tmp_path)] == ["resumed"]
    assert state.requests[-1]["range"] == f"bytes={len(PAYLOAD)}-"
    assert (folder / "model.bin").read_bytes() == PAYLOAD


def test_wrong_hash_is_rejected_and_leaves_nothing(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    state.files["/m.bin"] = PAYLOAD
    wrong = "0" * 64
    entry = registry_of(
        entry_of(
            "tiny", [{"path": "model.bin", "url": base + "/m.bin", "sha256": wrong, "size": None}]
        )
    ).get("tiny")
    with pytest.raises(WeightsError) as exc:
        W.fetch(entry, tmp_path)
    msg = str(exc.value)
    assert "tiny/model.bin" in msg and wrong in msg and sha(PAYLOAD) in msg
    assert not (tmp_path / "tiny" / "model.bin").exists()
    assert not (tmp_path / "tiny" / "model.bin.part").exists()


def test_http_errors_are_one_line(server: tuple[str, ServerState], tmp_path: Path) -> None:
    base, _ = server
    with pytest.raises(WeightsError, match="not found .HTTP 404."):
        W.fetch(one_entry(base + "/nope.bin"), tmp_path)
    with pytest.raises(WeightsError, match="cannot download tiny/model.bin"):
        W.fetch(one_entry("http://127.0.0.1:9/x"), tmp_path, timeout=5)


def test_gated_entry_needs_token(
    server: tuple[str, ServerState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, state = server
    state.files["/m.bin"] = b"gated"
    entry = registry_of(
        entry_of(
            "g",
            [{"path": "m.bin", "url": base + "/m.bin", "sha256": sha(b"gated"), "size": 5}],
            gated=True,
        )
    ).get("g")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(WeightsError, match="gated: accept its terms.*HF_TOKEN"):
        W.fetch(entry, tmp_path)
    assert state.requests == []
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    W.fetch(entry, tmp_path)
    assert state.requests[-1]["auth"] is None  # the token only ever goes to huggingface.co
    assert W._is_huggingface("https://huggingface.co/openai/whisper/resolve/main/x")
    assert not W._is_huggingface("https://huggingface.co.evil.org/x")


def test_token_goes_to_hub_but_not_through_redirects(
    server: tuple[str, ServerState], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """huggingface.co answers with a redirect to a signed CDN URL that must not see the token."""
    base, state = server
    state.files["/cdn/m.bin"] = PAYLOAD
    state.redirects["/resolve/m.bin"] = base + "/cdn/m.bin"
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    monkeypatch.setattr(W, "_is_huggingface", lambda url: "/resolve/" in url)
    W.fetch(one_entry(base + "/resolve/m.bin", PAYLOAD), tmp_path)
    assert [(r["path"], r["auth"]) for r in state.requests] == [
        ("/resolve/m.bin", "Bearer hf_secret"),
        ("/cdn/m.bin", None),
    ]
    assert sha((tmp_path / "tiny" / "model.bin").read_bytes()) == sha(PAYLOAD)


def make_zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_unpack_marker_status_verify_require(
    server: tuple[str, ServerState], tmp_path: Path
) -> None:
    base, state = server
    archive = make_zip({"det.onnx": b"detector", "nested/rec.onnx": b"recogniser"})
    state.files["/b.zip"] = archive
    entry = one_entry(base + "/b.zip", archive, path="buffalo.zip", unpack="zip")
    reg = registry_of(
        entry_of(
            "tiny",
            [
                {
                    "path": "buffalo.zip",
                    "url": base + "/b.zip",
                    "sha256": sha(archive),
                    "size": len(archive),
                    "unpack": "zip",
                }
            ],
        )
    )
    res = W.fetch(entry, tmp_path)
    folder = tmp_path / "tiny"
    assert [r.action for r in res] == ["unpacked"]
    assert (folder / "det.onnx").read_bytes() == b"detector"
    assert (folder / "nested" / "rec.onnx").read_bytes() == b"recogniser"
    assert not (folder / "buffalo.zip").exists()  # replaced by the marker
    assert (folder / ".buffalo.zip.unpacked.json").is_file()
    assert W.status(entry, tmp_path).ok
    rep = W.verify(entry, tmp_path)
    assert rep.ok and rep.files[0].state == W.VerifyState.OK
    assert rep.files[0].actual == sha(archive)
    assert W.require("tiny", "nested/rec.onnx", tmp_path, registry=reg) == (
        folder / "nested" / "rec.onnx"
    )
    assert W.require("tiny", root=tmp_path, registry=reg) == folder
    n = len(state.requests)
    assert [r.action for r in W.fetch(entry, tmp_path)] == ["present"]
    assert len(state.requests) == n
    (folder / "det.onnx").unlink()
    assert W.status(entry, tmp_path).files[0].state == W.FileState.MISSING
    assert W.verify(entry, tmp_path).files[0].state == W.VerifyState.MISSING
    with pytest.raises(WeightsError, match="det.onnx is missing"):
        W.require("tiny", root=tmp_path, registry=reg)
    assert [r.action for r in W.fetch(entry, tmp_path)] == ["unpacked"]
    assert (folder / "det.onnx").read_bytes() == b"detector"


@pytest.mark.parametrize("bad", ["../evil.txt", "/abs/evil.txt", "ok/../../evil.txt"])
def test_zip_with_unsafe_member_is_rejected(
    server: tuple[str, ServerState], tmp_path: Path, bad: str
) -> None:
    base, state = server
    archive = make_zip({"fine.txt": b"fine", bad: b"evil"})
    state.files["/evil.zip"] = archive
    root = tmp_path / "root"
    entry = one_entry(base + "/evil.zip", archive, path="evil.zip", unpack="zip")
    with pytest.raises(WeightsError, match="unsafe member"):
        W.fetch(entry, root)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (root / "tiny" / "fine.txt").exists()
    assert not (root / "tiny" / ".evil.zip.unpacked.json").exists()


# --------------------------------------------------------------------------------------------
# checkpoints and the wrapper base class


class TinyLinear(W.PretrainedComponent, torch.nn.Module):
    """The smallest possible wrapper: one linear layer loaded from ``linear.pt``."""

    weights_entry = "tiny-linear"
    weights_files = ("linear.pt",)

    def __init__(self, dim: int = 4) -> None:
        torch.nn.Module.__init__(self)
        self.layer = torch.nn.Linear(dim, dim)

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        state = W.load_torch_checkpoint(paths["linear.pt"])
        obj = cls(dim=state["layer.weight"].shape[0])
        obj.load_state_dict(state)
        return obj.to(device)

    @classmethod
    def _build_debug(cls, seed: int, device: str, **kw: Any) -> Self:
        return cls(dim=kw.get("dim", 4)).to(device)


def tiny_registry(tmp_path: Path, name: str = "linear.pt") -> W.Registry:
    return registry_of(
        entry_of(
            "tiny-linear", [{"path": name, "url": "https://x.org/l", "sha256": None, "size": None}]
        )
    )


def test_debug_is_deterministic_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(123)
    np.random.seed(123)
    expected_t = torch.rand(3)
    expected_n = np.random.rand(3)
    torch.manual_seed(123)
    np.random.seed(123)
    a = TinyLinear.debug(seed=0)
    b = TinyLinear.debug(seed=0)
    c = TinyLinear.debug(seed=1)
    assert torch.equal(torch.rand(3), expected_t)  # global streams continue undisturbed
    assert np.array_equal(np.random.rand(3), expected_n)
    assert torch.equal(a.layer.weight, b.layer.weight)
    assert not torch.equal(a.layer.weight, c.layer.weight)
    assert a.is_debug and a.describe() == "debug weights (seed 0): scores are not meaningful"


def test_from_pretrained_loads_torch_file(tmp_path: Path) -> None:
    src = TinyLinear.debug(seed=5, dim=3)
    folder = tmp_path / "tiny-linear"
    folder.mkdir()
    torch.save(src.state_dict(), folder / "linear.pt")
    reg = tiny_registry(tmp_path)
    m = TinyLinear.from_pretrained(root=tmp_path, registry=reg)
    assert not m.is_debug and torch.equal(m.layer.weight, src.layer.weight)
    assert m.describe() == f"tiny-linear from {folder}"


def test_from_pretrained_missing_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(WeightsError) as exc:
        TinyLinear.from_pretrained(root=tmp_path, registry=tiny_registry(tmp_path))
    msg = str(exc.value)
    assert "linear.pt" in msg and "tiny-linear" in msg and "omni weights fetch tiny-linear" in msg


def test_check_weights_is_the_load_error_without_loading_or_booking(tmp_path: Path) -> None:
    """The pre-flight a job runs on its driver (Stage.preflight): the same one-line error as
    loading, and a complete folder passes without reading the checkpoint or booking it as
    used (the workers that load it do that)."""
    reg = tiny_registry(tmp_path)
    TinyLinear.check_weights("debug")  # twins need no file
    TinyLinear.check_weights("random")
    with pytest.raises(WeightsError) as exc:
        TinyLinear.check_weights(tmp_path, registry=reg)
    assert "linear.pt" in str(exc.value) and "omni weights fetch tiny-linear" in str(exc.value)
    (tmp_path / "tiny-linear").mkdir()
    (tmp_path / "tiny-linear" / "linear.pt").write_bytes(b"not a checkpoint: never read")
    before = W.used_checkpoints()
    TinyLinear.check_weights(tmp_path, registry=reg)
    assert W.used_checkpoints() == before


class LinearWithScale(TinyLinear):
    """A wrapper reading a second entry (a scale, like a head or a tokenizer) and, only when
    the main checkpoint asks for it, a third one (like a fallback checkpoint)."""

    extra_weights = {"tiny-scale": ("scale.pt",), "tiny-fallback": ("bias.pt",)}
    optional_weights = frozenset({"tiny-fallback"})

    @classmethod
    def _load(cls, paths: Mapping[str, Path], device: str, **kw: Any) -> Self:
        state = W.load_torch_checkpoint(paths["linear.pt"])
        if "layer.bias" not in state:  # the fallback entry is read only now
            state["layer.bias"] = W.load_torch_checkpoint(paths["tiny-fallback/bias.pt"])["b"]
        obj = cls(dim=state["layer.weight"].shape[0])
        obj.load_state_dict(state)
        scale = W.load_torch_checkpoint(paths["tiny-scale/scale.pt"])["s"]
        with torch.no_grad():
            obj.layer.weight.mul_(scale)
        obj.seen = sorted(paths)  # type: ignore[attr-defined]
        return obj.to(device)


def scale_registry() -> W.Registry:
    def one(name: str, path: str) -> dict[str, Any]:
        return entry_of(name, [{"path": path, "url": "https://x.org/f", "sha256": None,
                                "size": None}])

    return registry_of(one("tiny-linear", "linear.pt"), one("tiny-scale", "scale.pt"),
                       one("tiny-fallback", "bias.pt"))


def test_extra_weights_reach_load_under_entry_and_file(tmp_path: Path) -> None:
    src = TinyLinear.debug(seed=5, dim=3)
    reg = scale_registry()
    for entry in ("tiny-linear", "tiny-scale"):
        (tmp_path / entry).mkdir()
    torch.save({"layer.weight": src.layer.weight.detach()},  # no bias: needs the fallback
               tmp_path / "tiny-linear" / "linear.pt")
    # the required extra entry is checked first: one clear error, before anything is read
    with pytest.raises(WeightsError) as exc:
        LinearWithScale.from_pretrained(root=tmp_path, registry=reg)
    assert "scale.pt" in str(exc.value) and "omni weights fetch tiny-scale" in str(exc.value)
    torch.save({"s": torch.tensor(2.0)}, tmp_path / "tiny-scale" / "scale.pt")
    # the optional entry is looked up by _load, since this checkpoint lacks the bias
    with pytest.raises(WeightsError, match="omni weights fetch tiny-fallback"):
        LinearWithScale.from_pretrained(root=tmp_path, registry=reg)
    (tmp_path / "tiny-fallback").mkdir()
    torch.save({"b": torch.ones(3)}, tmp_path / "tiny-fallback" / "bias.pt")
    m = LinearWithScale.from_pretrained(root=tmp_path, registry=reg)
    assert torch.equal(m.layer.weight, 2 * src.layer.weight) and torch.equal(
        m.layer.bias, torch.ones(3))
    assert m.seen == ["linear.pt", "tiny-fallback/bias.pt", "tiny-scale/scale.pt"]
    assert m.weights_path == tmp_path / "tiny-linear"


def test_optional_weights_are_not_needed_when_load_does_not_read_them(tmp_path: Path) -> None:
    src = TinyLinear.debug(seed=5, dim=3)
    for entry in ("tiny-linear", "tiny-scale"):
        (tmp_path / entry).mkdir()
    torch.save(src.state_dict(), tmp_path / "tiny-linear" / "linear.pt")
    torch.save({"s": torch.tensor(1.0)}, tmp_path / "tiny-scale" / "scale.pt")
    m = LinearWithScale.from_pretrained(root=tmp_path, registry=scale_registry())
    assert torch.equal(m.layer.bias, src.layer.bias)  # no tiny-fallback folder at all


def test_weight_paths_resolve_deferred_files_on_first_lookup(tmp_path: Path) -> None:
    calls: list[str] = []
    paths = W.WeightPaths()
    paths["a"] = tmp_path / "a"
    paths.defer("b", lambda: calls.append("b") or tmp_path / "b")
    assert list(paths) == ["a", "b"] and len(paths) == 2 and "b" in paths and calls == []
    assert paths["b"] == tmp_path / "b" and paths["b"] == tmp_path / "b" and calls == ["b"]
    with pytest.raises(KeyError):
        paths["c"]


def test_load_torch_checkpoint_safetensors_and_unsafe_pickle(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    t = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(t, str(tmp_path / "m.safetensors"))
    assert torch.equal(W.load_torch_checkpoint(tmp_path / "m.safetensors")["w"], t["w"])
    torch.save({"obj": _Unsafe()}, tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="safely"):
        W.load_torch_checkpoint(tmp_path / "evil.pt")
    with pytest.raises(WeightsError, match="not found"):
        W.load_torch_checkpoint(tmp_path / "absent.pt")


class _Unsafe:
    """An arbitrary class: weights_only=True must refuse to unpickle it."""


def test_a_refused_pickle_is_one_line_that_never_advises_an_unsafe_load(tmp_path: Path) -> None:
    """torch's own message says re-running with weights_only=False "will likely succeed":
    advice that would execute arbitrary pickles. Ours names what was refused and says to
    convert the file, for zip and legacy checkpoints alike, through every entry point."""
    import argparse

    cases = []
    for name, obj, zipped in (("ns.pt", argparse.Namespace(lr=1.0), True),
                              ("evil.pt", _Unsafe(), True),
                              ("legacy.pt", argparse.Namespace(lr=1.0), False)):
        torch.save({"w": torch.ones(2), "extra": obj}, tmp_path / name,
                   _use_new_zipfile_serialization=zipped)
        cases.append((tmp_path / name, type(obj).__qualname__))
    for path, cls in cases:
        for load in ("load_torch_checkpoint", "safe_torch_load"):
            with pytest.raises(WeightsError) as err:
                getattr(W, load)(path)
            msg = str(err.value)
            assert "\n" not in msg and "\x1b" not in msg
            assert "weights_only=False" not in msg and "will likely succeed" not in msg
            assert "can still be loaded" not in msg and "add_safe_globals" not in msg
            assert str(path) in msg and cls in msg and "refuse" in msg
            assert "safetensors" in msg and "state dict" in msg
    assert "argparse.Namespace" in str(pytest.raises(WeightsError, W.safe_torch_load,
                                                     cases[0][0]).value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(WeightsError, match="cannot load .*junk.pt safely .*refuses it") as err:
        W.safe_torch_load(tmp_path / "junk.pt")
    assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(W.safe_torch_load(tmp_path / "ok.pt", mmap=True)["w"], torch.ones(2))


class RealSizeLinear(TinyLinear):
    @classmethod
    def _real_size(cls) -> dict[str, Any]:
        return {"dim": 16}  # "the released width"


def test_random_builds_the_real_size_with_the_debug_code_path() -> None:
    a, b = RealSizeLinear.random(seed=3), RealSizeLinear.random(seed=3)
    assert a.layer.weight.shape == (16, 16) and torch.equal(a.layer.weight, b.layer.weight)
    assert a.variant == "random" and a.is_debug and a.debug_seed == 3
    assert a.describe() == "random weights at real size (seed 3): scores are not meaningful"
    assert RealSizeLinear.random(dim=8).layer.weight.shape == (8, 8)  # overrides pass through
    assert RealSizeLinear.debug().variant == "debug"
    with pytest.raises(NotImplementedError, match="TinyLinear has no real-size random build"):
        TinyLinear.random()


def test_for_weights_reads_a_weights_setting(tmp_path: Path) -> None:
    assert RealSizeLinear.for_weights("debug").variant == "debug"
    assert torch.equal(RealSizeLinear.for_weights("debug", seed=2).layer.weight,
                       RealSizeLinear.debug(seed=2).layer.weight)
    real = RealSizeLinear.for_weights("random", seed=1)
    assert real.variant == "random" and real.layer.weight.shape == (16, 16)
    src = TinyLinear.debug(seed=5, dim=3)
    (tmp_path / "tiny-linear").mkdir()
    torch.save(src.state_dict(), tmp_path / "tiny-linear" / "linear.pt")
    m = TinyLinear.for_weights(tmp_path, registry=tiny_registry(tmp_path))
    assert m.variant == "pretrained" and torch.equal(m.layer.weight, src.layer.weight)
    with pytest.raises(WeightsError, match="linear.pt"):
        TinyLinear.for_weights(tmp_path / "empty", registry=tiny_registry(tmp_path))


def test_load_state_dict_strict_lists_every_mismatch() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
    good = {k: torch.ones_like(v) for k, v in model.state_dict().items()}
    W.load_state_dict_strict(model, good, "ok.pt")
    assert torch.equal(model[0].weight, torch.ones(4, 3))
    bad = dict(good, **{"0.weight": torch.zeros(4, 2), "extra.bias": torch.zeros(1)})
    del bad["1.running_var"]
    with pytest.raises(WeightsError) as exc:
        W.load_state_dict_strict(model, bad, "bad.pt")
    msg = str(exc.value)
    assert msg.startswith("bad.pt does not fit Sequential: ")
    assert "missing [1.running_var]" in msg and "unexpected [extra.bias]" in msg
    assert "0.weight has shape (4, 2), expected (4, 3)" in msg
    # keys dropped on both sides; fp16 values cast to the module's fp32
    old = {k: v.half() if v.is_floating_point() else v for k, v in good.items()
           if not k.endswith("num_batches_tracked")}
    W.load_state_dict_strict(model, old, "old.pt", cast=True,
                             ignore=lambda k: k.endswith("num_batches_tracked"))
    assert model[0].weight.dtype == torch.float32
    with pytest.raises(WeightsError, match="missing"):
        W.load_state_dict_strict(model, old, "old.pt")
