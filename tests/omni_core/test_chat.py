"""The chat-completions client against stubs of the protocol on 127.0.0.1 (no network)."""

import base64
import http.server
import io
import json
import logging
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from omni_core import chat as chat_mod
from omni_core.chat import (
    ChatConfig,
    ChatEnv,
    ChatError,
    MalformedAnswer,
    chat,
    chat_json,
    image_part,
    parse_json_object,
)

MSG = [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


@pytest.fixture
def waits(monkeypatch):
    """The backoff waits chat() asked for (none is actually slept)."""
    seen: list[float] = []
    monkeypatch.setattr(chat_mod, "_sleep", seen.append)
    return seen


def cfg(url, **kw):
    return ChatConfig(base_url=url, model="stub-vlm", backoff_s=0.5, max_retries=3, **kw)


class _RawStub(http.server.BaseHTTPRequestHandler):
    """Answers each POST from a script of (status, body bytes, delay_s)."""

    def log_message(self, *a):
        pass

    def do_POST(self):  # noqa: N802
        st = self.server.st
        st["requests"].append({"headers": dict(self.headers),
                               "body": self.rfile.read(int(self.headers["Content-Length"]))})
        status, body, delay = st["script"].pop(0)
        time.sleep(delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass


@pytest.fixture
def raw():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RawStub)
    srv.st = {"requests": [], "script": []}
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1", srv.st
    srv.shutdown()
    srv.server_close()


def completion(content) -> bytes:
    return json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                            "content": content}}]}).encode()


def test_retries_500_and_429_with_exponential_backoff_then_answers(judge, waits):
    url, st = judge
    st["script"] = [500, 429, 503, "hello"]
    assert chat(cfg(url), MSG, max_tokens=7) == "hello"
    assert waits == [0.5, 1.0, 2.0]
    assert len(st["requests"]) == 4 and {r["path"] for r in st["requests"]} == {
        "/v1/chat/completions"}
    body = st["requests"][-1]["body"]
    assert body["model"] == "stub-vlm" and body["temperature"] == 0 and body["max_tokens"] == 7
    assert body["messages"] == MSG and "response_format" not in body


def test_client_errors_are_not_retried(judge, waits):
    url, st = judge
    st["script"] = [400]
    with pytest.raises(ChatError, match="HTTP 400"):
        chat(cfg(url), MSG)
    assert len(st["requests"]) == 1 and waits == []


def test_every_try_failing_is_one_error_with_the_last_reason(judge, waits):
    url, st = judge
    st["script"] = [502, 502, 502, 502, "never reached"]
    with pytest.raises(ChatError, match=r"after 4 tries: HTTP 502"):
        chat(cfg(url), MSG)
    assert len(st["requests"]) == 4 and waits == [0.5, 1.0, 2.0]


def test_connection_refused_is_chat_error_after_retries(waits):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    with pytest.raises(ChatError, match=r"after 4 tries: connection failed") as e:
        chat(cfg(f"http://127.0.0.1:{port}/v1", timeout_s=2), MSG, what="caption VLM")
    assert str(e.value).startswith("caption VLM at http://127.0.0.1:")
    assert waits == [0.5, 1.0, 2.0]


def test_timeouts_and_non_completions_are_retried(raw, waits):
    url, st = raw
    st["script"] = [(200, completion("late"), 1.0), (200, b"<html>proxy</html>", 0),
                    (200, json.dumps({"choices": []}).encode(), 0),
                    (200, completion(None), 0), (200, completion("fine"), 0)]
    config = ChatConfig(base_url=url, model="m", timeout_s=0.3, max_retries=4, backoff_s=0.1)
    assert chat(config, MSG) == "fine"
    assert len(st["requests"]) == 5 and waits == [0.1, 0.2, 0.4, 0.8]


def test_check_rejects_answers_until_one_passes(judge, waits):
    url, st = judge
    st["script"] = ["maybe", "yes"]

    def check(answer):
        if answer != "yes":
            raise MalformedAnswer(f"answer {answer!r} is not yes")

    assert chat(cfg(url), MSG, check=check) == "yes" and len(waits) == 1
    st["script"] = ["no"] * 4
    with pytest.raises(ChatError, match="'no' is not yes"):
        chat(cfg(url), MSG, check=check)


