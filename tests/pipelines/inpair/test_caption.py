"""Stage 6: structured captions assembled from speech segments and a VLM's descriptive fields.

The VLM is the chat-completions stub of tests/conftest.py (``judge``) on 127.0.0.1.
"""

import base64
import io
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from omni_core import chat as chat_mod
from omni_core.captions import CaptionError, parse_caption
from omni_core.chat import ChatError
from omni_core.errors import ConfigError
from pipelines.inpair.caption import (
    DEFAULT_PROMPT,
    CaptionVLM,
    CaptionVLMConfig,
    Segment,
    assemble_caption,
    format_transcript,
)

DESCRIPTIVE = {
    "scene": "A bright office with a window behind the desk.",
    "appearance": "<sub1> wears a grey suit; <sub2> has long dark hair and a red scarf.",
    "actions": "<sub1> leans forward and gestures; <sub2> nods and turns to <sub1>.",
    "audio_description": "Two voices in a calm conversation.",
    "image_captions": {"<img1>": "A man in a grey suit", "<img2>": "A woman with a red scarf."},
}


def roundtrip(cap):
    back = parse_caption(cap.render())
    assert back.joint == cap.joint
    assert back.image_captions == cap.image_captions
    assert back.audio_description == cap.audio_description
    visual = ("scene", "appearance", "actions")
    for name in visual:
        assert getattr(back, name) == getattr(cap, name)
    assert back.speaker_timestamps.keys() == cap.speaker_timestamps.keys()
    for sub, spans in cap.speaker_timestamps.items():
        assert len(back.speaker_timestamps[sub]) == len(spans)
        for got, want in zip(back.speaker_timestamps[sub], spans, strict=True):
            assert got == pytest.approx(want, abs=1e-9)
    return back


def test_one_subject_without_descriptive_fields_invents_nothing():
    segs = [Segment("SPEAKER_00", 3.0, 4.5, " and   then we left. "),
            Segment("SPEAKER_00", 0.25, 2.0, "Hello there.")]
    cap, flags = assemble_caption(["SPEAKER_00"], segs)
    assert cap.joint == ("<sub1> says, <S>Hello there.<E> "
                         "<sub1> says, <S>and then we left.<E>")
    assert cap.speaker_timestamps == {"<sub1>": [(0.25, 2.0), (3.0, 4.5)]}
    assert (cap.scene, cap.appearance, cap.actions, cap.audio_description) == ("",) * 4
    assert cap.image_captions == {}
    assert flags == ["descriptive_fields_missing", "image_captions_missing"]
    back = roundtrip(cap)
    assert [(u.subject, u.text, u.start_s, u.end_s) for u in back.speech()] == [
        ("<sub1>", "Hello there.", 0.25, 2.0), ("<sub1>", "and then we left.", 3.0, 4.5)]
    assert "[SPEAKER_TIMESTAMPS_START]" not in back.prompt_text()


def test_empty_visual_fields_round_trip():
    cap, _ = assemble_caption(["A"], [("A", 0, 1, "Hi.")])
    back = parse_caption(cap.render())
    assert (back.scene, back.appearance, back.actions) == ("", "", "")


def test_two_subjects_in_time_order_with_ms_timestamps():
    segs = [Segment("B", 2.0004, 3.5, "Fine, thanks."),
            Segment("A", 0.12345, 1.98765, "How are you?"),
            Segment("A", 3.4, 5.0, "Good to hear."),  # overlaps B's turn: kept, in start order
            Segment("B", 5.5, 6.0, "And you?")]
    cap, flags = assemble_caption(["A", "B"], segs, descriptive=DESCRIPTIVE)
    assert flags == []
    assert cap.joint == ("<sub1> says, <S>How are you?<E> <sub2> says, <S>Fine, thanks.<E> "
                         "<sub1> says, <S>Good to hear.<E> <sub2> says, <S>And you?<E>")
    assert cap.speaker_timestamps == {"<sub1>": [(0.123, 1.988), (3.4, 5.0)],
                                      "<sub2>": [(2.0, 3.5), (5.5, 6.0)]}
    assert cap.image_captions == {"<img1>": "A man in a grey suit, identified as <sub1>.",
                                  "<img2>": "A woman with a red scarf, identified as <sub2>."}
    assert cap.scene == DESCRIPTIVE["scene"] and cap.actions == DESCRIPTIVE["actions"]
    back = roundtrip(cap)
    assert back.subjects == ["<sub1>", "<sub2>"]
    got = [(u.subject, u.text, u.start_s, u.end_s) for u in back.speech()]
    assert got == [("<sub1>", "How are you?", 0.123, 1.988), ("<sub2>", "Fine, thanks.", 2.0, 3.5),
                   ("<sub1>", "Good to hear.", 3.4, 5.0), ("<sub2>", "And you?", 5.5, 6.0)]
    assert back.speech_text("<sub2>") == "Fine, thanks. And you?"
    assert '"<sub1>": [\n        "<Time_S>00:00.123-00:01.988<Time_E>"' in cap.render()


