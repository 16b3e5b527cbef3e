"""The service's limits (uploads, pixels, batch, slow clients): plain settings, which the
CLI reads without the service's packages installed."""

from __future__ import annotations

from dataclasses import dataclass


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
