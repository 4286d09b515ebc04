"""Per-model limits: requests in flight (adaptive, served oldest item first), requests per
minute and tokens per minute.

```yaml
models:
  writer:
    concurrency: 32            # the most requests in flight; halved on a burst of 429s, then
                               # raised by one after each `capacity` successes, up to 32 again
    requests_per_minute: 600   # spaced evenly, bursts of at most one second's worth
    tokens_per_minute: 200000  # prompt (estimated, then actual) + completion tokens
```
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from typing import Awaitable, Callable


class PriorityLimiter:
    """A semaphore that wakes the lowest priority value first (so items that started earlier
    get their next call before new items get their first one), whose capacity adapts: a 429
    halves it once per burst (429s from requests sent before the last cut do not count
    again), and `capacity` successes in a row raise it by one, up to `limit`."""

    def __init__(self, limit: int):
        self.limit = self.capacity = limit
        self.used = 0
        self.epoch = 0          # bumped at each cut; a request remembers the epoch it began in
        self._successes = 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int) -> int:
        """Wait for a slot; returns the epoch to hand back to `throttled`."""
        if self.used < self.capacity and not self._waiters:
            self.used += 1
            return self.epoch
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()
            raise
        return self.epoch

    def release(self) -> None:
        self.used -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.used < self.capacity:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                self.used += 1
                future.set_result(None)

    def throttled(self, epoch: int) -> None:
        """The server said 429 to a request that began in `epoch`."""
        if epoch == self.epoch:
            self.capacity = max(1, self.capacity // 2)
            self.epoch += 1
            self._successes = 0

    def succeeded(self) -> None:
        if self.capacity >= self.limit:
            return
        self._successes += 1
        if self._successes >= self.capacity:
            self.capacity += 1
            self._successes = 0
            self._wake()


class TokenBucket:
    """`rate` units per second, holding at most `burst`; `take` waits for enough units (one
    taker at a time, in arrival order). `settle` books the difference between an estimate
    and what was really used (the bucket may go below zero)."""

    def __init__(self, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep):
        self.rate, self.burst = rate, burst
        self.level, self.clock, self.sleep = burst, clock, sleep
        self.stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.burst, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    async def take(self, amount: float) -> None:
        amount = min(amount, self.burst)
        async with self._lock:
            self._refill()
            while self.level < amount:
                await self.sleep((amount - self.level) / self.rate)
                self._refill()
            self.level -= amount

    def settle(self, extra: float) -> None:
        self._refill()
        self.level -= extra


def per_minute(count: float | None, burst_seconds: float) -> TokenBucket | None:
    """A bucket for a per-minute budget, or None when there is none."""
    if not count:
        return None
    rate = count / 60.0
    return TokenBucket(rate, max(1.0, rate * burst_seconds))
