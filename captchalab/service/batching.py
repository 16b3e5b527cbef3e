"""Micro-batching: concurrent single-image requests share one forward pass.

Requests queue their preprocessed pixels; one worker takes everything queued (up to
``max_batch``) and runs the network on it in a thread so the event loop keeps accepting
requests; each request then decodes its own outputs, with its own constraints. It waits
at most ``max_wait`` seconds for company, and only while other requests are on their way
(announced with :meth:`expecting`, still decoding their images): a request alone runs at
once, and under load the requests that arrive during one forward pass form the next batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np

from captchalab.runtime.constraints import Constraints
from captchalab.runtime.recognizer import Prediction, Recognizer


class MicroBatcher:
    def __init__(self, recognizer: Recognizer, max_batch: int = 64, max_wait: float = 0.002,
                 ) -> None:
        self.recognizer = recognizer
        self.max_batch = max_batch
        self.max_wait = max_wait
        self.queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future]] | None = None
        self.worker: asyncio.Task | None = None
        self.executor: ThreadPoolExecutor | None = None
        self.batches = 0
        self.images = 0
        self.coming = 0  # requests announced but not yet queued
        self.busy = False  # a batch is being read
        self.on_batch = None  # called with each forward pass's size (metrics)

    @contextmanager
    def expecting(self) -> Iterator[None]:
        """Announce a request while it prepares its pixels, so a batch may wait for it."""
        self.coming += 1
        try:
            yield
        finally:
            self.coming -= 1

    def start(self) -> None:
        """Start the worker on the running event loop (again, if an earlier loop is gone or
        the batcher was stopped)."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="captchalab-batch")
        self.queue = asyncio.Queue()
        self.worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.worker:
            self.worker.cancel()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
            self.executor = None

    async def drain_and_stop(self, timeout: float = 60.0) -> None:
        """Stop once every queued request has been read (a model swapped out)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (
                self.busy or self.coming or (self.queue is not None and not self.queue.empty())):
            await asyncio.sleep(0.01)
        await self.stop()

    async def predict(self, pixels: np.ndarray, constraints: Constraints | None = None
                      ) -> list[Prediction]:
        """Predictions for ``(N, H, W)`` uint8 pixels, their forward pass batched with other
        callers' images, read under ``constraints``."""
        if self.worker is None or self.worker.done() or self.executor is None or (
                self.worker.get_loop() is not asyncio.get_running_loop()):
            self.start()
        loop = asyncio.get_running_loop()
        futures = []
        for image in pixels:
            future = loop.create_future()
            self.queue.put_nowait((image, future))
            futures.append(future)
        outputs = np.stack(await asyncio.gather(*futures))
        return await loop.run_in_executor(None, self.recognizer.decode, outputs, None,
                                          constraints)

    async def _take(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(batch) < self.max_batch:
            if self.queue.empty():
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.coming:
                    break
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except asyncio.TimeoutError:
                    break
            else:
                batch.append(self.queue.get_nowait())
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._take()
            live = [(image, future) for image, future in batch if not future.done()]
            if not live:
                continue
            pixels = np.stack([image for image, _ in live])
            self.busy = True
            try:
                outputs = await loop.run_in_executor(
                    self.executor, self.recognizer.outputs, pixels)
            except Exception as error:  # reported to every waiting request, worker goes on
                for _, future in live:
                    if not future.done():
                        future.set_exception(error)
                continue
            finally:
                self.busy = False
            if self.on_batch is not None:
                self.on_batch(len(live))
            self.batches += 1
            self.images += len(live)
            for (_, future), row in zip(live, outputs):
                if not future.done():
                    future.set_result(row)
