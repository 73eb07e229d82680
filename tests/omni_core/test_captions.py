"""Structured captions in the released block format (our own texts, the release's layout)."""

import json

import pytest

from omni_core.captions import (
    CaptionError,
    StructuredCaption,
    parse_caption,
    parse_clock,
    parse_timespan,
    read_caption,
)

TWO = (
    "[IMAGE_CAPTIONS_START]\n<img1>: A bearded man in a grey coat, identified as <sub1>.\n"
    "<img2>: A woman with short red hair, identified as <sub2>.\n[IMAGE_CAPTIONS_END]\n\n"
    "[FINAL_VIDEO_CAPTION_START]\n[VISUAL_DESCRIPTION_START]\n"
    "**Overall Environment/Scene**: A quiet library at noon, sunlight on the shelves.\n"
    "**Main Characters/Subjects Appearance**: <sub1>, on the left, wears a grey coat.\n"
    "<sub2>, on the right, wears a green scarf.\n"
    "**Main Characters/Subjects Actions**: <sub1> turns to <sub2> and smiles.\n"
    "[VISUAL_DESCRIPTION_END]\n\n[AUDIO_DESCRIPTION_START]\nPages rustle softly. <sub1> speaks "
    "in a low voice.\n[AUDIO_DESCRIPTION_END]\n\n[CO_ANALYSIS_START]\n<sub1> leans toward "
    "<sub2> and whispers, <S>Did you find the old map?<E> <sub2> nods and answers, <S>It was "
    "behind the atlas,<E> then adds, <S>right where you said.<E>\n[CO_ANALYSIS_END]\n"
    "[FINAL_VIDEO_CAPTION_END]\n\n[SPEAKER_TIMESTAMPS_START]\n{\n"
    '    "<sub1>": ["<Time_S>00:01-00:03<Time_E>"],\n'
    '    "<sub2>": ["<Time_S>00.03.500-00.05.000<Time_E>", "<Time_S>00:05.2-00:06<Time_E>"]\n'
    "}\n[SPEAKER_TIMESTAMPS_END]"
)


def test_parse_released_layout(tmp_path):
    path = tmp_path / "20.json"
    path.write_text(json.dumps(TWO))  # released files hold one JSON string
    cap = read_caption(path)
    assert cap.subjects == ["<sub1>", "<sub2>"]
    assert cap.image_captions["<img2>"].startswith("A woman with short red hair")
    assert cap.scene == "A quiet library at noon, sunlight on the shelves."
    assert cap.appearance.endswith("<sub2>, on the right, wears a green scarf.")
    assert cap.actions == "<sub1> turns to <sub2> and smiles."
    assert cap.audio_description.startswith("Pages rustle softly.")
    assert cap.speaker_timestamps == {"<sub1>": [(1.0, 3.0)], "<sub2>": [(3.5, 5.0), (5.2, 6.0)]}


def test_speech_spans_and_speakers():
    cap = parse_caption(TWO)
    speech = cap.speech()
    assert [(u.subject, u.text) for u in speech] == [
        ("<sub1>", "Did you find the old map?"),  # not <sub2>, the object of "leans toward"
        ("<sub2>", "It was behind the atlas,"),
        ("<sub2>", "right where you said."),  # no anchor before it: same speaker
    ]
    assert [(u.start_s, u.end_s) for u in speech] == [(1.0, 3.0), (3.5, 5.0), (5.2, 6.0)]
    assert cap.speech_text("<sub2>") == "It was behind the atlas, right where you said."
    assert cap.speech_text() == ("Did you find the old map? It was behind the atlas, right "
                                 "where you said.")


def test_prompt_text_is_what_the_release_encodes():
    prompt = parse_caption(TWO).prompt_text()
    assert "[" not in prompt and "Time_S" not in prompt
    assert "Pages rustle" not in prompt  # audio description dropped
    assert "<S>Did you find the old map?<E>" in prompt  # speech kept, as the release does
    assert "**Overall Environment/Scene**: A quiet library" in prompt
    assert "\n\n" not in prompt


def test_render_round_trip():
    cap = parse_caption(TWO)
    again = parse_caption(cap.render())
    assert again == cap
    built = StructuredCaption(image_captions={"<img1>": "A man, identified as <sub1>."},
                              scene="A street.", joint="<sub1> says, <S>Hi.<E>",
                              speaker_timestamps={"<sub1>": [(0.5, 1.25)]})
    assert parse_caption(built.render()).speech()[0].start_s == 0.5


def test_single_subject_without_anchor_before_speech():
    cap = parse_caption("[IMAGE_CAPTIONS_START]\n<img1>: A man, identified as <sub1>.\n"
                        "[IMAGE_CAPTIONS_END]\n[CO_ANALYSIS_START]\nHe says, <S>Hello.<E>\n"
                        "[CO_ANALYSIS_END]")
    assert cap.speech()[0].subject == "<sub1>" and cap.speech()[0].start_s is None


@pytest.mark.parametrize("text,seconds", [
    ("00:02", 2.0), ("01:02.5", 62.5), ("1:00:00", 3600.0), ("00.05.000", 5.0),
    ("00.03.25", 3.25), ("7", 7.0),
])
def test_clock_formats(text, seconds):
    assert parse_clock(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["00:05-00:02", "00:01", "aa-bb"])
def test_bad_timespans(bad):
    with pytest.raises(CaptionError):
        parse_timespan(bad)


def test_curation_documents_carry_the_caption_under_a_key(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"clip_id": "x", "caption": TWO}))
    assert read_caption(tmp_path / "c.json") == parse_caption(TWO)


def test_bad_files(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"not": "a string"}))
    with pytest.raises(CaptionError, match="expected a JSON string"):
        read_caption(tmp_path / "a.json")
    bad_stamps = TWO.replace('"<sub1>": [', '"<sub1>": [[')
    with pytest.raises(CaptionError, match="not JSON"):
        parse_caption(bad_stamps)
    with pytest.raises(CaptionError, match="cannot read"):
        read_caption(tmp_path / "missing.json")
