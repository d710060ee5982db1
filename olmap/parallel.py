"""Bounded-memory parallel iteration over windows (threads; numpy and GDAL release the GIL)."""

from __future__ import annotations

import itertools
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered_map(
    func: Callable[[T], R], items: Iterable[T], *, workers: int = 1, lookahead: int = 2
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, func(item))`` in input order, computing ahead in a thread pool.

    Unlike :meth:`ThreadPoolExecutor.map`, at most ``lookahead * workers`` results exist at
    once, so memory stays bounded by the window size however many windows there are.

    Examples
    --------
    >>> [r for _, r in ordered_map(lambda x: x * x, range(5), workers=2)]
    [0, 1, 4, 9, 16]
    """
    workers = max(1, workers)
    if workers == 1:
        for item in items:
            yield item, func(item)
        return
    pool = ThreadPoolExecutor(max_workers=workers)
    try:
        pending: deque[tuple[T, Future[R]]] = deque()
        todo = iter(items)
        for item in itertools.islice(todo, lookahead * workers):
            pending.append((item, pool.submit(func, item)))
        while pending:
            item, fut = pending.popleft()
            result = fut.result()
            nxt = next(todo, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(func, nxt)))
            yield item, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


_DONE = object()


def prefetch(items: Iterable[T], depth: int = 2) -> Iterator[T]:
    """Iterate ``items`` in a background thread, at most ``depth`` items ahead.

    Reading and decoding the next windows (GDAL releases the GIL) then overlaps with the
    computation on the current ones. Exceptions of the producer are raised in the consumer;
    closing the iterator early stops the producer.

    Examples
    --------
    >>> list(prefetch(iter(range(4)), depth=1))
    [0, 1, 2, 3]
    """
    box: queue.Queue = queue.Queue(maxsize=max(1, depth))
    stop = threading.Event()

    def put(value: object) -> bool:
        while not stop.is_set():
            try:
                box.put(value, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((item, None)):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put((_DONE, exc))
            return
        put((_DONE, None))

    thread = threading.Thread(target=produce, name="olmap-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = box.get()
            if item is _DONE:
                if error is not None:
                    raise error
                return
            yield item
    finally:
        stop.set()
        thread.join()
