"""Per-client rate limits: a token bucket per caller.

A client registered with a limit of N requests per minute may burst up to N, and gets N
back per minute, evenly. The buckets live in each server process, so a deployment of W
worker processes gives each a W-th share of the limit (the operating system spreads
connections over the workers), which keeps the total at N without a round trip to a shared
store on every request.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable


class RateLimiter:
    def __init__(self, workers: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.workers = max(1, workers)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str, per_minute: int) -> float | None:
        """Spend one request of ``key``'s allowance; None when allowed, else the seconds
        until one is available again (for ``Retry-After``)."""
        if per_minute <= 0:
            return None
        capacity = max(per_minute / self.workers, 1.0)
        rate = capacity / 60.0  # tokens per second
        now = self._clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return None
            self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / rate


def retry_after(seconds: float) -> str:
    """A ``Retry-After`` value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))


__all__ = ["RateLimiter", "retry_after"]
