"""Speaker Confusion against a stub of the OpenAI chat-completions protocol on 127.0.0.1."""

import numpy as np
import pytest

from benchmark.released import import_released
from evaluation.judge import JudgeConfig, JudgeError, ask_binary
from evaluation.metrics.spk_conf import DEFAULT_PROMPT, SpkConfOptions
from evaluation.runner import evaluate


def cfg(url):
    return JudgeConfig(base_url=url, model="stub-vlm", backoff_s=0.01, max_retries=3)


def test_strict_parsing_retries_and_backoff(judge, monkeypatch):
    url, st = judge
    monkeypatch.setenv("OMNI_JUDGE_API_KEY", "sk-test")
    st["script"] = [503, 429, "The answer is 1", " 1\n"]
    verdict, raw = ask_binary(cfg(url), "sys", [{"type": "text", "text": "hi"}])
    assert verdict == 1 and len(st["requests"]) == 4
    req = st["requests"][-1]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-test"
    assert req["body"]["model"] == "stub-vlm" and req["body"]["temperature"] == 0
    st["script"] = ["yes", "maybe", "2", "10"]
    with pytest.raises(JudgeError, match="not 0 or 1"):
        ask_binary(cfg(url), "sys", [])
    st["script"] = [400]
    with pytest.raises(JudgeError, match="HTTP 400"):
        ask_binary(cfg(url), "sys", [])


def test_not_configured_is_not_zero(monkeypatch):
    monkeypatch.delenv("OMNI_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("OMNI_JUDGE_MODEL", raising=False)
    with pytest.raises(JudgeError, match="no judge configured"):
        ask_binary(JudgeConfig(), "s", [])


def test_rate_over_multi_person_instances(judge, bench_fixtures, tmp_path, monkeypatch):
    url, st = judge
    monkeypatch.delenv("OMNI_JUDGE_API_KEY", raising=False)
    inst, _ = import_released(bench_fixtures.bench)
    n_multi = int((inst.split == "M").sum())
    st["script"] = ["1"] + ["0"] * (n_multi - 1)
    opts = {"spk_conf": SpkConfOptions(n_frames=4, judge=cfg(url))}
    run = evaluate(inst, bench_fixtures.pred, tmp_path / "o", ["spk_conf"], options=opts,
                   progress=False)
    res = run.results
    assert len(res) == n_multi and set(res.split) == {"M"}  # single-person: not applicable
    assert sorted(res.value) == [0.0] * (n_multi - 1) + [1.0]
    assert run.summary["details"]["table"]["r2av"]["spk_conf"] == f"{1 / n_multi:.3f}"
    body = st["requests"][0]["body"]
    assert body["messages"][0]["content"] == DEFAULT_PROMPT
    parts = body["messages"][1]["content"]
    images = [p for p in parts if p["type"] == "image_url"]
    assert len(images) == 2 + 4  # two labelled references, four frames
    assert images[0]["image_url"]["url"].startswith("data:image/jpeg;base64,")
    assert "<S>" in parts[0]["text"] and "<sub2> speaks at" in parts[0]["text"]
    # results are cached per instance: a rerun asks the judge nothing
    before = len(st["requests"])
    evaluate(inst, bench_fixtures.pred, tmp_path / "o", ["spk_conf"], options=opts,
             progress=False)
    assert len(st["requests"]) == before


def test_without_judge_reported_not_computed(bench_fixtures, tmp_path, monkeypatch):
    monkeypatch.delenv("OMNI_JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("OMNI_JUDGE_MODEL", raising=False)
    inst, _ = import_released(bench_fixtures.bench)
    run = evaluate(inst, bench_fixtures.pred, tmp_path / "o", ["spk_conf"], progress=False)
    assert set(run.results.status) == {"not_computed"}
    assert run.results.value.isna().all()
    assert run.summary["details"]["table"]["r2av"]["spk_conf"] == "-"
    assert np.all(run.results.reason.str.contains("no judge configured"))


def test_prompt_file_replaces_the_default(judge, bench_fixtures, tmp_path):
    url, st = judge
    prompt = tmp_path / "p.txt"
    prompt.write_text("My own rubric. Reply 0 or 1.")
    inst, _ = import_released(bench_fixtures.bench)
    inst = inst[inst.split == "M"].iloc[:1]
    opts = {"spk_conf": SpkConfOptions(n_frames=2, prompt_file=str(prompt), judge=cfg(url))}
    run = evaluate(inst, bench_fixtures.pred, tmp_path / "o", ["spk_conf"], options=opts,
                   progress=False)
    assert st["requests"][0]["body"]["messages"][0]["content"] == "My own rubric. Reply 0 or 1."
    assert run.summary["details"]["metrics"]["spk_conf"]["prompt"] == str(prompt)
