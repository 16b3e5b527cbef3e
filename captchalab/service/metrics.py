"""What the service tells a monitoring system: Prometheus metrics per model, and a drift
flag when readings become unsure (a site that changed its captcha scheme).

``GET /metrics`` serves the text format of the standard ``prometheus_client`` library.
Per model: requests by status, images, request latency, forward-pass batch sizes, the
confidence of readings, the share of readings below the review threshold over a sliding
window, and the drift flag. With several ``--workers`` each process keeps its own counts.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LOG = logging.getLogger("captchalab.service")
CONTENT_TYPE = CONTENT_TYPE_LATEST
DRIFT_WINDOW = 200  # readings per window: the first one sets the level, the last is compared
DRIFT_RISE = 0.2  # a window this much above the starting share (and at least twice it) drifts


@dataclass
class DriftWatch:
    """The share of unsure readings (confidence below ``threshold``) over the last
    ``window`` readings, against its level over the first ``window`` readings.

    ``drifting`` turns on when the recent share is at least ``rise`` above the starting one
    and twice it: the model meets captchas it does not know, as after a scheme change.
    """

    threshold: float
    window: int = DRIFT_WINDOW
    rise: float = DRIFT_RISE
    recent: deque = field(default_factory=deque)
    start_share: float | None = None
    seen: int = 0
    drifting: bool = False

    def add(self, confidence: float) -> bool:
        """Count one reading; whether this reading turned the drift flag on."""
        unsure = confidence < self.threshold
        self.recent.append(unsure)
        if len(self.recent) > self.window:
            self.recent.popleft()
        self.seen += 1
        if self.seen == self.window:
            self.start_share = self.share
        if self.start_share is None or self.seen < 2 * self.window:
            return False
        was = self.drifting
        self.drifting = (self.share >= self.start_share + self.rise
                         and self.share >= 2 * self.start_share)
        return self.drifting and not was

    @property
    def share(self) -> float:
        return sum(self.recent) / len(self.recent) if self.recent else 0.0

    def reset(self) -> None:
        """A new model: its own starting level."""
        self.recent.clear()
        self.start_share, self.seen, self.drifting = None, 0, False


class ServiceMetrics:
    """The service's metrics in a registry of its own (one per app)."""

    def __init__(self, review_below: float) -> None:
        self.registry = CollectorRegistry()
        self.review_below = review_below
        labels = ["model"]
        self.requests = Counter("captchalab_requests", "recognize requests, by answer status",
                                ["model", "status"], registry=self.registry)
        self.images = Counter("captchalab_images", "images read", labels,
                              registry=self.registry)
        self.latency = Histogram("captchalab_request_seconds", "time to answer a recognize "
                                 "request", labels, registry=self.registry,
                                 buckets=(0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5,
                                          1.0, 2.0, 5.0))
        self.batch = Histogram("captchalab_batch_size", "images per forward pass", labels,
                               registry=self.registry, buckets=(1, 2, 4, 8, 16, 32, 64, 128))
        self.confidence = Histogram("captchalab_confidence", "confidence of readings", labels,
                                    registry=self.registry,
                                    buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95,
                                             0.99, 1.0))
        self.unsure_share = Gauge("captchalab_unsure_share", "share of the last "
                                  f"{DRIFT_WINDOW} readings below the review threshold", labels,
                                  registry=self.registry)
        self.drift = Gauge("captchalab_drift", "1 while readings are far less sure than when "
                           "the model started", labels, registry=self.registry)
        self.watches: dict[str, DriftWatch] = {}

    def watch(self, model: str) -> DriftWatch:
        if model not in self.watches:
            self.watches[model] = DriftWatch(self.review_below)
        return self.watches[model]

    def readings(self, model: str, confidences: list[float]) -> None:
        """Count the readings of one request."""
        watch = self.watch(model)
        self.images.labels(model).inc(len(confidences))
        for confidence in confidences:
            self.confidence.labels(model).observe(confidence)
            if watch.add(confidence):
                LOG.warning("captchalab: model %s: %.0f%% of the last %d readings are below "
                            "%.2f confidence, against %.0f%% at start: the captchas may have "
                            "changed (see /v1/models)", model, 100 * watch.share, watch.window,
                            watch.threshold, 100 * (watch.start_share or 0.0))
        self.unsure_share.labels(model).set(watch.share)
        self.drift.labels(model).set(1.0 if watch.drifting else 0.0)

    def swapped(self, model: str) -> None:
        """A model was reloaded: its drift watch starts over."""
        self.watch(model).reset()
        self.drift.labels(model).set(0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
