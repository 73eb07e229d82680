"""Credentials in URLs: kept out of every record, sent the proper way.

A URL the suite records (an endpoint in provenance, an input or output URL, an error reason
that names a URL) goes through :func:`redact` first: the user-info part
(``user:password@``; the user part alone may be a token) becomes ``***@`` and the value of
every query parameter that looks like a credential (``token``, ``key``, ``api_key``, ``sig``,
``signature``, ``X-Amz-Signature``, ``X-Amz-Credential``, ``password``, ``secret``, ...)
becomes ``***``. Hashing a URL (a result key) is fine; writing its text is not.

:func:`split_userinfo` takes the user-info off a URL for a client that sends it as an HTTP
``Authorization`` header instead (``user:PASS@host`` is not a host name).
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

__all__ = ["MASK", "redact", "redact_url", "split_userinfo"]

MASK = "***"
#: a URL inside free text: a scheme, ``://``, then up to the next blank or quote
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: query parameter names whose values are credentials (lower case; ``-`` or ``_`` joined)
_SECRET_PARAM = re.compile(
    r"(?:^|[_-])(?:token|key|apikey|sig|signature|credential|password|passwd|pwd|secret)$")


def _netloc_host(netloc: str) -> tuple[str | None, str]:
    """(user-info or None, host[:port]) of a URL's netloc."""
    info, at, host = netloc.rpartition("@")
    return (info, host) if at else (None, netloc)


def redact_url(url: str) -> str:
    """``url`` with its user-info and credential-like query values replaced by ``***``
    (anything else unchanged; a string that is not a URL comes back as it is)."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host: keep only the scheme
        return url.split("://", 1)[0] + "://" + MASK
    info, host = _netloc_host(parts.netloc)
    netloc = f"{MASK}@{host}" if info is not None else parts.netloc
    query = "&".join(_redact_param(p) for p in parts.query.split("&")) if parts.query else ""
    if netloc == parts.netloc and query == parts.query:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc, query=query))


def _redact_param(param: str) -> str:
    name, eq, _ = param.partition("=")
    if eq and _SECRET_PARAM.search(urllib.parse.unquote_plus(name).lower()):
        return f"{name}={MASK}"
    return param


def redact(value: Any) -> Any:
    """Every URL inside ``value`` redacted (:func:`redact_url`): a string (free text: each
    URL in it), or a JSON-like value (mappings and lists, walked); other values unchanged."""
    if isinstance(value, str):
        return _URL.sub(lambda m: redact_url(m.group(0)), value) if "://" in value else value
    if isinstance(value, Mapping):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value


def split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """(``url`` without its user-info, (user, password) percent-decoded, or None when it has
    none). ``http://me:p%40ss@host/v1`` -> ``("http://host/v1", ("me", "p@ss"))``."""
    parts = urllib.parse.urlsplit(url)
    info, host = _netloc_host(parts.netloc)
    if info is None:
        return url, None
    user, _, password = info.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=host))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))
