"""Bad traffic gets a 4xx or a closed connection, never a stuck worker.

* ``BodyGuard`` (ASGI middleware): a body over ``max_bytes`` is a 413 (by
  Content-Length up front, by counting for chunked uploads) before it is buffered; a
  body that has not fully arrived ``body_seconds`` after the headers (a client
  trickling it) is a 408 and the connection is closed.
* ``HeaderDeadlineProtocol``: uvicorn's httptools protocol with a deadline on the
  request line and headers (uvicorn has none: its keep-alive timeout only covers the
  time between requests and restarts with every byte received), so a client that
  trickles headers, or connects and sends nothing, is disconnected after
  ``header_seconds`` instead of holding a connection slot; headers over
  ``max_header_bytes`` (httptools sets no limit) get a 431 and the connection closed.

Both only wait on the event loop: a slow client costs a connection, not a thread.
"""
import asyncio
from typing import Any, Dict, Optional

from fastapi.responses import JSONResponse
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class BodyTooLarge(Exception):
    pass


class BodyTooSlow(Exception):
    pass


def too_large(max_bytes: int) -> JSONResponse:
    return JSONResponse({"detail": "request body over the {} byte limit".format(max_bytes)},
                        status_code=413)


def too_slow(seconds: float) -> JSONResponse:
    return JSONResponse({"detail": "request body not received within {:g} s".format(seconds)},
                        status_code=408, headers={"Connection": "close"})


class BodyGuard:
    def __init__(self, app: Any, max_bytes: int, body_seconds: float) -> None:
        self.app, self.max_bytes, self.body_seconds = app, max_bytes, body_seconds

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        deadline = asyncio.get_running_loop().time() + self.body_seconds
        received, complete = 0, False

        async def guarded_receive() -> Dict[str, Any]:
            nonlocal received, complete
            if complete:  # later calls wait for a disconnect: no deadline
                return await receive()
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise BodyTooSlow() from None
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge()
            complete = not message.get("more_body", False)
            return message

        await self.app(scope, guarded_receive, send)


class HeaderDeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, closing a connection whose request line and headers
    are not complete ``header_seconds`` after it opened or the request began, or exceed
    ``max_header_bytes`` (set by the app factory in each worker; uvicorn imports this
    class by name)."""

    header_seconds = 10.0
    max_header_bytes = 64 * 1024
    _header_timer = None  # type: Optional[asyncio.TimerHandle]
    _header_bytes = 0

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and not self.transport.is_closing():
            self._header_bytes += len(data)
            if self._header_bytes > self.max_header_bytes:
                self._disarm()
                self.transport.write(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                     b"connection: close\r\ncontent-length: 0\r\n\r\n")
                self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_headers_complete(self) -> None:
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._header_bytes = 0
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_seconds, self._expired)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _expired(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.logger.warning("closing a connection whose request headers did not arrive "
                                "within %g s", self.header_seconds)
            self.transport.close()
