"""Speaker-label refinement against a stub OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
from PIL import Image
from skimage import data

from omni_core import chat as chat_mod
from omni_core.chat import ChatError
from pipelines.crosspair.labels import (
    LABELS_ENV,
    LabelRefineConfig,
    Refinement,
    needs_refinement,
    refine_speakers,
    verdict,
)


@pytest.fixture
def waits(monkeypatch):
    seen: list[float] = []
    monkeypatch.setattr(chat_mod, "_sleep", seen.append)
    return seen


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    for name in (LABELS_ENV.base_url, LABELS_ENV.model, LABELS_ENV.api_key):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------
# real pictures: the astronaut (Eileen Collins) and the cameraman from scikit-image


def _rgb(img: np.ndarray) -> np.ndarray:
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


ASTRONAUT = data.astronaut()  # 512 x 512 RGB
CAMERA = _rgb(data.camera())  # 512 x 512 grey -> RGB
FACES = {"S1": np.ascontiguousarray(ASTRONAUT[20:220, 150:330]),
         "S2": np.ascontiguousarray(CAMERA[40:240, 170:340])}
# six "keyframes": the two people side by side, panned a little
FRAMES = [np.ascontiguousarray(np.concatenate([ASTRONAUT[:, dx:dx + 384],
                                               CAMERA[:, 64 - dx:448 - dx]], axis=1))
          for dx in range(0, 60, 10)]

SEGMENTS = [
    {"segment_id": "c1-a", "clip_id": "c1", "speaker": "S1", "start_s": 0.0, "end_s": 1.2,
     "text": "Hello there, how was the flight?"},
    {"segment_id": "c1-c", "clip_id": "c1", "speaker": "S1", "start_s": 2.6, "end_s": 3.9,
     "text": "  Glad to  hear it. "},
    {"segment_id": "c1-b", "clip_id": "c1", "speaker": "S2", "start_s": 1.2, "end_s": 2.4,
     "text": "Long, but the view was worth it."},
]


def cfg(url, **kw):
    kw.setdefault("max_retries", 2)
    return LabelRefineConfig(enabled=True, base_url=url, model="stub-mllm", backoff_s=0.1,
                             frames=4, max_image_side=128, **kw)


def answer(*speakers):
    return json.dumps({"segments": [{"id": k, "speaker": s}
                                    for k, s in enumerate(speakers, start=1)]})


def _images(content):
    out = []
    for part in content:
        if part["type"] == "image_url":
            url = part["image_url"]["url"]
            assert url.startswith("data:image/jpeg;base64,")
            out.append(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))
    return out


# ---------------------------------------------------------------------------------------


def test_request_carries_keyframes_faces_and_numbered_lines(judge, waits):
    url, st = judge
    st["script"] = [answer("S1", "S2", "S1")]
    ref = refine_speakers(cfg(url), FRAMES, FACES, SEGMENTS)
    assert len(st["requests"]) == 1 and waits == []
    body = st["requests"][0]["body"]
    assert body["model"] == "stub-mllm" and body["temperature"] == 0
    assert st["requests"][0]["path"] == "/v1/chat/completions"
    system, user = body["messages"]
    assert system["role"] == "system" and "diarization" in system["content"]
    content = user["content"]
    images = _images(content)
    assert len(images) == 2 + 4  # one face per speaker, 4 of the 6 keyframes
    assert all(max(im.size) <= 128 for im in images)
    # each face image follows the text naming its speaker, in speaker order
    kinds = [p["text"] if p["type"] == "text" else "<image>" for p in content]
    i1, i2 = kinds.index("Reference photo of S1:"), kinds.index("Reference photo of S2:")
    assert kinds[i1 + 1] == kinds[i2 + 1] == "<image>" and i1 < i2
    assert kinds[i2 + 2] == "4 frames of the clip in time order:"
    assert kinds[i2 + 3: i2 + 7] == ["<image>"] * 4
    text = "\n".join(p["text"] for p in content if p["type"] == "text")
    assert ("[1] (0.00-1.20 s) S1: Hello there, how was the flight?\n"
            "[2] (1.20-2.40 s) S2: Long, but the view was worth it.\n"
            "[3] (2.60-3.90 s) S1: Glad to hear it.") in text
    assert '"S1", "S2", "unknown"' in text
    # the answer agrees with the diarization: nothing changes, nothing is disputed
    assert isinstance(ref, Refinement) and ref.requested and ref.clip_id == "c1"
    assert ref.changed == [] and ref.speakers == ("S1", "S2")
    assert [s.segment_id for s in ref.segments] == ["c1-a", "c1-b", "c1-c"]
    assert verdict(ref, "S1", (0.0, 1.2)) is None
    assert verdict(ref, "S1", (2.6, 3.9)) is None
    assert verdict(ref, "S2", (1.3, 2.3)) is None


def test_swap_answer_changes_labels_and_the_verdict_names_it(judge, waits):
    url, st = judge
    st["script"] = [answer("S1", "S1", "S2")]
    ref = refine_speakers(cfg(url), FRAMES, FACES, SEGMENTS)
    assert ref.changed == ["c1-b", "c1-c"]
    assert ref.labels == {"c1-a": ("S1", "S1"), "c1-b": ("S2", "S1"), "c1-c": ("S1", "S2")}
    assert ref.to_rows() == [
        {"segment_id": "c1-a", "clip_id": "c1", "speaker": "S1", "refined_speaker": "S1"},
        {"segment_id": "c1-b", "clip_id": "c1", "speaker": "S2", "refined_speaker": "S1"},
        {"segment_id": "c1-c", "clip_id": "c1", "speaker": "S1", "refined_speaker": "S2"},
    ]
    assert verdict(ref, "S1", (0.0, 1.2)) is None  # untouched segment
    assert verdict(ref, "S1", (2.7, 3.5)) == ("MLLM relabels segment c1-c ([3] 2.60-3.90 s) "
                                              "from S1 to S2")
    assert verdict(ref, "S2", (1.2, 2.4)) == ("MLLM relabels segment c1-b ([2] 1.20-2.40 s) "
                                              "from S2 to S1")
    # a span across all three: S1 keeps c1-a, gains c1-b, loses c1-c (that one is named)
    assert verdict(ref, "S1", (0.5, 3.0)) == ("MLLM relabels segment c1-c ([3] 2.60-3.90 s) "
                                              "from S1 to S2")
    # speech of another speaker under the span is disputed too; further ones are counted
    assert verdict(ref, "S2", (0.1, 0.5)) == ("span overlaps segment c1-a ([1] 0.00-1.20 s) "
                                              "of S1, not S2")
    assert verdict(ref, "S2", (0.5, 3.0)) == ("span overlaps segment c1-a ([1] 0.00-1.20 s) "
                                              "of S1, not S2 (and 1 more segment(s))")
    # spans touching a segment only at its ends, or in silence, dispute nothing
    assert verdict(ref, "S1", (2.4, 2.6)) is None
    with pytest.raises(ValueError, match="bad span"):
        verdict(ref, "S1", (2.0, 1.0))


def test_unknown_answer_is_a_change(judge, waits):
    url, st = judge
    st["script"] = [answer("unknown", "S2", "S1")]
    ref = refine_speakers(cfg(url), FRAMES, FACES, SEGMENTS)
    assert ref.changed == ["c1-a"]
    assert verdict(ref, "S1", (0.0, 1.0)) == ("MLLM relabels segment c1-a ([1] 0.00-1.20 s) "
                                              "from S1 to unknown")
    assert verdict(ref, "S2", (0.0, 1.0)) == ("span overlaps segment c1-a ([1] 0.00-1.20 s), "
                                              "which MLLM relabels from S1 to unknown, not S2")


@pytest.mark.parametrize("bad, reason", [
    (answer("S1", "S3", "S1"), r"speaker 'S3'"),
    (answer("S1", "S2"), r"lacks segment id\(s\) \[3\]"),
    ("The second line is S1.", "not JSON"),
    (json.dumps({"segments": [{"id": 1, "speaker": "S1"}, {"id": 1, "speaker": "S2"},
                              {"id": 3, "speaker": "S1"}]}), "more than once"),
    (json.dumps({"segments": [{"id": "1", "speaker": "S1"}]}), "segment id '1'"),
    (json.dumps({"segments": [{"id": 4, "speaker": "S1"}]}), r"expected 1\.\.3"),
    (json.dumps({"segments": [{"id": True, "speaker": "S1"}]}), "segment id True"),
    (json.dumps({"segments": [["S1"]]}), r"not list\[dict\]"),
    (json.dumps({"segments": [{"speaker": "S1"}]}), 'without "id"'),
    (json.dumps({"labels": []}), "lacks key"),
])
def test_each_malformed_answer_is_retried(judge, waits, bad, reason):
    url, st = judge
    st["script"] = [bad, answer("S1", "S2", "S1")]
    ref = refine_speakers(cfg(url), FRAMES, FACES, SEGMENTS)
    assert ref.changed == [] and len(st["requests"]) == 2 and waits == [0.1]
    st["script"] = [bad] * 3
    with pytest.raises(ChatError, match=reason) as e:
        refine_speakers(cfg(url), FRAMES, FACES, SEGMENTS)
    assert "speaker-label MLLM" in str(e.value) and "after 3 tries" in str(e.value)


def test_malformed_answers_then_chat_error_after_max_retries(judge, waits):
    url, st = judge
    st["script"] = [answer("S1", "nobody", "S1"), answer("S1", "S2"), "not json at all"]
    with pytest.raises(ChatError, match=r"after 3 tries: answer 'not json at all' is not JSON"):
        refine_speakers(cfg(url, max_retries=2), FRAMES, FACES, SEGMENTS)
    assert len(st["requests"]) == 3 and waits == [0.1, 0.2]


def test_single_speaker_or_disabled_makes_no_request(judge, waits):
    url, st = judge
    solo = [dict(s, speaker="S1") for s in SEGMENTS]
    assert not needs_refinement(solo) and needs_refinement(SEGMENTS)
    assert not needs_refinement([])
    ref = refine_speakers(cfg(url), FRAMES, FACES, solo)
    assert not ref.requested and ref.changed == [] and ref.speakers == ("S1",)
    assert verdict(ref, "S1", (0.0, 4.0)) is None
    off = LabelRefineConfig(base_url=url, model="m")  # enabled defaults to False
    ref = refine_speakers(off, FRAMES, FACES, SEGMENTS)
    assert not ref.requested and [r["refined_speaker"] for r in ref.to_rows()] == [
        "S1", "S2", "S1"]
    assert st["requests"] == []


def test_config_resolves_from_its_own_environment(judge, waits, monkeypatch):
    url, st = judge
    config = LabelRefineConfig(enabled=True, backoff_s=0.1)
    assert config.env == LABELS_ENV and not config.configured()
    with pytest.raises(ChatError, match=r"no speaker-label MLLM configured \(set "
                                        r"OMNI_LABELS_BASE_URL and OMNI_LABELS_MODEL\)"):
        refine_speakers(config, FRAMES, FACES, SEGMENTS)
    monkeypatch.setenv("OMNI_CAPTION_BASE_URL", "http://127.0.0.1:9/v1")  # not ours
    monkeypatch.setenv("OMNI_LABELS_BASE_URL", url)
    monkeypatch.setenv("OMNI_LABELS_MODEL", "env-mllm")
    assert config.resolved() == (url, "env-mllm") and config.configured()
    assert LabelRefineConfig(model="explicit").resolved() == (url, "explicit")
    st["script"] = [answer("S1", "S2", "S1")]
    refine_speakers(config, FRAMES, FACES, SEGMENTS)
    assert st["requests"][0]["body"]["model"] == "env-mllm"
    assert st["requests"][0]["auth"] is None  # no key set, none sent
    info = config.info()
    assert info["base_url"] == url and info["model"] == "env-mllm" and info["prompt"] == "default"


def test_api_key_is_sent_as_header_and_never_appears_in_errors(judge, waits, monkeypatch):
    url, st = judge
    monkeypatch.setenv("OMNI_LABELS_API_KEY", "sk-labels-secret")
    config = cfg(url)
    # a model that echoes the key as a speaker name: rejected, and the reason is redacted
    st["script"] = [answer("S1", "sk-labels-secret", "S1")] * 3
    with pytest.raises(ChatError) as e:
        refine_speakers(config, FRAMES, FACES, SEGMENTS)
    assert "sk-labels-secret" not in str(e.value) and "***" in str(e.value)
    assert [r["auth"] for r in st["requests"]] == ["Bearer sk-labels-secret"] * 3
    assert all("sk-labels-secret" not in json.dumps(r["body"]) for r in st["requests"])
    assert "sk-labels-secret" not in repr(config) + json.dumps(config.info())
    st["script"] = [401]
    with pytest.raises(ChatError, match="HTTP 401") as e:
        refine_speakers(config, FRAMES, FACES, SEGMENTS)
    assert "sk-labels-secret" not in str(e.value)


def test_missing_face_and_bad_segments(judge, waits):
    url, st = judge
    st["script"] = [answer("S1", "S2", "S1")]
    refine_speakers(cfg(url), FRAMES[:2], {"S1": FACES["S1"], "S9": FACES["S2"]}, SEGMENTS)
    content = st["requests"][0]["body"]["messages"][1]["content"]
    assert len(_images(content)) == 1 + 2  # S2 has no photo, S9 is no speaker of the clip
    assert any(p.get("text") == "No reference photo of S2." for p in content)
    with pytest.raises(ValueError, match="bad times"):
        refine_speakers(cfg(url), FRAMES, FACES, [dict(SEGMENTS[0], end_s=-1.0), SEGMENTS[1]])
    with pytest.raises(ValueError, match="repeats"):
        refine_speakers(cfg(url), FRAMES, FACES, [SEGMENTS[0], SEGMENTS[0]])
    with pytest.raises(ValueError, match="reserved"):
        refine_speakers(cfg(url), FRAMES, FACES, [SEGMENTS[0], dict(SEGMENTS[1],
                                                                    speaker="unknown")])
    assert len(st["requests"]) == 1


def test_config_round_trips_and_rejects_bad_values(tmp_path):
    import dataclasses

    from omni_core.config import from_dict
    from omni_core.errors import ConfigError

    c = from_dict(LabelRefineConfig, {"enabled": True, "frames": 2, "max_retries": 1})
    assert c.enabled and c.frames == 2 and c.env == LABELS_ENV
    assert from_dict(LabelRefineConfig, dataclasses.asdict(c)) == c
    with pytest.raises(ConfigError, match="frames"):
        LabelRefineConfig(frames=-1)
    prompt = tmp_path / "p.txt"
    prompt.write_text("Who speaks?", encoding="utf-8")
    assert LabelRefineConfig(prompt_file=str(prompt)).prompt() == "Who speaks?"
    with pytest.raises(ConfigError, match="cannot read"):
        LabelRefineConfig(prompt_file=str(tmp_path / "missing.txt")).prompt()


def test_rows_of_a_parquet_table_are_accepted(judge, waits, tmp_path):
    import pandas as pd

    url, st = judge
    df = pd.DataFrame(SEGMENTS)
    df.loc[1, "text"] = None  # a segment without words (NaN after the round trip)
    df.to_parquet(tmp_path / "speech_segments.parquet")
    rows = pd.read_parquet(tmp_path / "speech_segments.parquet").to_dict("records")
    st["script"] = [answer("S1", "S2", "S1")]
    ref = refine_speakers(cfg(url), FRAMES, FACES, rows)
    text = st["requests"][0]["body"]["messages"][1]["content"][-2]["text"]
    assert "[3] (2.60-3.90 s) S1: (no words)" in text
    out = pd.DataFrame(ref.to_rows())
    assert list(out.columns) == ["segment_id", "clip_id", "speaker", "refined_speaker"]
    assert len(out) == 3 and (out.clip_id == "c1").all()
