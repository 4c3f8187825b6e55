"""The project's threads: closed-loop workers side by side, one helper thread beside a long call; joins bounded."""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Callable


def run_side_by_side(worker: Callable[[], None], count: int, *, join_timeout: float) -> float:
    """Runs `worker()` in `count` daemon threads at once, waits at most `join_timeout` s for each, returns wall seconds."""
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(count)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=join_timeout)
    return time.perf_counter() - started


@contextlib.contextmanager
def beside(loop: Callable[[threading.Event], None], *, join_timeout: float = 10.0):
    """Runs `loop(stop)` in a daemon thread while the block runs; on leaving, sets `stop` and joins the thread
    (at most `join_timeout` s), also when the block raises. `loop` should return soon after `stop` is set."""
    stop = threading.Event()
    thread = threading.Thread(target=loop, args=(stop,), daemon=True)
    thread.start()
    try:
        yield thread
    finally:
        stop.set()
        thread.join(timeout=join_timeout)
