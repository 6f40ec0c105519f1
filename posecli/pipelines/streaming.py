"""Pipeline stages in threads joined by bounded queues.

``Stage(make_iter, maxsize)`` runs ``make_iter()`` in a thread and hands its
items over a queue of at most ``maxsize``: the producer waits when the
consumer is behind, so memory stays bounded whatever the length of the
stream. An exception in the producer is re-raised in the consumer; closing
the stage (or leaving its ``with`` block) stops the producer and closes its
iterator, which in turn closes the stages it reads from. ffmpeg, cv2 and torch
release the GIL, so decoding, computing and encoding overlap.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Iterable, Iterator

_ITEM, _END, _ERROR = 0, 1, 2
_POLL = 0.1  # s: how often a blocked producer or consumer checks for a stop


class Stage:
    """Iterate what ``make_iter()`` yields, produced ahead in a thread."""

    def __init__(self, make_iter: Callable[[], Iterable], maxsize: int = 2, name: str = "stage"):
        self._q: queue.Queue = queue.Queue(maxsize=max(1, maxsize))
        self._stop = threading.Event()
        self.name = name
        self.busy_s = 0.0  # producer time spent making items (not waiting on the queue)
        self._thread = threading.Thread(target=self._run, args=(make_iter,), name=name, daemon=True)
        self._thread.start()

    def _put(self, msg) -> bool:
        while not self._stop.is_set():
            try:
                self._q.put(msg, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, make_iter) -> None:
        try:
            it = iter(make_iter())
            try:
                while True:
                    t0 = time.perf_counter()
                    try:
                        item = next(it)
                    except StopIteration:
                        break
                    self.busy_s += time.perf_counter() - t0
                    if not self._put((_ITEM, item)):
                        return
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    close()
            self._put((_END, None))
        except BaseException as e:  # re-raised in the consumer's thread
            self._put((_ERROR, e))

    def __iter__(self) -> Iterator:
        while True:
            try:
                kind, value = self._q.get(timeout=_POLL)
            except queue.Empty:
                if not self._thread.is_alive() and self._q.empty():
                    raise RuntimeError(f"{self.name} thread ended without a result")
                continue
            if kind == _END:
                return
            if kind == _ERROR:
                raise value
            yield value

    def close(self, timeout: float = 30.0) -> None:
        """Stop the producer and wait for it to close its input."""
        self._stop.set()
        self._thread.join(timeout)

    def __enter__(self) -> "Stage":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
