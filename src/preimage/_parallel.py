"""Independent tasks over both cores: threads, one BLAS thread each, the caller's settings, a progress bar.

Each task runs in a copy of the caller's context, so ``preimage.configure`` blocks apply inside the
workers too. Dense linear algebra releases the GIL, so threads scale; BLAS is limited to one thread
per task while the pool runs, because nested thread pools oversubscribe a small machine.
"""

from __future__ import annotations

import contextvars
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

__all__ = ["map_tasks"]

T = TypeVar("T")
R = TypeVar("R")


def map_tasks(fn: Callable[[T], R], items: Iterable[T], *, workers: int | None = None, progress: bool = False,
              desc: str = "", total: int | None = None) -> list[R]:
    """``[fn(item) for item in items]`` in order, on ``workers`` threads (default: all cores)."""
    workers = (os.cpu_count() or 1) if workers is None else max(1, int(workers))
    items = list(items)
    bar = tqdm(total=total or len(items), desc=desc, disable=not progress, unit="task")
    try:
        if workers == 1:
            results = []
            for item in items:
                results.append(fn(item))
                bar.update()
            return results
        context = contextvars.copy_context()

        def task(item):
            result = context.copy().run(fn, item)
            bar.update()
            return result

        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            return list(pool.map(task, items))
    finally:
        bar.close()
