"""Draw the next training batches on a background thread while the current one trains.

On a GPU the sampler, not the model, can set the pace: at the study's sizes (n <= 15, batch 2^15)
one CPU core draws a batch in about 0.1 s, about what an H100-class GPU takes to train on it. The
compiled sampler (data_gen.kernel) releases the GIL, so one producer thread overlaps drawing with
the training step; the batch is also pinned there, so the host-to-device copy can be non-blocking.

The wrapper keeps the feed protocol exact: `state()` is the wrapped feed's state after the last
batch *handed out* (not after the batches drawn ahead), so a checkpoint taken at any step resumes on
exactly the batch an uninterrupted run would have trained on next.
"""
from __future__ import annotations

import queue
import threading

from data_gen import GraphBatch


class PrefetchFeed:
    """`feed` (a StreamFeed or DatasetFeed) with up to `depth` batches drawn ahead on one thread.

    next() -> GraphBatch; state() -> the wrapped feed's JSON state after the last batch returned;
    set_state(state) drops the batches drawn ahead and restarts from `state`; resize(size) does the
    same from the current state when the size changes; close() stops the
    thread. An exception raised while drawing is raised again by the next() that would have
    returned that batch.
    """

    def __init__(self, feed, depth: int = 2, pin: bool = False):
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.feed, self.depth, self.pin = feed, depth, pin
        self._state = feed.state()
        self._size = None  # the batch size last asked for by resize (None: the feed's own)
        self._start()

    def _start(self) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=self.depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="graphpath-prefetch", daemon=True)
        self._thread.start()

    def _produce(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self.feed.next()
                if self.pin:
                    batch = batch.pin_memory()
                item = (batch, self.feed.state(), None)
            except BaseException as error:  # handed to the consumer, which raises it
                item = (None, None, error)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[2] is not None:
                return

    def next(self) -> GraphBatch:
        batch, state, error = self._queue.get()
        if error is not None:
            raise error
        self._state = state
        return batch

    def state(self) -> dict:
        return self._state

    def set_state(self, state: dict) -> None:
        self.close()
        self.feed.set_state(state)
        self._state = self.feed.state()
        self._start()

    def resize(self, batch_size: int) -> None:
        """Later batches hold `batch_size` graphs (a batch-size ramp): on a change, the batches drawn
        ahead are dropped and drawing restarts from the state after the last batch handed out, so
        the batches are those the unwrapped feed would give."""
        if batch_size == self._size:
            return
        self.close()
        self.feed.set_state(self._state)
        self.feed.resize(batch_size)
        self._size = batch_size
        self._start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
