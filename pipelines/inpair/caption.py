"""The ``caption`` stage of in-pair curation: the structured caption of a clip (released block
format).

A caption binds subject k (the k-th speaker label of the clip, reference image k) to the
anchors ``<subK>`` / ``<imgK>`` in every field (paper: "structured captions"). Two kinds of
content go into it, kept apart on purpose:

- what curation measured: who says which words when. :func:`assemble_caption` writes it
  deterministically from the speech segments: the joint caption (CO_ANALYSIS) carries every
  utterance as ``<subK> says, <S>words<E>`` in time order, and the speaker timestamps give each
  subject's spans, rounded to the millisecond, in the same order (so
  :meth:`~omni_core.captions.StructuredCaption.speech` pairs each span with its time);
- what a vision-language model describes: scene, appearance, actions, audio description and
  one short caption per reference image. :class:`CaptionVLM` asks an OpenAI-compatible
  endpoint for them (frames, face crops and transcript in; a strict JSON object out). Without
  an answer these fields stay empty and the caption is flagged: nothing is invented.

Every caption comes with a list of flags (see ``FLAG_*``) that later filters can act on.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from omni_core.captions import CaptionError, StructuredCaption
from omni_core.chat import ChatConfig, ChatEnv, MalformedAnswer, chat_json, image_part, text_part
from omni_core.errors import ConfigError
from omni_core.urls import redact

CAPTION_ENV = ChatEnv("OMNI_CAPTION_BASE_URL", "OMNI_CAPTION_MODEL", "OMNI_CAPTION_API_KEY")
TEXT_FIELDS = ("scene", "appearance", "actions", "audio_description")

FLAG_DESCRIPTIVE_MISSING = "descriptive_fields_missing"  # a descriptive text field is empty
FLAG_DESCRIPTIVE_INVALID = "descriptive_field_invalid"  # a field named an unknown anchor: dropped
FLAG_IMAGE_CAPTIONS_MISSING = "image_captions_missing"  # some subject has no image caption
FLAG_IMAGE_CAPTION_INVALID = "image_caption_invalid"  # names another subject: dropped
FLAG_NO_SPEECH = "no_speech"  # no segment with words from any subject
FLAG_SILENT_SUBJECT = "silent_subject"  # a subject says nothing in the clip
FLAG_UNATTRIBUTED_SPEECH = "unattributed_speech"  # words of a speaker that is no subject: dropped
FLAG_EMPTY_SEGMENT = "empty_speech_segment"  # a segment without words: dropped
FLAG_TEXT_SANITIZED = "text_sanitized"  # caption markup removed from some text

# markup of the caption format that must not appear inside a field's text
_MARKUP_RE = re.compile(r"<(?:S|E|Time_S|Time_E)>|\[[A-Z_]+_(?:START|END)\]|\*\*")
_ANCHOR_RE = re.compile(r"<(sub|img)(\d+)>")


class Segment(NamedTuple):
    """Words one speaker says, in clip time (a ``speech_segments`` row)."""

    speaker: str
    start_s: float
    end_s: float
    text: str | None


def assemble_caption(subjects: Sequence[str], segments: Sequence[Any], *,
                     image_captions: Mapping[str, str] | Sequence[str] | None = None,
                     descriptive: Mapping[str, Any] | None = None,
                     ) -> tuple[StructuredCaption, list[str]]:
    """The structured caption of a clip and its flags (sorted, unique).

    ``subjects``: speaker labels in subject order (label k-1 is ``<subK>``, image ``<imgK>``).
    ``segments``: :class:`Segment` s, 4-tuples, mappings or rows with ``speaker``, ``start_s``,
    ``end_s`` and ``text``. ``image_captions``: one short description per subject (a list in
    subject order, or a mapping keyed ``<imgK>``); each becomes ``<imgK>: ..., identified as
    <subK>.`` unless it already names ``<subK>``. ``descriptive``: the VLM's fields
    (:meth:`CaptionVLM.describe`); its ``image_captions`` are used when none are given.
    Raises :class:`~omni_core.captions.CaptionError` for bad subjects or segment times.
    """
    subjects = list(subjects)
    if not subjects:
        raise CaptionError("a caption needs at least one subject")
    if len(set(subjects)) != len(subjects):
        raise CaptionError(f"subjects repeat a speaker label: {subjects}")
    n = len(subjects)
    anchor = {label: f"<sub{k}>" for k, label in enumerate(subjects, start=1)}
    flags: set[str] = set()
    cap = StructuredCaption()

    # speech: joint caption and speaker timestamps, both in time order
    spoken = []
    for i, seg in enumerate(_segments(segments)):
        if seg.speaker not in anchor:
            flags.add(FLAG_UNATTRIBUTED_SPEECH)
            continue
        text = _clean(seg.text or "", flags, anchors=True)
        if not text:
            flags.add(FLAG_EMPTY_SEGMENT)
            continue
        start, end = round(seg.start_s, 3), round(seg.end_s, 3)
        spoken.append((start, end, subjects.index(seg.speaker), i, anchor[seg.speaker], text))
    spoken.sort()
    cap.joint = " ".join(f"{sub} says, <S>{text}<E>" for *_, sub, text in spoken)
    cap.speaker_timestamps = {sub: [] for sub in anchor.values()}
    for start, end, _, _, sub, _ in spoken:
        cap.speaker_timestamps[sub].append((start, end))
    if not spoken:
        flags.add(FLAG_NO_SPEECH)
    elif any(not spans for spans in cap.speaker_timestamps.values()):
        flags.add(FLAG_SILENT_SUBJECT)

    # descriptive fields: only what the VLM gave, checked and cleaned
    descriptive = dict(descriptive or {})
    for name in TEXT_FIELDS:
        value = descriptive.get(name)
        text = _clean(value, flags) if isinstance(value, str) else ""
        if text and not _anchors_ok(text, n):
            flags.add(FLAG_DESCRIPTIVE_INVALID)
            text = ""
        setattr(cap, name, text)
        if not text:
            flags.add(FLAG_DESCRIPTIVE_MISSING)

    # image captions: given ones first, else the VLM's
    source = image_captions if image_captions is not None else descriptive.get("image_captions")
    for k, desc in enumerate(_per_image(source, n), start=1):
        text = _image_caption(k, desc, flags)
        if text:
            cap.image_captions[f"<img{k}>"] = text
    if len(cap.image_captions) < n:
        flags.add(FLAG_IMAGE_CAPTIONS_MISSING)
    return cap, sorted(flags)


def format_transcript(subjects: Sequence[str], segments: Sequence[Any]) -> str:
    """The transcript as the VLM sees it: one ``<subK> [start-end s]: words`` line per segment
    with words, in time order; speakers that are no subject are left out."""
    anchor = {label: f"<sub{k}>" for k, label in enumerate(subjects, start=1)}
    rows = sorted((s.start_s, s.end_s, anchor[s.speaker], " ".join((s.text or "").split()))
                  for s in _segments(segments) if s.speaker in anchor and (s.text or "").strip())
    return "\n".join(f"{sub} [{a:.2f}-{b:.2f} s]: {text}" for a, b, sub, text in rows)


# ---------------------------------------------------------------------------------------
# the vision-language model that writes the descriptive fields

DEFAULT_PROMPT = """\
You write the descriptive parts of a structured caption for a short video clip of people
talking. Each person is bound to a tag: <sub1>, <sub2>, ... The user gives you one reference
face photo per person (photo <imgK> shows <subK>), frames of the clip in time order, and the
transcript of who says what and when.

