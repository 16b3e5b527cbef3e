"""The service's limits (uploads, pixels, batch, slow clients) and the middleware that
enforces them on request bodies."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI reads the defaults without the service's packages installed
    from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True)
class Limits:
    """Defaults suit captchas (a few KB, a few hundred pixels wide); all are per request."""

    max_image_bytes: int = 2 * 1024 * 1024  # one encoded image
    max_request_bytes: int = 16 * 1024 * 1024  # a whole request body
    max_pixels: int = 4_000_000  # width x height of one image, checked before decoding
    max_batch: int = 64  # images in one request, and in one forward pass
    batch_wait: float = 0.002  # seconds a batch may wait for requests on their way
    client_timeout: float = 10.0  # seconds for a request's headers, and again for its body
    max_connections: int = 1000  # open connections and requests; more are answered 503


class BodyRefused(Exception):
    """A request body the service will not read further; answered before the app replies."""

    status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)


class RequestTooLarge(BodyRefused):
    status = 413


class BodyTimeout(BodyRefused):
    status = 408


class BodyGuard:
    """Refuse bodies over ``max_bytes`` (413: at once from Content-Length, or as soon as a
    streamed body passes the limit) and bodies still incomplete ``timeout`` seconds after
    the request arrived (408), so a slow client cannot hold a request open."""

    def __init__(self, app: ASGIApp, max_bytes: int, timeout: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = RequestTooLarge(f"request body over the limit of {self.max_bytes} bytes")
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await refuse(send, too_large)
            return
        seen = 0
        started = False
        deadline = time.monotonic() + self.timeout

        async def guarded_receive() -> Message:
            nonlocal seen
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise BodyTimeout(f"request body not received within {self.timeout:g} s"
                                  ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except BodyRefused as error:
            if not started:
                await refuse(send, error)


async def refuse(send: Send, error: BodyRefused) -> None:
    """Answer ``error`` as JSON and close the connection (the rest of the body is unread)."""
    body = json.dumps({"error": str(error)}).encode()
    await send({"type": "http.response.start", "status": error.status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
