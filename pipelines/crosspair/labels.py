"""Optional refinement of multi-person speaker labels by a multimodal LLM (cross-pair data).

The paper builds cross-pair data by cloning each speaker's voice from that speaker's speech;
it labels speakers in multi-person dialogue with diarization *plus* a multimodal LLM. Our
in-pair DAG already gives, per clip, the diarized ``speech_segments`` (segment_id, clip_id,
speaker, start_s, end_s, text), one reference face crop per associated speaker and the clip.
This module adds the second opinion:

- :func:`needs_refinement` -- only clips with two or more diarization speakers are asked about;
- :func:`refine_speakers` -- one chat request (keyframes, one face crop per diarization speaker
  labelled with its name, the numbered transcript ``[k] (start-end s) SPEAKER: words``) whose
  answer is the strict JSON object ``{"segments": [{"id": k, "speaker": NAME}, ...]}``: every
  line number exactly once, each speaker one of the given names or ``"unknown"``. A reply that
  breaks this contract is asked for again (:class:`omni_core.chat.MalformedAnswer`), then
  :class:`omni_core.chat.ChatError`. Nothing is guessed;
- :class:`Refinement` -- per segment the diarization label and the refined one, the segments
  whose label changed, and :meth:`Refinement.to_rows` for a manifest table;
- :func:`verdict` -- None when every segment overlapping a prompt span keeps the speaker the
  voice is cloned for, else a one-line reason (the cross-pair DAG writes it as an error row
  instead of cloning a voice whose speaker label is disputed).

The endpoint is configured like the caption writer's (:class:`LabelRefineConfig`): explicit
``base_url``/``model``, else ``OMNI_LABELS_BASE_URL`` / ``OMNI_LABELS_MODEL``; the key only
from ``OMNI_LABELS_API_KEY``. Refinement is off unless ``enabled``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from omni_core.chat import ChatConfig, ChatEnv, MalformedAnswer, chat_json, image_part, text_part
from omni_core.errors import ConfigError
from omni_core.urls import redact

LABELS_ENV = ChatEnv("OMNI_LABELS_BASE_URL", "OMNI_LABELS_MODEL", "OMNI_LABELS_API_KEY")
UNKNOWN = "unknown"  # the refined label of a segment the model cannot attribute

DEFAULT_PROMPT = """\
You check who speaks in a short video clip of several people talking. An automatic speaker
diarization has split the speech into numbered transcript lines and labelled each line with a
speaker name. The user gives you frames of the clip in time order, one reference face photo
per speaker name (when there is one), and the numbered transcript lines
"[k] (start-end s) NAME: words".

For every line decide which of the named people says it, from the frames (whose mouth moves,
who is turned to whom), the reference photos and the flow of the dialogue (questions and
answers, names used, who is addressed). Keep the diarization's name when the input does not
clearly show that it is wrong. Answer "unknown" only when the line is clearly none of the
named people or cannot be attributed to anyone at all.

Use only the given names or "unknown". Never invent names. Give every line number exactly
once."""


@dataclass
class LabelRefineConfig(ChatConfig):
    """The speaker-label MLLM endpoint (``OMNI_LABELS_BASE_URL`` / ``OMNI_LABELS_MODEL`` when
    unset; key from ``OMNI_LABELS_API_KEY`` only), whether it is used and what is sent."""

    enabled: bool = False  # off: labels stay the diarization's, no request is made
    frames: int = 4  # keyframes of the clip sent (spread evenly over the ones given)
    prompt_file: str | None = None  # replaces DEFAULT_PROMPT (the system message)
    max_image_side: int = 512  # frames and faces are downscaled to this before sending
    max_tokens: int = 1024
    json_mode: bool = False  # also send response_format json_object (servers that support it)
    env: ChatEnv | None = field(default=LABELS_ENV, kw_only=True)

    def __post_init__(self) -> None:
        if self.frames < 0 or self.max_image_side < 1 or self.max_retries < 0:
            raise ConfigError(f"speaker-label MLLM: frames ({self.frames}) and max_retries "
                              f"({self.max_retries}) must be >= 0, max_image_side "
                              f"({self.max_image_side}) >= 1")

    def prompt(self) -> str:
        """The system prompt: ``prompt_file``'s text, else :data:`DEFAULT_PROMPT`."""
        if not self.prompt_file:
            return DEFAULT_PROMPT
        try:
            return Path(self.prompt_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"speaker-label prompt file {self.prompt_file}: cannot read "
                              f"({exc.strerror})") from None

    def info(self) -> dict[str, Any]:
        """Provenance for the run record: endpoint (redacted), model, prompt (never the
        key)."""
        base, model = self.resolved()
        return {"enabled": self.enabled, "base_url": redact(base), "model": model,
                "prompt": self.prompt_file or "default",
                "prompt_sha256": hashlib.sha256(self.prompt().encode()).hexdigest()}


