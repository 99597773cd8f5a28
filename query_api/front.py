"""One port for HTTP and gRPC (Arrow Flight), as InfluxDB 3 serves them.

Each accepted connection is sniffed: a gRPC client opens with the HTTP/2 connection preface
(``PRI * HTTP/2.0``), which no HTTP/1.1 request can start with; such a connection is piped to
the in-process Flight server's loopback port. Any other connection is handed, in place, to
uvicorn's own HTTP protocol — no proxy hop for HTTP traffic.
"""
from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class FlightTarget:
    """Where gRPC connections go; set once the Flight server runs (in the API's lifespan)."""

    port: int = 0


class _Pipe(asyncio.Protocol):
    """Copies bytes from the upstream Flight connection back to the client."""

    def __init__(self, client: asyncio.Transport):
        self.client = client

    def data_received(self, data: bytes) -> None:
        self.client.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.client.close()


class SniffingProtocol(asyncio.Protocol):
    """uvicorn's ``http`` protocol class: decides per connection between HTTP and gRPC."""

    target = FlightTarget

    def __init__(self, config: Any, server_state: Any, app_state: dict, _loop=None):
        self._args = (config, server_state, app_state, _loop)
        self._loop = _loop or asyncio.get_event_loop()
        self._transport: asyncio.Transport | None = None
        self._buffer = b""
        self._upstream: asyncio.Transport | None = None
        self._pending: list[bytes] = []

    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        if self._upstream is not None or self._pending:
            self._forward(data)
            return
        self._buffer += data
        if PREFACE.startswith(self._buffer[: len(PREFACE)]) and len(self._buffer) < len(PREFACE):
            return  # could still be gRPC: wait for the whole preface
        if self._buffer.startswith(PREFACE) and self.target.port:
            self._pending.append(self._buffer)
            self._loop.create_task(self._connect_grpc())
            return
        http = HttpToolsProtocol(*self._args[:3], _loop=self._args[3])
        self._transport.set_protocol(http)
        http.connection_made(self._transport)
        http.data_received(self._buffer)

    def _forward(self, data: bytes) -> None:
        if self._upstream is None:
            self._pending.append(data)
        else:
            self._upstream.write(data)

    async def _connect_grpc(self) -> None:
        try:
            upstream, _ = await self._loop.create_connection(
                lambda: _Pipe(self._transport), "127.0.0.1", self.target.port)
        except OSError:
            self._transport.close()
            return
        self._upstream = upstream
        for chunk in self._pending:
            upstream.write(chunk)
        self._pending = []

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None:
            self._upstream.close()

    def eof_received(self) -> bool | None:
        if self._upstream is not None and self._upstream.can_write_eof():
            self._upstream.write_eof()
        return True