def test_image_captions_given_win_and_keep_their_anchor():
    segs = [Segment("A", 0, 1, "Hi."), Segment("B", 1, 2, "Hello.")]
    cap, flags = assemble_caption(
        ["A", "B"], segs, descriptive=DESCRIPTIVE,
        image_captions=["<img1>: An older man, identified as <sub1>.", "A young woman"])
    assert cap.image_captions == {"<img1>": "An older man, identified as <sub1>.",
                                  "<img2>": "A young woman, identified as <sub2>."}
    assert flags == []
    # a caption naming another subject is dropped, not rebound
    cap, flags = assemble_caption(["A", "B"], segs, image_captions=["A man", "Looks like <sub1>"])
    assert cap.image_captions == {"<img1>": "A man, identified as <sub1>."}
    assert "image_caption_invalid" in flags and "image_captions_missing" in flags
    with pytest.raises(CaptionError, match="1 given for 2"):
        assemble_caption(["A", "B"], segs, image_captions=["only one"])


def test_flags_for_what_is_missing_or_dropped():
    segs = [Segment("A", 0.0, 1.0, "Words <sub2> [CO_ANALYSIS_END] with <E> markup."),
            Segment("OFFSCREEN", 1.0, 2.0, "Who said that?"),
            Segment("A", 2.0, 3.0, "   "), Segment("A", 3.0, 4.0, None)]
    bad = dict(DESCRIPTIVE, actions="<sub3> waves.", scene=42)
    cap, flags = assemble_caption(["A", "B"], segs, descriptive=bad)
    assert cap.joint == "<sub1> says, <S>Words with markup.<E>"
    assert cap.speaker_timestamps == {"<sub1>": [(0.0, 1.0)], "<sub2>": []}
    assert cap.actions == "" and cap.scene == "" and cap.appearance == DESCRIPTIVE["appearance"]
    assert flags == ["descriptive_field_invalid", "descriptive_fields_missing",
                     "empty_speech_segment", "silent_subject", "text_sanitized",
                     "unattributed_speech"]
    back = roundtrip(cap)
    assert back.subjects == ["<sub1>", "<sub2>"]
    assert [u.subject for u in back.speech()] == ["<sub1>"]
    cap, flags = assemble_caption(["A"], [])
    assert cap.joint == "" and "no_speech" in flags and "silent_subject" not in flags
    assert roundtrip(cap).speech() == []


def test_segments_from_manifest_rows_and_bad_input():
    df = pd.DataFrame({"speaker": ["S1", "S0"], "start_s": [1.5, 0.0], "end_s": [2.0, 1.0],
                       "text": ["second", np.nan], "segment_id": ["b", "a"]})
    cap, flags = assemble_caption(["S0", "S1"], list(df.itertuples(index=False)))
    assert cap.joint == "<sub2> says, <S>second<E>" and "empty_speech_segment" in flags
    cap2, _ = assemble_caption(["S0", "S1"], df.to_dict("records"))
    assert cap2.render() == cap.render()
    assert format_transcript(["S0", "S1"], [("S1", 1.5, 2.0, "second"), ("S0", 0, 1, " hi ")]) \
        == "<sub1> [0.00-1.00 s]: hi\n<sub2> [1.50-2.00 s]: second"
    with pytest.raises(CaptionError, match="bad times"):
        assemble_caption(["A"], [("A", 2.0, 1.0, "backwards")])
    with pytest.raises(CaptionError, match="repeat"):
        assemble_caption(["A", "A"], [])
    with pytest.raises(CaptionError, match="at least one subject"):
        assemble_caption([], [])


# ---------------------------------------------------------------------------------------
# the caption VLM against a chat-completions stub


