"""Ordered, bounded-memory parallel map over windows (threads; numpy and GDAL release the GIL)."""

from __future__ import annotations

import itertools
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
