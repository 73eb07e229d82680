import pytest

from evaluation.texts import caption_text, plain
from omni_core.captions import parse_caption

CAP = parse_caption(
    "[IMAGE_CAPTIONS_START]\n<img1>: A tall man, identified as <sub1>.\n[IMAGE_CAPTIONS_END]\n"
    "[VISUAL_DESCRIPTION_START]\n**Overall Environment/Scene**: A windy pier at dawn.\n"
    "**Main Characters/Subjects Appearance**: <sub1> wears a yellow raincoat.\n"
    "**Main Characters/Subjects Actions**: <sub1> points at the boats.\n"
    "[VISUAL_DESCRIPTION_END]\n[AUDIO_DESCRIPTION_START]\nGulls cry over the waves; <sub1>'s "
    "voice is hoarse.\n[AUDIO_DESCRIPTION_END]\n[CO_ANALYSIS_START]\n<sub1> shouts, "
    "<S>The tide is turning!<E>\n[CO_ANALYSIS_END]")


@pytest.mark.parametrize("field,text", [
    ("visual", "A windy pier at dawn. a person wears a yellow raincoat. a person points at the "
               "boats."),
    ("scene", "A windy pier at dawn."),
    ("actions", "a person points at the boats."),
    ("audio", "Gulls cry over the waves; a person's voice is hoarse."),
])
def test_text_fields(field, text):
    assert caption_text(CAP, field) == text


def test_prompt_field_has_no_speech_or_tags():
    text = caption_text(CAP, "prompt")
    assert "tide" not in text and "<" not in text and "**" not in text
    assert text.startswith("A tall man, identified as a person.")


def test_empty_audio_block_and_bad_field():
    assert caption_text(parse_caption(""), "audio") == "a person speaking"
    with pytest.raises(ValueError, match="unknown text field"):
        caption_text(CAP, "title")
    assert plain("<sub2> says, <S>hi<E> twice") == "a person says, twice"
