"""One small, never-raising HTTP helper shared by the readers (``httpx``, short timeouts, no proxies)."""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any

import httpx

log = logging.getLogger(__name__)

#: Default timeout (seconds) of every HTTP reader: evidence is gathered while an attempt is ending, so a
#: source that does not answer at once is treated as absent.
DEFAULT_TIMEOUT = 0.5


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    verify: ssl.SSLContext | bool = True,
    source: str = "http",
) -> httpx.Response | None:
    """Send one request and return the response, or ``None`` (logged at debug) on any error.

    ``trust_env=False``: proxies and ``.netrc`` from the environment are ignored, because metadata
    services and the in-cluster API must be reached directly (a proxy would answer for the wrong host).
    Redirects are not followed. Any status is returned; callers decide what a status means.
    """
    if url.lower().startswith("http:"):
        verify = False  # no TLS on plain http: skip loading a CA bundle for nothing
    try:
        with httpx.Client(timeout=timeout, verify=verify, trust_env=False, follow_redirects=False) as client:
            return client.request(method, url, headers=dict(headers or {}))
    except Exception as exc:  # noqa: BLE001 - a reader never raises: any failure means "no evidence"
        log.debug("%s: %s %s failed: %s: %s", source, method, url, type(exc).__name__, exc)
        return None


def ok_text(response: httpx.Response | None, *, source: str) -> str | None:
    """The body of a 200 response as text, else ``None`` (logged at debug)."""
    if response is None:
        return None
    if response.status_code != 200:
        log.debug("%s: %s answered %d", source, response.request.url, response.status_code)
        return None
    try:
        return response.text
    except Exception as exc:  # noqa: BLE001 - undecodable body
        log.debug("%s: undecodable body from %s: %s", source, response.request.url, exc)
        return None


def ok_json(response: httpx.Response | None, *, source: str) -> Any:
    """The JSON body of a 200 response, else ``None`` (logged at debug)."""
    text = ok_text(response, source=source)
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError as exc:
        log.debug("%s: unparsable JSON from %s: %s", source, response.request.url if response else "?", exc)
        return None
