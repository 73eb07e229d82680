"""Structured captions in the released DreamID-Omni format: parse, query, render.

A released caption file (``<set>/captions/<id>.json``) holds one JSON string made of bracketed
blocks::

    [IMAGE_CAPTIONS_START]
    <img1>: A young man with wavy brown hair, identified as <sub1>.
    [IMAGE_CAPTIONS_END]
    [FINAL_VIDEO_CAPTION_START]
    [VISUAL_DESCRIPTION_START]
    **Overall Environment/Scene**: ...
    **Main Characters/Subjects Appearance**: ...
    **Main Characters/Subjects Actions**: ...
    [VISUAL_DESCRIPTION_END]
    [AUDIO_DESCRIPTION_START] ... [AUDIO_DESCRIPTION_END]
    [CO_ANALYSIS_START] <sub1> ... says, <S>spoken words<E> ... [CO_ANALYSIS_END]
    [FINAL_VIDEO_CAPTION_END]
    [SPEAKER_TIMESTAMPS_START] {"<sub1>": ["<Time_S>00:02-00:05<Time_E>"]} [SPEAKER_TIMESTAMPS_END]

Timestamps come as ``mm:ss`` (``00:02-00:05``) or ``mm.ss.mmm`` (``00.00.000-00.05.000``) in the
released test cases; both parse. Curation writes captions in this same format
(:meth:`StructuredCaption.render`), the evaluator reads speech and text fields from it, and the
trainer feeds :meth:`StructuredCaption.prompt_text` (what the released inference keeps) to the
text encoder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import OmniError

BLOCKS = ("IMAGE_CAPTIONS", "FINAL_VIDEO_CAPTION", "VISUAL_DESCRIPTION", "AUDIO_DESCRIPTION",
          "CO_ANALYSIS", "SPEAKER_TIMESTAMPS")
VISUAL_FIELDS = {
    "scene": "Overall Environment/Scene",
    "appearance": "Main Characters/Subjects Appearance",
    "actions": "Main Characters/Subjects Actions",
}
SUBJECT_RE = re.compile(r"<sub(\d+)>")
SPEECH_RE = re.compile(r"<S>(.*?)<E>", re.DOTALL)
_TIME_RE = re.compile(r"<Time_S>\s*(.*?)\s*<Time_E>", re.DOTALL)


class CaptionError(OmniError):
    """A structured caption does not follow the released format."""


@dataclass(frozen=True)
class Utterance:
    """Words one subject says (a ``<S>...<E>`` span) and when, if the caption says."""

    subject: str  # "<sub1>"
    text: str
    start_s: float | None = None
    end_s: float | None = None


@dataclass
class StructuredCaption:
    image_captions: dict[str, str] = field(default_factory=dict)  # "<img1>" -> description
    scene: str = ""
    appearance: str = ""
    actions: str = ""
    audio_description: str = ""
    joint: str = ""  # the CO_ANALYSIS block: actions + speech as <S>...<E>
    speaker_timestamps: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    @property
    def subjects(self) -> list[str]:
        """``<subK>`` anchors, ordered by K, from every field that mentions one."""
        text = " ".join([*self.image_captions.values(), self.scene, self.appearance,
                         self.actions, self.audio_description, self.joint,
                         *self.speaker_timestamps])
        return [f"<sub{k}>" for k in sorted({int(k) for k in SUBJECT_RE.findall(text)})]

    def speech(self) -> list[Utterance]:
        """The ``<S>...<E>`` spans of the joint caption, each attributed to its speaker.

        The speaker of a span is the first ``<subK>`` in the text between the previous span
        and this one (the grammatical subject of "``<sub1>`` looks at ``<sub2>`` and says,
        <S>..."). A span with no anchor before it keeps the previous speaker. The k-th span of
        a subject takes that subject's k-th timestamp, when the caption has one.
        """
        out: list[Utterance] = []
        pos, speaker = 0, None
        seen: dict[str, int] = {}
        for m in SPEECH_RE.finditer(self.joint):
            anchors = SUBJECT_RE.findall(self.joint[pos:m.start()])
            if anchors:
                speaker = f"<sub{anchors[0]}>"
            if speaker is None:
                subs = self.subjects
                speaker = subs[0] if len(subs) == 1 else None
            if speaker is None:
                raise CaptionError(f"speech span {m.group(1)!r} has no speaker anchor")
            k = seen.get(speaker, 0)
            seen[speaker] = k + 1
            spans = self.speaker_timestamps.get(speaker, [])
            start, end = spans[k] if k < len(spans) else (None, None)
            out.append(Utterance(speaker, " ".join(m.group(1).split()), start, end))
            pos = m.end()
        return out

    def speech_text(self, subject: str | None = None) -> str:
        """All words spoken (by ``subject``, or by everyone) in caption order, one string."""
        return " ".join(u.text for u in self.speech() if subject in (None, u.subject))

    def prompt_text(self) -> str:
        """The text the released inference feeds the text encoder: every block but the speaker
        timestamps and the audio description, block tags removed, blank lines collapsed."""
        raw = self.render()
        raw = re.sub(r"\[SPEAKER_TIMESTAMPS_START\].*?\[SPEAKER_TIMESTAMPS_END\]", "", raw,
                     flags=re.DOTALL)
        raw = re.sub(r"\[AUDIO_DESCRIPTION_START\].*?\[AUDIO_DESCRIPTION_END\]", "", raw,
                     flags=re.DOTALL)
        raw = re.sub(r"\[[A-Z_]+\]", "", raw)
        return re.sub(r"\n\s*\n", "\n", raw).strip()

    def render(self) -> str:
        """The caption in the released block format (what curation writes)."""
        imgs = "\n".join(f"{k}: {v}" for k, v in self.image_captions.items())
        visual = "\n".join(f"**{VISUAL_FIELDS[f]}**: {getattr(self, f)}" for f in VISUAL_FIELDS)
        stamps = {s: [f"<Time_S>{_fmt(a)}-{_fmt(b)}<Time_E>" for a, b in spans]
                  for s, spans in self.speaker_timestamps.items()}
        return (
            f"[IMAGE_CAPTIONS_START]\n{imgs}\n[IMAGE_CAPTIONS_END]\n\n"
            "[FINAL_VIDEO_CAPTION_START]\n"
            f"[VISUAL_DESCRIPTION_START]\n{visual}\n[VISUAL_DESCRIPTION_END]\n\n"
            f"[AUDIO_DESCRIPTION_START]\n{self.audio_description}\n[AUDIO_DESCRIPTION_END]\n\n"
            f"[CO_ANALYSIS_START]\n{self.joint}\n[CO_ANALYSIS_END]\n"
            "[FINAL_VIDEO_CAPTION_END]\n\n"
            f"[SPEAKER_TIMESTAMPS_START]\n{json.dumps(stamps, indent=4)}\n"
            "[SPEAKER_TIMESTAMPS_END]"
        )


def parse_caption(text: str) -> StructuredCaption:
    """Parse the released block format. Missing blocks are empty; a malformed speaker
    timestamp block is a CaptionError naming what is wrong."""
    cap = StructuredCaption()
    imgs = _block(text, "IMAGE_CAPTIONS")
    for line in imgs.splitlines():
        m = re.match(r"\s*(<img\d+>)\s*:\s*(.*\S)", line)
        if m:
            cap.image_captions[m.group(1)] = m.group(2)
    visual = _block(text, "VISUAL_DESCRIPTION")
    for name, title in VISUAL_FIELDS.items():
        m = re.search(rf"\*\*{re.escape(title)}\*\*[ \t]*:[ \t]*(.*?)(?=\n\s*\*\*|\Z)", visual,
                      re.DOTALL)
        if m:
            setattr(cap, name, " ".join(m.group(1).split()))
    cap.audio_description = " ".join(_block(text, "AUDIO_DESCRIPTION").split())
    cap.joint = " ".join(_block(text, "CO_ANALYSIS").split())
    stamps = _block(text, "SPEAKER_TIMESTAMPS").strip()
    if stamps:
        try:
            data = json.loads(stamps)
        except json.JSONDecodeError as exc:
            raise CaptionError(f"speaker timestamps are not JSON ({exc.msg})") from exc
        if not isinstance(data, dict):
            raise CaptionError("speaker timestamps must map <subK> to a list of spans")
        for subject, spans in data.items():
            spans = spans if isinstance(spans, list) else [spans]
            cap.speaker_timestamps[subject] = [parse_timespan(s) for s in spans]
    return cap


def read_caption_text(path: str | Path) -> str:
    """The raw caption text of a file: a JSON string (released layout), a JSON object whose
    ``caption`` field holds it (what curation writes, beside the subjects and flags), or plain
    block text."""
    p = Path(path)
    try:
        raw = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CaptionError(f"{p}: cannot read ({exc.strerror})") from exc
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    if isinstance(value, dict) and isinstance(value.get("caption"), str):
        value = value["caption"]
    if not isinstance(value, str):
        raise CaptionError(f"{p}: expected a JSON string holding the caption blocks (or an "
                           "object with a 'caption' string)")
    return value


def read_caption(path: str | Path) -> StructuredCaption:
    """Parse a caption file (see :func:`read_caption_text`)."""
    try:
        return parse_caption(read_caption_text(path))
    except CaptionError as exc:
        msg = str(exc)
        raise CaptionError(msg if msg.startswith(str(path)) else f"{path}: {msg}") from None


def parse_timespan(span: str) -> tuple[float, float]:
    """``<Time_S>00:02-00:05<Time_E>`` or ``00.00.000-00.05.000`` -> (start_s, end_s)."""
    m = _TIME_RE.search(span)
    body = (m.group(1) if m else span).strip()
    parts = body.split("-")
    if len(parts) != 2:
        raise CaptionError(f"timestamp {span!r}: expected START-END")
    start, end = (parse_clock(x) for x in parts)
    if end < start:
        raise CaptionError(f"timestamp {span!r}: ends before it starts")
    return start, end


def parse_clock(text: str) -> float:
    """``ss``, ``mm:ss``, ``hh:mm:ss`` (``.mmm`` allowed) or the dotted ``mm.ss.mmm``."""
    t = text.strip()
    if re.fullmatch(r"\d+\.\d+\.\d+", t):  # mm.ss.mmm
        mm, ss, ms = t.split(".")
        return int(mm) * 60 + int(ss) + int(ms) / 10 ** len(ms)
    try:
        fields = [float(x) for x in t.split(":")]
    except ValueError:
        raise CaptionError(f"time {text!r} is not a clock time") from None
    if not 1 <= len(fields) <= 3:
        raise CaptionError(f"time {text!r} is not a clock time")
    seconds = 0.0
    for f in fields:
        seconds = seconds * 60 + f
    return seconds


def _block(text: str, name: str) -> str:
    m = re.search(rf"\[{name}_START\](.*?)\[{name}_END\]", text, re.DOTALL)
    return m.group(1).strip() if m else ""


def _fmt(seconds: float) -> str:
    m, s = divmod(round(seconds * 1000), 60_000)
    return f"{m:02d}:{s / 1000:06.3f}"