class LabelledSegment(NamedTuple):
    """One speech segment with the diarization's and the refined speaker label."""

    segment_id: str
    line: int  # its number k in the transcript sent (1-based, time order)
    start_s: float
    end_s: float
    speaker: str  # the diarization's label
    refined_speaker: str  # the MLLM's label (one of the clip's speakers or "unknown")


@dataclass(frozen=True)
class Refinement:
    """The speaker labels of one clip's segments, before and after the MLLM."""

    clip_id: str | None
    speakers: tuple[str, ...]  # the diarization speakers offered to the model
    segments: tuple[LabelledSegment, ...]  # time order
    requested: bool  # False: no request (disabled or one speaker), labels kept as they are

    @property
    def labels(self) -> dict[str, tuple[str, str]]:
        """segment_id -> (diarization label, refined label)."""
        return {s.segment_id: (s.speaker, s.refined_speaker) for s in self.segments}

    @property
    def refined(self) -> dict[str, str]:
        """segment_id -> refined label."""
        return {s.segment_id: s.refined_speaker for s in self.segments}

    @property
    def changed(self) -> list[str]:
        """segment_ids whose refined label differs from the diarization's, in time order."""
        return [s.segment_id for s in self.segments if s.refined_speaker != s.speaker]

    def to_rows(self) -> list[dict[str, Any]]:
        """Rows of a ``speaker_labels`` manifest table: segment_id, clip_id, speaker,
        refined_speaker."""
        return [{"segment_id": s.segment_id, "clip_id": self.clip_id, "speaker": s.speaker,
                 "refined_speaker": s.refined_speaker} for s in self.segments]


def needs_refinement(segments: Sequence[Mapping[str, Any]]) -> bool:
    """True when the segments carry two or more distinct diarization speakers."""
    return len({str(s["speaker"]) for s in segments}) >= 2


def clip_speakers(segments: Sequence[Mapping[str, Any]]) -> list[str]:
    """The distinct diarization speakers of the segments, sorted."""
    return sorted({str(s["speaker"]) for s in segments})


def format_lines(segments: Sequence[LabelledSegment], texts: Mapping[str, str]) -> str:
    """The numbered transcript: ``[k] (start-end s) SPEAKER: words`` per segment."""
    out = []
    for s in segments:
        words = " ".join((texts.get(s.segment_id) or "").split()) or "(no words)"
        out.append(f"[{s.line}] ({s.start_s:.2f}-{s.end_s:.2f} s) {s.speaker}: {words}")
    return "\n".join(out)


def build_messages(cfg: LabelRefineConfig, frames: Sequence[np.ndarray],
                   faces: Mapping[str, np.ndarray], speakers: Sequence[str],
                   transcript: str, n_lines: int) -> list[dict]:
    """The chat request: the prompt as system message; the speakers with their face crops,
    the keyframes, the numbered lines and the exact JSON wanted as the user message."""
    side = cfg.max_image_side
    names = ", ".join(speakers)
    content: list[dict] = [text_part(f"{len(speakers)} speaker name(s): {names}.")]
    for name in speakers:
        face = faces.get(name)
        if face is None:
            content.append(text_part(f"No reference photo of {name}."))
        else:
            content.append(text_part(f"Reference photo of {name}:"))
            content.append(image_part(face, max_side=side))
    if len(frames):
        content.append(text_part(f"{len(frames)} frames of the clip in time order:"))
        content += [image_part(f, max_side=side) for f in frames]
    content.append(text_part(f"Transcript, {n_lines} numbered line(s) (clip time):\n"
                             f"{transcript}"))
    choices = ", ".join(f'"{n}"' for n in (*speakers, UNKNOWN))
    content.append(text_part(
        'Reply with one JSON object and nothing else: {"segments": [{"id": k, "speaker": '
        f'NAME}}, ...]}} with one entry for every line number k from 1 to {n_lines} (each '
        f"exactly once, k an integer) and NAME one of {choices}."))
    return [{"role": "system", "content": cfg.prompt()}, {"role": "user", "content": content}]


