"""A minimal client for the planning server (same wire format as openpi's `WebsocketClientPolicy`).

We ship our own so that robot-side code needs only `websockets` and `msgpack` (openpi-client pins
numpy < 2); openpi's client works against the server too.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from planners.protocol import packb, unpackb


class ServerError(RuntimeError):
    """The server refused a request (its text reply)."""


class PlanningClient:
    def __init__(self, uri: str = "ws://127.0.0.1:8000", connect_timeout: float = 30.0, timeout: float | None = 60.0):
        """Connect (retrying until `connect_timeout` while the server starts) and read the metadata."""
        self.uri = uri if uri.startswith("ws") else f"ws://{uri}"
        self.timeout = timeout
        deadline = time.monotonic() + connect_timeout
        while True:
            try:
                self._stack = contextlib.ExitStack()
                self._ws = self._stack.enter_context(connect(self.uri, compression=None, max_size=None, open_timeout=10))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ConnectionError(f"no planning server at {self.uri} after {connect_timeout:.0f} s") from None
                time.sleep(0.2)
        self.metadata: dict[str, Any] = unpackb(self._ws.recv(timeout=timeout))

    def infer(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the reply; raises `ServerError` with the server's message on a refusal
        `TimeoutError` when no reply comes within `timeout` seconds, `ConnectionError` when the server is gone."""
        try:
            self._ws.send(packb(request))
            reply = self._ws.recv(timeout=self.timeout)
        except ConnectionClosed as err:
            raise ConnectionError(f"planning server at {self.uri} closed the connection: {err}") from err
        if isinstance(reply, str):
            raise ServerError(reply)
        return unpackb(reply)

    def send_raw(self, data: bytes | str) -> Any:
        """Send an arbitrary message (tests, debugging); returns the decoded reply or the error text."""
        self._ws.send(data)
        reply = self._ws.recv(timeout=self.timeout)
        return reply if isinstance(reply, str) else unpackb(reply)

    def close(self) -> None:
        self._stack.close()

    def __enter__(self) -> PlanningClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