Write, in English, plain prose, present tense:
- image_captions: for each reference photo in order, one short phrase describing the person
  as seen in that photo (age range, hair, clothing, expression); no tags, no names.
- scene: the overall environment: place, setting, lighting, camera framing.
- appearance: the main people's appearance, referring to each person only by their tag.
- actions: what the people do over the clip (posture, gestures, gaze, who turns to whom),
  referring to each person only by their tag. Do not quote the spoken words.
- audio_description: the sound of the clip as far as the transcript and the frames make it
  evident (how many voices, the kind of exchange, visible sound sources); an empty string if
  nothing is evident.

Describe only what the frames, photos and transcript show. Never guess names, identities or
anything not visible. Use no tags other than the ones given. If a field cannot be filled from
the input, make it an empty string."""


@dataclass
class CaptionVLMConfig(ChatConfig):
    """The caption VLM endpoint (``OMNI_CAPTION_BASE_URL`` / ``OMNI_CAPTION_MODEL`` when unset;
    key from ``OMNI_CAPTION_API_KEY`` only) and what is sent to it."""

    prompt_file: str | None = None  # replaces DEFAULT_PROMPT (the system message)
    max_image_side: int = 512  # frames and faces are downscaled to this before sending
    max_tokens: int = 1024
    json_mode: bool = False  # also send response_format json_object (servers that support it)
    env: ChatEnv | None = field(default=CAPTION_ENV, kw_only=True)


class CaptionVLM:
    """Asks a vision-language model for a clip's descriptive caption fields."""

    def __init__(self, config: CaptionVLMConfig | None = None) -> None:
        self.config = config or CaptionVLMConfig()
        if self.config.prompt_file:
            try:
                self.prompt = Path(self.config.prompt_file).read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(f"caption prompt file {self.config.prompt_file}: cannot read "
                                  f"({exc.strerror})") from None
        else:
            self.prompt = DEFAULT_PROMPT

    @classmethod
    def from_env(cls, config: CaptionVLMConfig | None = None) -> CaptionVLM | None:
        """A client when an endpoint and model are configured (config or environment), else
        None (captions are then written without descriptive fields, flagged)."""
        config = config or CaptionVLMConfig()
        return cls(config) if config.configured() else None

    def info(self) -> dict[str, Any]:
        """Provenance for the run record: endpoint (redacted), model and which prompt (never
        the key)."""
        base, model = self.config.resolved()
        return {"base_url": redact(base), "model": model,
                "prompt": self.config.prompt_file or "default",
                "prompt_sha256": hashlib.sha256(self.prompt.encode()).hexdigest()}

    def messages(self, frames: Sequence[np.ndarray], faces: Sequence[np.ndarray],
                 transcript: str) -> list[dict]:
        """The chat request: our prompt as system message; the transcript, the labelled faces,
        the frames and the exact JSON keys wanted as the user message."""
        n, side = len(faces), self.config.max_image_side
        tags = ", ".join(f"<sub{k}>" for k in range(1, n + 1))
        content = [text_part(f"{n} person(s): {tags}.\nTranscript (clip time):\n"
                             f"{transcript.strip() or '(no speech)'}")]
        for k, face in enumerate(faces, start=1):
            content.append(text_part(f"Reference photo <img{k}> of <sub{k}>:"))
            content.append(image_part(face, max_side=side))
        content.append(text_part(f"{len(frames)} frames of the clip in time order:"))
        content += [image_part(f, max_side=side) for f in frames]
        content.append(text_part(
            "Reply with one JSON object and nothing else, with exactly these keys: "
            f'"image_captions" (a list of {n} strings, one per reference photo in order), '
            + ", ".join(f'"{k}"' for k in TEXT_FIELDS) + " (strings)."))
        return [{"role": "system", "content": self.prompt},
                {"role": "user", "content": content}]

    def describe(self, frames: Sequence[np.ndarray], faces: Sequence[np.ndarray],
                 transcript: str) -> dict[str, Any]:
        """The descriptive fields for :func:`assemble_caption`: ``scene``, ``appearance``,
        ``actions``, ``audio_description`` (str) and ``image_captions`` (``<imgK>`` -> str).

        ``frames``: sampled clip frames, ``faces``: the reference face crops in subject order
        (RGB uint8). An answer that is not the JSON object asked for (a key missing, a wrong
        type, the wrong number of image captions, a tag of no subject) is asked for again;
        :class:`omni_core.chat.ChatError` when no valid answer comes.
        """
        if not faces:
            raise ValueError("describe needs the reference face of every subject")
        n = len(faces)

        def check(obj: dict) -> None:
            if len(obj["image_captions"]) != n:
                raise MalformedAnswer(f"answer has {len(obj['image_captions'])} image captions "
                                      f"for {n} reference photo(s)")
            for key in TEXT_FIELDS:
                if not _anchors_ok(obj[key], n):
                    raise MalformedAnswer(f"answer key {key!r} uses a tag of no subject")

        keys = {"image_captions": list[str], **{k: str for k in TEXT_FIELDS}}
        fmt = {"type": "json_object"} if self.config.json_mode else None
        obj = chat_json(self.config, self.messages(frames, faces, transcript), keys,
                        check=check, max_tokens=self.config.max_tokens, response_format=fmt,
                        what="caption VLM")
        out: dict[str, Any] = {k: obj[k].strip() for k in TEXT_FIELDS}
        out["image_captions"] = {f"<img{k}>": c.strip()
                                 for k, c in enumerate(obj["image_captions"], start=1)}
        return out


