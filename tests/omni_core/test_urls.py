"""Credentials in URLs: redacted in every record (omni_core.urls and the writers using it)."""

from __future__ import annotations

import pytest

from omni_core.urls import redact, redact_url, split_userinfo


@pytest.mark.parametrize("url, want", [
    ("http://user:PASS@host:8000/v1", "http://***@host:8000/v1"),
    ("https://TOKEN@github.com/org/repo", "https://***@github.com/org/repo"),
    ("s3://KEY:SECRET@bucket/videos", "s3://***@bucket/videos"),
    ("ray://u:p@head:10001", "ray://***@head:10001"),
    ("https://b.s3.amazonaws.com/a.mp4?X-Amz-Credential=AK%2F1&X-Amz-Signature=ab12&x=1",
     "https://b.s3.amazonaws.com/a.mp4?X-Amz-Credential=***&X-Amz-Signature=***&x=1"),
    ("http://h/v1?api_key=S&token=T&sig=G&password=P&secret=Q&key=K&monkey=ok",
     "http://h/v1?api_key=***&token=***&sig=***&password=***&secret=***&key=***&monkey=ok"),
    ("http://127.0.0.1:8000/v1", "http://127.0.0.1:8000/v1"),
    ("s3://bucket/run/a@b.mp4", "s3://bucket/run/a@b.mp4"),  # an @ in the path is no login
    ("/data/videos", "/data/videos"),
])
def test_redact_url(url, want):
    assert redact_url(url) == want
    assert redact(url) == want


def test_redact_finds_urls_in_text_and_json_values():
    text = "caption VLM at http://user:PASS@h:1/v1/chat/completions answered HTTP 401"
    assert redact(text) == "caption VLM at http://***@h:1/v1/chat/completions answered HTTP 401"
    doc = {"config": {"caption": {"base_url": "http://user:PASS@h/v1", "model": "m"},
                      "ray": {"address": "ray://a:PASS@head:10001"}, "n": 3, "x": None},
           "argv": ["omni", "--caption-url", "http://user:PASS@h/v1"]}
    assert "PASS" not in repr(redact(doc))
    assert redact(doc)["config"]["caption"]["model"] == "m" and redact(doc)["config"]["n"] == 3


def test_split_userinfo():
    assert split_userinfo("http://me:p%40ss@host:8/v1") == ("http://host:8/v1", ("me", "p@ss"))
    assert split_userinfo("http://host/v1") == ("http://host/v1", None)
    assert split_userinfo("http://tok@host/v1") == ("http://host/v1", ("tok", ""))


def test_summary_errors_and_caption_records_hold_no_password(tmp_path, monkeypatch):
    """The writers of a run's records: summary.json (provenance: the config with the caption
    endpoint and a Ray address, argv), errors.parquet (a reason naming the endpoint), the
    caption JSON's endpoint record. "PASS" is in no byte of any file they write."""
    import sys

    import pandas as pd

    from omni_core.chat import ChatError
    from omni_core.config import to_dict
    from omni_core.jobs import JobSummary, provenance
    from omni_core.manifests import error_row, errors_frame, write_manifest
    from omni_core.storage import RunFolder
    from pipelines.inpair.caption import CaptionVLM, CaptionVLMConfig
    from pipelines.inpair.config import InpairConfig

    endpoint = "http://user:PASS@127.0.0.1:9/v1"
    cfg = InpairConfig()
    cfg.caption.base_url, cfg.caption.model = endpoint, "m"
    cfg.ray.address = "ray://admin:PASS@head:10001"
    monkeypatch.setattr(sys, "argv", ["omni", "curate", "inpair", "--set",
                                      f"caption.base_url={endpoint}"])
    folder = RunFolder(tmp_path)
    rows = [error_row("c1", "caption", ChatError(f"caption VLM at {endpoint}/chat/completions "
                                                 "gave no valid answer")),
            error_row(f"{endpoint}/x", "prepare", OSError("no"))]
    errors = errors_frame(rows)
    write_manifest(errors, "errors", folder.local("errors.parquet", fetch=False))
    summary = JobSummary.build(
        "inpair", folder.out, total=1, skipped=0, stages=[], errors=errors,
        counts={"errors": len(errors)}, wall_s=1.0, result_key="k",
        details={"vlm": CaptionVLM(CaptionVLMConfig(base_url=endpoint, model="m")).info()},
        provenance=provenance(to_dict(cfg), weights="debug", inputs=[endpoint]),
        notes=[f"caption endpoint {endpoint}"])
    summary.write(folder)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {p.name for p in files} == {"errors.parquet", "summary.json"}
    for p in files:
        assert b"PASS" not in p.read_bytes(), p
    assert "PASS" not in "\n".join(summary.lines())
    data = summary.to_json()
    assert data["provenance"]["config"]["caption"]["base_url"] == "http://***@127.0.0.1:9/v1"
    assert data["details"]["vlm"]["base_url"] == "http://***@127.0.0.1:9/v1"
    back = pd.read_parquet(tmp_path / "errors.parquet")
    assert ("caption VLM at http://***@127.0.0.1:9/v1/chat/completions gave no valid answer"
            in set(back.reason))