def test_malformed_json_is_retried_then_an_error(judge, waits):
    url, st = judge
    keys = {"name": str, "score": float, "tags": list[str], "ok": bool}
    st["script"] = ["Sure! here it is", '["a list"]', '{"name": "x", "score": 1, "tags": []}',
                    '{"name": "x", "score": "high", "tags": [], "ok": true}']
    with pytest.raises(ChatError, match="key 'score' is not float"):
        chat_json(cfg(url), MSG, keys)
    assert len(st["requests"]) == 4 and len(waits) == 3
    # a missing key, then a valid answer in a code fence; extra keys are dropped
    st["script"] = ['{"name": "x", "score": 2, "tags": ["a"]}',
                    '```json\n{"name": "x", "score": 2, "tags": ["a", "b"], "ok": false, '
                    '"extra": 1}\n```']
    got = chat_json(cfg(url), MSG, keys, response_format={"type": "json_object"})
    assert got == {"name": "x", "score": 2, "tags": ["a", "b"], "ok": False}
    assert st["requests"][-1]["body"]["response_format"] == {"type": "json_object"}


def test_json_types_are_strict():
    with pytest.raises(MalformedAnswer, match="lacks key"):
        parse_json_object('{"a": 1}', {"a": int, "b": int})
    with pytest.raises(MalformedAnswer, match="'a' is not int"):
        parse_json_object('{"a": true}', {"a": int})  # a bool is no number
    with pytest.raises(MalformedAnswer, match="'a' is not"):
        parse_json_object('{"a": ["x", 2]}', {"a": list[str]})
    with pytest.raises(MalformedAnswer, match="'a' is not"):
        parse_json_object('{"a": {"k": 1}}', {"a": dict[str, str]})
    with pytest.raises(MalformedAnswer, match="not JSON"):
        parse_json_object('{"a": 1} and more', {"a": int})
    assert parse_json_object('{"a": null}', {"a": (str, type(None))}) == {"a": None}
    assert parse_json_object(' {"a": {"k": "v"}} ', {"a": dict[str, str]}) == {"a": {"k": "v"}}


def test_key_from_environment_only_in_the_authorization_header(judge, waits, monkeypatch,
                                                               caplog):
    url, st = judge
    env = ChatEnv.prefixed("OMNI_TESTCHAT")
    monkeypatch.setenv("OMNI_TESTCHAT_BASE_URL", url)
    monkeypatch.setenv("OMNI_TESTCHAT_MODEL", "env-model")
    monkeypatch.setenv("OMNI_TESTCHAT_API_KEY", "sk-secret-123")
    config = ChatConfig(env=env, backoff_s=0.5)
    assert config.resolved() == (url, "env-model")
    st["script"] = [503, "ok"]
    with caplog.at_level(logging.DEBUG, logger="omni_core.chat"):
        assert chat(config, MSG) == "ok"
    assert "503" in caplog.text and "sk-secret" not in caplog.text
    assert [r["auth"] for r in st["requests"]] == ["Bearer sk-secret-123"] * 2
    for r in st["requests"]:
        assert "sk-secret" not in json.dumps(r["body"]) + r["path"]
        assert r["body"]["model"] == "env-model"
    assert "sk-secret" not in repr(config)
    # explicit fields win over the environment; no env names: no key is read at all
    st["script"] = ["ok"]
    chat(ChatConfig(base_url=url, model="explicit"), MSG)
    assert st["requests"][-1]["auth"] is None
    assert st["requests"][-1]["body"]["model"] == "explicit"


def test_key_echoed_by_the_server_is_redacted(raw, monkeypatch):
    url, st = raw
    monkeypatch.setenv("OMNI_TESTCHAT_API_KEY", "sk-secret-123")
    err = json.dumps({"error": {"message": "Incorrect API key provided: sk-secret-123"}})
    st["script"] = [(401, err.encode(), 0)]
    config = ChatConfig(base_url=url, model="m", env=ChatEnv.prefixed("OMNI_TESTCHAT"))
    with pytest.raises(ChatError, match="HTTP 401: Incorrect API key provided") as e:
        chat(config, MSG)
    assert "sk-secret" not in str(e.value) and "***" in str(e.value)


def _with_login(url: str, login: str) -> str:
    return url.replace("http://", f"http://{login}@", 1)