# ---------------------------------------------------------------------------------------


def _segments(segments: Sequence[Any]) -> list[Segment]:
    out = []
    for seg in segments:
        if isinstance(seg, Mapping):
            s = Segment(seg["speaker"], seg["start_s"], seg["end_s"], seg.get("text"))
        elif hasattr(seg, "speaker") and hasattr(seg, "start_s"):
            s = Segment(seg.speaker, seg.start_s, seg.end_s, getattr(seg, "text", None))
        else:
            s = Segment(*seg)
        start, end = float(s.start_s), float(s.end_s)
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise CaptionError(f"speech segment of {s.speaker!r} has bad times "
                               f"{s.start_s}-{s.end_s}")
        text = s.text if isinstance(s.text, str) else None  # NaN/None from a table: no words
        out.append(Segment(str(s.speaker), start, end, text))
    return out


def _clean(text: str, flags: set[str], anchors: bool = False) -> str:
    """One line without caption markup, and without anchors with ``anchors`` (spoken words
    name nobody by tag); flagged when some had to go."""
    cleaned = _MARKUP_RE.sub(" ", text)
    if anchors:
        cleaned = _ANCHOR_RE.sub(" ", cleaned)
    if cleaned != text:
        flags.add(FLAG_TEXT_SANITIZED)
    return " ".join(cleaned.split())