def refine_speakers(cfg: LabelRefineConfig, frames: Sequence[np.ndarray],
                    faces: Mapping[str, np.ndarray], segments: Sequence[Mapping[str, Any]],
                    *, clip_id: str | None = None) -> Refinement:
    """The clip's segments with refined speaker labels.

    ``frames``: RGB uint8 keyframes in time order (at most ``cfg.frames`` of them are sent,
    spread evenly). ``faces``: speaker -> RGB uint8 reference crop (faces of speakers with no
    segment are not sent; a speaker without one is said to have no photo). ``segments``:
    mappings with ``segment_id``, ``speaker``, ``start_s``, ``end_s``, ``text`` (and
    optionally ``clip_id``). With ``cfg.enabled`` False or fewer than two speakers no request
    is made and every label is kept. Raises ValueError for bad segments and
    :class:`omni_core.chat.ChatError` when the endpoint is not configured or gives no valid
    answer after ``cfg.max_retries`` retries.
    """
    labelled, texts, clip_id = _prepare(segments, clip_id)
    speakers = clip_speakers(segments)
    if not cfg.enabled or not needs_refinement(segments):
        return Refinement(clip_id, tuple(speakers), tuple(labelled), requested=False)
    if UNKNOWN in speakers:
        raise ValueError(f"speaker label {UNKNOWN!r} is reserved for unattributed segments")
    n = len(labelled)
    allowed = set(speakers) | {UNKNOWN}
    frames = _spread(list(frames), max(0, cfg.frames))

    def check(obj: dict) -> None:
        seen: set[int] = set()
        for item in obj["segments"]:
            if not isinstance(item, dict) or "id" not in item or "speaker" not in item:
                raise MalformedAnswer('answer has a segment entry without "id" and "speaker"')
            k, who = item["id"], item["speaker"]
            if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n:
                raise MalformedAnswer(f"answer names segment id {k!r}: expected 1..{n}")
            if k in seen:
                raise MalformedAnswer(f"answer gives segment {k} more than once")
            if not isinstance(who, str) or who not in allowed:
                raise MalformedAnswer(f"answer gives segment {k} the speaker {who!r}: "
                                      f"expected one of {sorted(allowed)}")
            seen.add(k)
        missing = sorted(set(range(1, n + 1)) - seen)
        if missing:
            raise MalformedAnswer(f"answer lacks segment id(s) {missing[:10]}")

    fmt = {"type": "json_object"} if cfg.json_mode else None
    messages = build_messages(cfg, frames, {k: v for k, v in faces.items() if k in speakers},
                              speakers, format_lines(labelled, texts), n)
    obj = chat_json(cfg, messages, {"segments": list[dict]}, check=check,
                    max_tokens=cfg.max_tokens, response_format=fmt, what="speaker-label MLLM")
    by_line = {item["id"]: item["speaker"] for item in obj["segments"]}
    refined = tuple(s._replace(refined_speaker=by_line[s.line]) for s in labelled)
    return Refinement(clip_id, tuple(speakers), refined, requested=True)


def verdict(refinement: Refinement, speaker: str, span: tuple[float, float]) -> str | None:
    """None when every segment overlapping ``span`` (start_s, end_s) keeps ``speaker`` as its
    refined label, else a one-line reason naming the first disputed segment."""
    a, b = float(span[0]), float(span[1])
    if not (math.isfinite(a) and math.isfinite(b)) or b < a:
        raise ValueError(f"bad span {span!r}")
    disputed = [s for s in refinement.segments
                if s.start_s < b and s.end_s > a and s.refined_speaker != speaker]
    if not disputed:
        return None
    s = disputed[0]
    where = f"segment {s.segment_id} ([{s.line}] {s.start_s:.2f}-{s.end_s:.2f} s)"
    if s.speaker == speaker:
        reason = f"MLLM relabels {where} from {s.speaker} to {s.refined_speaker}"
    elif s.speaker == s.refined_speaker:
        reason = f"span overlaps {where} of {s.speaker}, not {speaker}"
    else:
        reason = (f"span overlaps {where}, which MLLM relabels from {s.speaker} to "
                  f"{s.refined_speaker}, not {speaker}")
    if len(disputed) > 1:
        reason += f" (and {len(disputed) - 1} more segment(s))"
    return reason


# ---------------------------------------------------------------------------------------


def _prepare(segments: Sequence[Mapping[str, Any]], clip_id: str | None
             ) -> tuple[list[LabelledSegment], dict[str, str], str | None]:
    """Checked segments in time order (labels unrefined), their words, the clip id."""
    rows, texts, ids = [], {}, set()
    clips = {str(s["clip_id"]) for s in segments if s.get("clip_id") is not None}
    if clip_id is None and len(clips) == 1:
        clip_id = clips.pop()
    elif clip_id is None and len(clips) > 1:
        raise ValueError(f"segments of several clips: {sorted(clips)}")
    for s in segments:
        sid = str(s["segment_id"])
        if sid in ids:
            raise ValueError(f"segment id {sid} repeats")
        ids.add(sid)
        start, end = float(s["start_s"]), float(s["end_s"])
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise ValueError(f"segment {sid} has bad times {s['start_s']}-{s['end_s']}")
        text = s.get("text")
        texts[sid] = text if isinstance(text, str) else ""  # NaN/None from a table: no words
        rows.append((start, end, sid, str(s["speaker"])))
    rows.sort()
    labelled = [LabelledSegment(sid, k, a, b, who, who)
                for k, (a, b, sid, who) in enumerate(rows, start=1)]
    return labelled, texts, clip_id


def _spread(items: list, k: int) -> list:
    """At most ``k`` of ``items``, spread evenly (first and last kept)."""
    if len(items) <= k:
        return items
    if k == 0:
        return []
    if k == 1:
        return [items[len(items) // 2]]
    idx = np.linspace(0, len(items) - 1, k).round().astype(int)
    return [items[i] for i in idx]
