"""The middleware that enforces the request-body limits: size (413) and time (408).

A refusal is an ``HTTPException``, so wherever it surfaces (our own body reading, or
FastAPI's parsing of a route's JSON body, which passes ``HTTPException`` through) the app's
error handler answers it as JSON with its own status and closes the connection, since the
rest of the body is left unread.
"""

from __future__ import annotations

import asyncio
import json
import time

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyRefused(HTTPException):
    """A request body the service will not read further."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(status, message, headers={"connection": "close"})


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
        too_large = BodyRefused(413, f"request body over the limit of {self.max_bytes} bytes")
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await refuse(send, too_large)
            return
        seen = 0
        complete = False
        started = False
        deadline = time.monotonic() + self.timeout

        async def guarded_receive() -> Message:
            nonlocal seen, complete
            if complete:  # later receives wait for a disconnect, which has no deadline
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0))
            except asyncio.TimeoutError:
                raise BodyRefused(408, f"request body not received within {self.timeout:g} s"
                                  ) from None
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
                complete = not message.get("more_body", False)
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, guarded_receive, tracked_send)
        except BodyRefused as error:  # raised where no route's error handler caught it
            if not started:
                await refuse(send, error)


async def refuse(send: Send, error: BodyRefused) -> None:
    """Answer ``error`` as JSON and close the connection (the rest of the body is unread)."""
    body = json.dumps({"error": error.detail}).encode()
    await send({"type": "http.response.start", "status": error.status_code,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