def test_credentials_in_the_url_go_as_basic_auth_to_the_right_host(judge, waits, caplog):
    """``http://user:PASS@host/v1``: the request goes to ``host`` (not to a host named
    ``user:PASS@host``) with HTTP Basic ``Authorization``; no log line names the password."""
    url, st = judge
    st["script"] = [503, "ok", "ok"]
    with caplog.at_level(logging.DEBUG, logger="omni_core.chat"):
        assert chat(cfg(_with_login(url, "user:PASS")), MSG) == "ok"
    basic = "Basic " + base64.b64encode(b"user:PASS").decode()
    assert [r["auth"] for r in st["requests"]] == [basic] * 2
    assert {r["path"] for r in st["requests"]} == {"/v1/chat/completions"}
    assert "503" in caplog.text and "PASS" not in caplog.text
    assert f"at {url}/chat/completions" in caplog.text  # the host called, no credentials
    # percent-encoded characters are decoded before they are sent
    assert chat(cfg(_with_login(url, "me%40lab:p%3Ass")), MSG) == "ok"
    assert st["requests"][-1]["auth"] == "Basic " + base64.b64encode(b"me@lab:p:ss").decode()


def test_errors_never_show_the_password_of_the_url(judge, waits, monkeypatch):
    url, st = judge
    st["script"] = [502] * 4
    with pytest.raises(ChatError) as e:
        chat(cfg(_with_login(url, "user:PASS")), MSG, what="caption VLM")
    assert "PASS" not in str(e.value) and str(e.value).startswith(f"caption VLM at {url}/")
    st["script"] = [401]
    with pytest.raises(ChatError, match="HTTP 401") as e:
        chat(cfg(_with_login(url, "user:PASS")), MSG)
    assert "PASS" not in str(e.value)
    # credentials in the URL and an API key: one Authorization header, so an error
    monkeypatch.setenv("OMNI_TESTCHAT_API_KEY", "sk-secret-123")
    both = ChatConfig(base_url=_with_login(url, "user:PASS"), model="m",
                      env=ChatEnv.prefixed("OMNI_TESTCHAT"))
    n = len(st["requests"])
    with pytest.raises(ChatError, match="carries credentials and an API key") as e:
        chat(both, MSG)
    assert "PASS" not in str(e.value) and "sk-secret" not in str(e.value)
    assert len(st["requests"]) == n  # nothing was sent


def test_not_configured_names_the_variables(monkeypatch):
    monkeypatch.delenv("OMNI_TESTCHAT_BASE_URL", raising=False)
    monkeypatch.delenv("OMNI_TESTCHAT_MODEL", raising=False)
    config = ChatConfig(env=ChatEnv.prefixed("OMNI_TESTCHAT"))
    assert not config.configured()
    with pytest.raises(ChatError, match=r"no judge configured \(set OMNI_TESTCHAT_BASE_URL "
                                        r"and OMNI_TESTCHAT_MODEL\)"):
        chat(config, MSG, what="judge")
    with pytest.raises(ChatError, match="no chat endpoint configured"):
        chat(ChatConfig(base_url="http://127.0.0.1:9/v1"), MSG)


def _decode(part):
    assert part["type"] == "image_url"
    url = part["image_url"]["url"]
    head, data = url.split(",", 1)
    return head, Image.open(io.BytesIO(base64.b64decode(data, validate=True)))


def test_image_parts_are_data_urls_of_the_image():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (40, 60, 3), dtype=np.uint8)
    head, im = _decode(image_part(img, fmt="png"))
    assert head == "data:image/png;base64" and im.format == "PNG"
    np.testing.assert_array_equal(np.asarray(im.convert("RGB")), img)  # lossless
    smooth = np.zeros((200, 100, 3), np.uint8)
    smooth[..., 0] = np.linspace(0, 255, 200, dtype=np.uint8)[:, None]
    head, im = _decode(image_part(smooth, max_side=50))
    assert head == "data:image/jpeg;base64" and im.format == "JPEG"
    assert im.size == (25, 50)  # (width, height): longer side 50, aspect kept
    back = np.asarray(im.convert("RGB").resize((100, 200)), dtype=float)
    assert np.abs(back - smooth).mean() < 4
    for bad in (np.zeros((4, 4), np.uint8), np.zeros((4, 4, 3), np.float32),
                np.zeros((0, 4, 3), np.uint8)):
        with pytest.raises(ValueError, match="RGB uint8"):
            image_part(bad)


def test_import_opens_no_connection():
    code = ("import socket\n"
            "def deny(*a, **k): raise AssertionError('network at import')\n"
            "socket.socket.connect = deny\n"
            "socket.create_connection = deny\n"
            "import omni_core.chat\n")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
