"""A client for OpenAI-compatible chat-completions endpoints (vision-language models).

One client for every part of the suite that asks a multimodal LLM something: the evaluator's
Speaker Confusion judge and curation's caption writer. ``POST {base_url}/chat/completions``
with text and ``data:`` image parts, temperature 0 by default.

- Transient failures (connection errors, timeouts, HTTP 408/429/5xx, a reply that is not a
  chat completion) are retried with exponential backoff: ``backoff_s``, then twice that, ...
- Answers are strict: a caller's check (:func:`chat`) or the JSON contract of
  :func:`chat_json` rejects a malformed answer, which is retried like a transient failure;
  after ``max_retries`` retries the last reason is a :class:`ChatError`. Nothing is guessed.
- Where the endpoint and model come from is the caller's choice: explicit config fields, else
  the environment variables the caller names in :class:`ChatEnv` (so the judge and the caption
  writer keep their own). The API key comes from the environment only, is sent only as the
  ``Authorization`` header and never appears in a log line or an error message.
- An endpoint with credentials in it (``http://user:PASS@host/v1``) is called at the URL
  without them (``http://host/v1``), the user and password sent as HTTP Basic
  ``Authorization``; every URL in a log line or an error is redacted
  (:func:`omni_core.urls.redact_url`). A URL with credentials and an API key both set is an
  error (one ``Authorization`` header).

Nothing here touches the network at import.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import logging
import os
import re
import time
import typing
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import OmniError
from .urls import MASK, redact, redact_url, split_userinfo

log = logging.getLogger(__name__)

_sleep = time.sleep  # the backoff wait (tests replace it to observe the schedule)
_RETRY_STATUS = {408, 429}


class ChatError(OmniError):
    """A chat endpoint is not configured, refused the request or gave no valid answer."""


class MalformedAnswer(Exception):
    """Raised by an answer check: the answer breaks the contract and is asked for again."""


@dataclass(frozen=True)
class ChatEnv:
    """Names of the environment variables that configure one user of the client."""

    base_url: str
    model: str
    api_key: str

    @classmethod
    def prefixed(cls, prefix: str) -> ChatEnv:
        """``PREFIX_BASE_URL``, ``PREFIX_MODEL`` and ``PREFIX_API_KEY``."""
        return cls(f"{prefix}_BASE_URL", f"{prefix}_MODEL", f"{prefix}_API_KEY")


@dataclass
class ChatConfig:
    """Where to send requests and how hard to try. Unset ``base_url``/``model`` are read from
    the variables named by ``env``; with ``env`` None nothing is read from the environment
    (and no key is sent)."""

    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1
    model: str | None = None
    timeout_s: float = 120.0
    max_retries: int = 4  # per request, for transient failures and malformed answers
    backoff_s: float = 2.0  # first wait; doubles each retry
    env: ChatEnv | None = field(default=None, kw_only=True)

    def resolved(self) -> tuple[str | None, str | None]:
        """(base_url, model) after falling back to the environment."""
        env = self.env
        return (self.base_url or (os.environ.get(env.base_url) if env else None),
                self.model or (os.environ.get(env.model) if env else None))

    def configured(self) -> bool:
        return all(self.resolved())

    def _api_key(self) -> str | None:
        return (os.environ.get(self.env.api_key) or None) if self.env else None


def image_part(image: np.ndarray, *, max_side: int | None = None, fmt: str = "jpeg",
               quality: int = 90) -> dict:
    """An RGB uint8 image (H, W, 3) as an ``image_url`` content part holding a PNG or JPEG
    ``data:`` URL, downscaled (aspect kept) so that its longer side is at most ``max_side``."""
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {arr.dtype} {arr.shape}")
    fmt = fmt.lower()
    if fmt not in ("jpeg", "png"):
        raise ValueError(f"image format {fmt!r}: expected 'jpeg' or 'png'")
    im = Image.fromarray(np.ascontiguousarray(arr))
    if max_side:
        im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    if fmt == "jpeg":
        im.save(buf, format="JPEG", quality=quality)
    else:
        im.save(buf, format="PNG")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:image/{fmt};base64,{data}"}}


def text_part(text: str) -> dict:
    return {"type": "text", "text": text}


def chat(config: ChatConfig, messages: Sequence[Mapping[str, Any]], *,
         temperature: float = 0.0, max_tokens: int | None = None,
         response_format: Mapping[str, Any] | None = None,
         check: Callable[[str], None] | None = None, what: str = "chat endpoint") -> str:
    """The assistant's answer to ``messages`` (OpenAI message dicts).

    ``check(answer)`` raises :class:`MalformedAnswer` to have the answer asked for again.
    ``what`` names the endpoint in errors ("judge"). Raises :class:`ChatError` when nothing is
    configured, on a non-retryable HTTP error (4xx other than 408/429), or when every try
    failed (the last reason is in the message).
    """
    base, model = config.resolved()
    if not base or not model:
        env = config.env
        where = f"{env.base_url} and {env.model}" if env else "base_url and model"
        raise ChatError(f"no {what} configured (set {where})")
    payload: dict[str, Any] = {"model": model, "temperature": temperature,
                               "messages": list(messages)}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    if response_format is not None:
        payload["response_format"] = dict(response_format)
    body = json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    url, login = split_userinfo(base.rstrip("/") + "/chat/completions")
    shown = redact_url(url)  # the URL as logs and errors name it
    key = config._api_key()
    if key and login:
        raise ChatError(f"{what} at {shown}: the URL carries credentials and an API key is "
                        "set too; give one of them")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    elif login:
        token = base64.b64encode(":".join(login).encode()).decode("ascii")
        headers["Authorization"] = f"Basic {token}"
    tries = max(0, config.max_retries) + 1
    last = ""
    for attempt in range(tries):
        if attempt:
            wait = config.backoff_s * 2 ** (attempt - 1)
            log.info("%s at %s: %s; retry %d/%d in %.1f s", what, shown, last, attempt,
                     tries - 1, wait)
            _sleep(wait)
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=config.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code in _RETRY_STATUS or exc.code >= 500:
                continue
            detail = _redact(_error_detail(exc) or str(exc.reason), key)
            raise ChatError(f"{what} at {shown} answered {last}: {detail}") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError,
                ConnectionError) as exc:
            last = _redact(f"connection failed ({getattr(exc, 'reason', exc)})", key)
            continue
        try:
            answer = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            last = "response is not a chat completion"
            continue
        if not isinstance(answer, str):
            last = "answer has no text content"
            continue
        if check is None:
            return answer
        try:
            check(answer)
        except MalformedAnswer as exc:
            last = _redact(str(exc), key)
            continue
        return answer
    raise ChatError(f"{what} at {shown} gave no valid answer after {tries} tries: {last}")


def chat_json(config: ChatConfig, messages: Sequence[Mapping[str, Any]],
              keys: Mapping[str, Any], *, check: Callable[[dict], None] | None = None,
              **kw: Any) -> dict[str, Any]:
    """A strict JSON answer: an object holding every key of ``keys`` with a value of that
    type (``str``, ``float`` (ints allowed), ``int``, ``bool``, ``list[str]``,
    ``dict[str, str]``, a tuple of alternatives, ...). Other keys are dropped. ``check``
    (raising :class:`MalformedAnswer`) adds rules of the caller. A reply that breaks the
    contract is asked for again, then a :class:`ChatError`. ``kw`` goes to :func:`chat`."""

    def validate(answer: str) -> None:
        obj = parse_json_object(answer, keys)
        if check is not None:
            check(obj)

    return parse_json_object(chat(config, messages, check=validate, **kw), keys)


def parse_json_object(answer: str, keys: Mapping[str, Any]) -> dict[str, Any]:
    """The requested keys of a JSON object answer; :class:`MalformedAnswer` if it is not one.
    One surrounding Markdown code fence is allowed (many models add it); nothing else."""
    text = answer.strip()
    m = re.fullmatch(r"```(?:json)?\s*\n?(.*?)\n?\s*```", text, re.DOTALL | re.IGNORECASE)
    if m:
        text = m.group(1).strip()
    try:
        obj = json.loads(text)
    except ValueError:
        raise MalformedAnswer(f"answer {_short(answer)} is not JSON") from None
    if not isinstance(obj, dict):
        raise MalformedAnswer(f"answer {_short(answer)} is not a JSON object")
    missing = [k for k in keys if k not in obj]
    if missing:
        raise MalformedAnswer(f"answer lacks key(s) {', '.join(map(repr, missing))}")
    for k, tp in keys.items():
        if not _is_a(obj[k], tp):
            raise MalformedAnswer(f"answer key {k!r} is not {_type_name(tp)}")
    return {k: obj[k] for k in keys}


def _is_a(value: Any, tp: Any) -> bool:
    if tp is Any or tp is object:
        return True
    if isinstance(tp, tuple):
        return any(_is_a(value, t) for t in tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is list:
        return isinstance(value, list) and (not args or all(_is_a(v, args[0]) for v in value))
    if origin is dict:
        return isinstance(value, dict) and (not args or all(
            _is_a(k, args[0]) and _is_a(v, args[1]) for k, v in value.items()))
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is None or tp is type(None):
        return value is None
    return isinstance(value, tp)


def _type_name(tp: Any) -> str:
    if isinstance(tp, tuple):
        return " or ".join(_type_name(t) for t in tp)
    if typing.get_origin(tp) is None and hasattr(tp, "__name__"):
        return tp.__name__
    return str(tp)


def _short(text: str, n: int = 40) -> str:
    return repr(text[:n] + ("..." if len(text) > n else ""))


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The ``error.message`` of an OpenAI-style error body, one line, if there is one."""
    try:
        msg = json.loads(exc.read() or b"{}").get("error", {}).get("message", "")
    except (ValueError, AttributeError, OSError):
        return ""
    return " ".join(str(msg).split())[:200]


def _redact(text: str, key: str | None) -> str:
    """``text`` without the API key and with every URL in it redacted."""
    return redact(text.replace(key, MASK) if key else text)


def pin_endpoints(config: Any) -> Any:
    """``config`` (a dataclass) with the endpoint of every :class:`ChatConfig` inside it read
    from the driver's environment into the config: every worker, on any node, then uses the
    same endpoint, and the job's result key and provenance record it."""
    import dataclasses

    if isinstance(config, ChatConfig):
        base, model = config.resolved()
        return dataclasses.replace(config, base_url=base, model=model)
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        return config
    changes = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        pinned = pin_endpoints(value)
        if pinned is not value:
            changes[f.name] = pinned
    return dataclasses.replace(config, **changes) if changes else config
