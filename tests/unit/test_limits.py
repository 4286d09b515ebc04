"""Per-model limits with a fake clock (no sockets, no real waiting)."""

import asyncio

from engine.llm.limits import PriorityLimiter, TokenBucket, per_minute


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.slept = []

    def __call__(self):
        return self.now

    async def sleep(self, seconds):
        self.slept.append(round(seconds, 6))
        self.now += seconds


async def test_a_burst_of_429s_halves_capacity_once():
    limiter = PriorityLimiter(8)
    epochs = [await limiter.acquire(0) for _ in range(8)]
    for epoch in epochs:                 # all 8 in flight get 429
        limiter.throttled(epoch)
        limiter.release()
    assert limiter.capacity == 4
    limiter.throttled(await limiter.acquire(0))   # a request sent after the cut counts
    limiter.release()
    assert limiter.capacity == 2


async def test_capacity_climbs_back_by_one_per_capacity_successes():
    limiter = PriorityLimiter(4)
    limiter.throttled(await limiter.acquire(0))
    limiter.release()
    assert limiter.capacity == 2
    history = []
    for _ in range(10):
        await limiter.acquire(0)
        limiter.release()
        limiter.succeeded()
        history.append(limiter.capacity)
    assert history == [2, 3, 3, 3, 4, 4, 4, 4, 4, 4]


async def test_a_cut_below_the_slots_in_use_waits_for_releases():
    limiter = PriorityLimiter(4)
    epochs = [await limiter.acquire(0) for _ in range(4)]
    limiter.throttled(epochs[0])                  # capacity 2, 4 still in use
    waiter = asyncio.create_task(limiter.acquire(0))
    for _ in range(2):
        limiter.release()
        await asyncio.sleep(0)
        assert not waiter.done()                  # 3 then 2 in use: still at capacity
    limiter.release()
    await asyncio.sleep(0)
    assert waiter.done() and limiter.used == 2


async def test_requests_per_minute_are_spaced_evenly():
    clock = FakeClock()
    bucket = TokenBucket(rate=1.0, burst=1.0, clock=clock, sleep=clock.sleep)  # 60 rpm
    for _ in range(4):
        await bucket.take(1)
    assert clock.slept == [1.0, 1.0, 1.0] and clock.now == 3.0


async def test_token_budget_books_the_real_usage():
    clock = FakeClock()
    bucket = TokenBucket(rate=100.0, burst=1000.0, clock=clock, sleep=clock.sleep)
    await bucket.take(600)           # estimate
    bucket.settle(300)               # the call really used 900
    await bucket.take(500)           # level 100: waits 4 s for 400 more
    assert clock.slept == [4.0]
    await bucket.take(5000)          # more than the burst is capped to the burst
    assert clock.now == 14.0


def test_per_minute_budgets():
    assert per_minute(None, 1.0) is None
    bucket = per_minute(600, 1.0)
    assert (bucket.rate, bucket.burst) == (10.0, 10.0)
    assert per_minute(30, 1.0).burst == 1.0
