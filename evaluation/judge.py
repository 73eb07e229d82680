"""A multimodal LLM judge behind an OpenAI-compatible chat-completions API.

Used by Speaker Confusion: a thin layer over :mod:`omni_core.chat` (the one chat client of the
suite: ``data:`` image parts, retries with exponential backoff on connection errors, HTTP 429
and 5xx, key from the environment only) that asks for a one-digit verdict at temperature 0.
The answer must be exactly that digit: anything else is retried, then reported as an error,
never guessed. Endpoint and model come from the config or ``OMNI_JUDGE_BASE_URL`` /
``OMNI_JUDGE_MODEL``; the key from ``OMNI_JUDGE_API_KEY`` only, never from a config file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from omni_core import chat as _chat
from omni_core.chat import ChatConfig, ChatEnv, ChatError, MalformedAnswer

ENV_BASE_URL = "OMNI_JUDGE_BASE_URL"
ENV_MODEL = "OMNI_JUDGE_MODEL"
ENV_KEY = "OMNI_JUDGE_API_KEY"
JUDGE_ENV = ChatEnv(ENV_BASE_URL, ENV_MODEL, ENV_KEY)

_VERDICT = re.compile(r"\s*([01])\s*\.?\s*")


class JudgeError(ChatError):
    """The judge could not give a valid answer."""


@dataclass
class JudgeConfig(ChatConfig):
    """A :class:`omni_core.chat.ChatConfig` reading the ``OMNI_JUDGE_*`` variables."""

    max_image_side: int = 512  # frames and references are downscaled to this before sending
    env: ChatEnv | None = field(default=JUDGE_ENV, kw_only=True)


def image_part(image: np.ndarray, max_side: int) -> dict:
    """An RGB uint8 image as an OpenAI ``image_url`` content part (JPEG data URL)."""
    return _chat.image_part(image, max_side=max_side, fmt="jpeg", quality=90)


def ask_binary(cfg: JudgeConfig, system: str, content: list[dict]) -> tuple[int, str]:
    """Ask for a 0/1 verdict; returns (verdict, raw answer). Raises JudgeError."""

    def check(answer: str) -> None:
        if not _VERDICT.fullmatch(answer):
            raise MalformedAnswer(f"answer {answer[:40]!r} is not 0 or 1")

    messages = [{"role": "system", "content": system}, {"role": "user", "content": content}]
    try:
        text = _chat.chat(cfg, messages, temperature=0, max_tokens=8, check=check, what="judge")
    except ChatError as exc:
        raise JudgeError(str(exc)) from None
    return int(_VERDICT.fullmatch(text).group(1)), text
