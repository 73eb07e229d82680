"""Which part of a structured caption each text metric reads (a documented choice).

The paper does not say which text it fed ViCLIP and CLAP; a structured caption holds several.
Our defaults, each selectable with the metric's ``text_field`` option:

- ViCLIP (text-video): ``visual`` = the visual description's scene, appearance and actions, in
  that order. ViCLIP reads 32 tokens, so in practice the scene sentence and the start of the
  appearance decide the score; speech (``<S>...<E>``) is not visible and is left out.
- CLAP (text-audio): ``audio`` = the audio description (ambient sound, voice qualities): the
  only block written about the sound. An empty block falls back to ``speech sound`` wording.
- WER: the reference is the words inside ``<S>...<E>``, per speaker (see
  :meth:`omni_core.captions.StructuredCaption.speech`).

Anchors (``<sub1>``) mean nothing to a CLIP/RoBERTa tokenizer; they become ``a person``.
"""

from __future__ import annotations

import re

from omni_core.captions import SPEECH_RE, SUBJECT_RE, StructuredCaption

TEXT_FIELDS = ("visual", "scene", "actions", "audio", "prompt")


def plain(text: str) -> str:
    """Anchors to ``a person``, speech spans and image tags removed, spaces collapsed."""
    text = SPEECH_RE.sub("", text)
    text = SUBJECT_RE.sub("a person", text)
    text = re.sub(r"<img\d+>\s*:?", "", text)
    text = text.replace("**", "")
    return " ".join(text.split())


def caption_text(caption: StructuredCaption, field: str) -> str:
    if field == "visual":
        return plain(" ".join(x for x in (caption.scene, caption.appearance, caption.actions)
                              if x))
    if field == "scene":
        return plain(caption.scene)
    if field == "actions":
        return plain(caption.actions)
    if field == "audio":
        return plain(caption.audio_description) or "a person speaking"
    if field == "prompt":
        return plain(caption.prompt_text())
    raise ValueError(f"unknown text field {field!r}; use one of {TEXT_FIELDS}")
