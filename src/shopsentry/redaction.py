"""Masking secrets in text that is printed or logged: one helper for every place.

A URL's userinfo (``user:password@``) and the values of its secret-looking query
parameters (``token``, ``key``, ``secret``, ``password``, ``signature``, ...) are replaced
by ``***``; everything else (scheme, host, port, path, other parameters) stays readable.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

MASK = "***"

# A query parameter whose name contains one of these holds a credential.
_SECRET_PARAM = re.compile(
    r"token|key|secret|pass|pwd|auth|sig|credential|session|code", re.IGNORECASE
)
_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


def redact_url(url: str) -> str:
    """``url`` with its userinfo and secret-looking query values masked.

    >>> redact_url("http://user:pass@host:8080/hook?token=abc&team=ops")
    'http://***@host:8080/hook?token=***&team=ops'
    """
    try:
        parts = urlsplit(url)
    except ValueError:  # not parseable as a URL: say nothing of it
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = "&".join(
            f"{quote(k, safe='')}={MASK if _SECRET_PARAM.search(k) else quote(v, safe='')}"
            for k, v in pairs
        )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def redact_text(text: str) -> str:
    """A string as it may be shown: URLs redacted (``kafka://a,b`` lists included)."""
    if not _URL.match(text):
        return text
    return redact_url(text)


def redact_data(value: Any) -> Any:
    """Plain data (dicts, lists, strings) with every URL in it redacted."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {key: redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value