def _anchors_ok(text: str, n: int) -> bool:
    """Every ``<subK>``/``<imgK>`` in ``text`` has 1 <= K <= n."""
    return all(1 <= int(k) <= n for _, k in _ANCHOR_RE.findall(text))


def _per_image(source: Mapping[str, str] | Sequence[str] | None, n: int) -> list[str | None]:
    """Image descriptions in subject order (None where there is none)."""
    if source is None:
        return [None] * n
    if isinstance(source, Mapping):
        return [source.get(f"<img{k}>") for k in range(1, n + 1)]
    if isinstance(source, str):
        raise CaptionError("image_captions: expected a list or a mapping, got a string")
    items = list(source)
    if len(items) != n:
        raise CaptionError(f"image_captions: {len(items)} given for {n} subject(s)")
    return items


def _image_caption(k: int, desc: Any, flags: set[str]) -> str:
    """``<short description>, identified as <subK>.`` (or the text as given when it already
    names ``<subK>``); empty when there is nothing usable."""
    if not isinstance(desc, str):
        return ""
    text = _clean(desc, flags)
    text = re.sub(rf"^<img{k}>\s*:\s*", "", text)
    if not text:
        return ""
    if any(int(j) != k for _, j in _ANCHOR_RE.findall(text)):
        flags.add(FLAG_IMAGE_CAPTION_INVALID)
        return ""
    if f"<sub{k}>" in text:
        return text
    return f"{text.rstrip(' .,;')}, identified as <sub{k}>."
