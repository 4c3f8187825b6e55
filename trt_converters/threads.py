"""Closed-loop load generators' one shared piece: workers run side by side in threads, every wait bounded."""

from __future__ import annotations

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