def images(n, h=36, w=48, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        img = np.zeros((h, w, 3), np.uint8)
        img[:] = rng.integers(0, 256, 3, dtype=np.uint8)  # flat colours survive JPEG
        out.append(img)
    return out


def answer(**over):
    obj = {"image_captions": ["A man in a grey suit", "A woman with a red scarf"],
           "scene": "A bright office.", "appearance": "<sub1> wears grey; <sub2> a red scarf.",
           "actions": "<sub1> talks to <sub2>.", "audio_description": "Two voices."}
    obj.update(over)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


@pytest.fixture
def vlm_env(judge, monkeypatch):
    url, st = judge
    monkeypatch.setenv("OMNI_CAPTION_BASE_URL", url)
    monkeypatch.setenv("OMNI_CAPTION_MODEL", "stub-vl-7b")
    monkeypatch.setenv("OMNI_CAPTION_API_KEY", "sk-cap")
    monkeypatch.setattr(chat_mod, "_sleep", lambda s: None)
    return st


def test_describe_sends_frames_faces_transcript_and_retries_a_missing_key(vlm_env):
    st = vlm_env
    vlm = CaptionVLM.from_env()
    assert vlm is not None and vlm.info()["model"] == "stub-vl-7b"
    frames, faces = images(3), images(2, 64, 64, seed=1)
    transcript = format_transcript(["A", "B"], [("A", 0, 1.2, "How are you?"),
                                                ("B", 1.3, 2.0, "Fine.")])
    st["script"] = [answer(actions=None), "```json\n" + answer() + "\n```"]
    got = vlm.describe(frames, faces, transcript)
    assert got == {"scene": "A bright office.", "appearance": "<sub1> wears grey; <sub2> a red "
                   "scarf.", "actions": "<sub1> talks to <sub2>.",
                   "audio_description": "Two voices.",
                   "image_captions": {"<img1>": "A man in a grey suit",
                                      "<img2>": "A woman with a red scarf"}}
    assert len(st["requests"]) == 2  # the reply without "actions" was asked for again
    req = st["requests"][0]
    assert req["path"] == "/v1/chat/completions" and req["auth"] == "Bearer sk-cap"
    body = req["body"]
    assert body["model"] == "stub-vl-7b" and body["temperature"] == 0
    assert "sk-cap" not in json.dumps(body)
    system, user = body["messages"]
    assert system == {"role": "system", "content": DEFAULT_PROMPT}
    parts = user["content"]
    assert "<sub1> [0.00-1.20 s]: How are you?" in parts[0]["text"]
    assert '"image_captions"' in parts[-1]["text"] and '"audio_description"' in parts[-1]["text"]
    urls = [p["image_url"]["url"] for p in parts if p["type"] == "image_url"]
    assert len(urls) == 2 + 3
    sent = []
    for url in urls:
        head, data = url.split(",", 1)
        assert head == "data:image/jpeg;base64"
        sent.append(np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB")))
    for got_img, want in zip(sent, faces + frames, strict=True):  # faces first, then frames
        assert got_img.shape == want.shape
        assert np.abs(got_img.astype(int) - want).mean() < 3
    labels = [p["text"] for p in parts if p["type"] == "text"]
    assert "Reference photo <img2> of <sub2>:" in labels and "3 frames" in labels[-2]
    # what the VLM said goes into the caption; speech comes from the segments
    cap, flags = assemble_caption(["A", "B"], [("A", 0, 1.2, "How are you?"),
                                               ("B", 1.3, 2.0, "Fine.")], descriptive=got)
    assert flags == []
    assert cap.image_captions["<img2>"] == "A woman with a red scarf, identified as <sub2>."
    roundtrip(cap)


def test_describe_rejects_wrong_counts_and_unknown_tags_then_fails(vlm_env):
    st = vlm_env
    vlm = CaptionVLM(CaptionVLMConfig(max_retries=2, json_mode=True))
    st["script"] = [answer(image_captions=["only one"]), answer(actions="<sub3> waves."),
                    answer(scene=["not", "a", "string"])]
    with pytest.raises(ChatError, match="caption VLM .* after 3 tries: answer key 'scene'"):
        vlm.describe(images(2), images(2), "")
    assert len(st["requests"]) == 3
    assert st["requests"][0]["body"]["response_format"] == {"type": "json_object"}
    assert "(no speech)" in st["requests"][0]["body"]["messages"][1]["content"][0]["text"]


def test_from_env_none_without_endpoint_and_prompt_file(judge, tmp_path, monkeypatch):
    url, st = judge
    for var in ("OMNI_CAPTION_BASE_URL", "OMNI_CAPTION_MODEL", "OMNI_CAPTION_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    assert CaptionVLM.from_env() is None
    prompt = tmp_path / "caption_prompt.txt"
    prompt.write_text("Our own caption rubric.")
    vlm = CaptionVLM.from_env(CaptionVLMConfig(base_url=url, model="m", prompt_file=str(prompt),
                                               max_retries=0))
    assert vlm is not None and vlm.info()["prompt"] == str(prompt)
    st["script"] = [answer(image_captions=["A man"], appearance="<sub1> wears grey.",
                           actions="<sub1> waves.")]
    got = vlm.describe(images(1), images(1), "<sub1> [0.00-1.00 s]: hi")
    assert got["image_captions"] == {"<img1>": "A man"}
    assert st["requests"][0]["body"]["messages"][0]["content"] == "Our own caption rubric."
    assert st["requests"][0]["auth"] is None
    with pytest.raises(ConfigError, match="caption prompt file .*missing.txt"):
        CaptionVLM(CaptionVLMConfig(prompt_file=str(tmp_path / "missing.txt")))
