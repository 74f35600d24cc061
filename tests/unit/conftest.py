"""Shared fixtures of the unit tests: loopback HTTP fakes for the evidence readers, and a guard that
fails any HTTP request not addressed to 127.0.0.1 (so no test can reach a real metadata service)."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import httpx
import pytest
from loopback import LoopbackServer, Responder


@pytest.fixture
def serve() -> Iterator[Callable[[Responder], LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def start(respond: Responder) -> LoopbackServer:
        servers.append(LoopbackServer(respond))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any HTTP request that is not to 127.0.0.1."""
    original = httpx.HTTPTransport.handle_request

    def guarded(self: httpx.HTTPTransport, request: httpx.Request) -> httpx.Response:
        assert request.url.host == "127.0.0.1", f"non-loopback request to {request.url}"
        return original(self, request)

    monkeypatch.setattr(httpx.HTTPTransport, "handle_request", guarded)


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
