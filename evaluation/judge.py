"""A multimodal LLM judge behind an OpenAI-compatible chat-completions API.

Used by Speaker Confusion (and later by caption refinement): ``POST {base_url}/chat/completions``
with text and ``data:`` image parts, temperature 0. The answer must be exactly what the prompt
asks for (one digit): anything else is retried, then reported as an error, never guessed.
Transient failures (connection errors, HTTP 429 and 5xx) are retried with exponential backoff.
The key comes from the environment only (``OMNI_JUDGE_API_KEY``), never from a config file.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from dataclasses import dataclass

import numpy as np

from omni_core.errors import OmniError

ENV_BASE_URL = "OMNI_JUDGE_BASE_URL"
ENV_MODEL = "OMNI_JUDGE_MODEL"
ENV_KEY = "OMNI_JUDGE_API_KEY"


class JudgeError(OmniError):
    """The judge could not give a valid answer."""


@dataclass
class JudgeConfig:
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 ; default $OMNI_JUDGE_BASE_URL
    model: str | None = None  # default $OMNI_JUDGE_MODEL
    timeout_s: float = 120.0
    max_retries: int = 4  # per request, for transient failures and malformed answers
    backoff_s: float = 2.0  # first wait; doubles each retry
    max_image_side: int = 512  # frames and references are downscaled to this before sending

    def resolved(self) -> tuple[str | None, str | None]:
        return (self.base_url or os.environ.get(ENV_BASE_URL),
                self.model or os.environ.get(ENV_MODEL))


def image_part(image: np.ndarray, max_side: int) -> dict:
    """An RGB uint8 image as an OpenAI ``image_url`` content part (JPEG data URL)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image))
    im.thumbnail((max_side, max_side))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    data = base64.b64encode(buf.getvalue()).decode()
    return {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{data}"}}


def ask_binary(cfg: JudgeConfig, system: str, content: list[dict]) -> tuple[int, str]:
    """Ask for a 0/1 verdict; returns (verdict, raw answer). Raises JudgeError."""
    base, model = cfg.resolved()
    if not base or not model:
        raise JudgeError(f"no judge configured (set {ENV_BASE_URL} and {ENV_MODEL})")
    body = json.dumps({
        "model": model, "temperature": 0, "max_tokens": 8,
        "messages": [{"role": "system", "content": system},
                     {"role": "user", "content": content}],
    }).encode()
    headers = {"Content-Type": "application/json"}
    if os.environ.get(ENV_KEY):
        headers["Authorization"] = f"Bearer {os.environ[ENV_KEY]}"
    url = base.rstrip("/") + "/chat/completions"
    last = ""
    for attempt in range(cfg.max_retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
        try:
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            with urllib.request.urlopen(req, timeout=cfg.timeout_s) as resp:
                answer = json.loads(resp.read())["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}"
            if exc.code == 429 or exc.code >= 500:
                continue
            raise JudgeError(f"judge at {url} answered {last}: {exc.reason}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            last = f"connection failed ({getattr(exc, 'reason', exc)})"
            continue
        except (json.JSONDecodeError, KeyError, IndexError, TypeError):
            last = "response is not a chat completion"
            continue
        text = answer if isinstance(answer, str) else ""
        m = re.fullmatch(r"\s*([01])\s*\.?\s*", text)
        if m:
            return int(m.group(1)), text
        last = f"answer {text[:40]!r} is not 0 or 1"
    raise JudgeError(f"judge gave no valid answer after {cfg.max_retries + 1} tries: {last}")
