"""One path for every call: cache -> retry -> rate limit -> provider -> transport."""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import CacheMiss, LLMError, RunError
from ..registry import PROVIDERS
from ..spec import ModelSpec
from .cache import CallCache, cache_key
from .transport import Transport
from .types import Provider, Request, Response


class PriorityLimiter:
    """A semaphore that wakes the lowest priority value first, so items that started earlier
    get their next call before new items get their first one."""

    def __init__(self, capacity: int):
        self.capacity, self.used = capacity, 0
        self._waiters: list[tuple[int, int, asyncio.Future]] = []
        self._seq = itertools.count()

    async def acquire(self, priority: int) -> None:
        if self.used < self.capacity and not self._waiters:
            self.used += 1
            return
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)  # the slot passes straight to the waiter
                return
        self.used -= 1


@dataclass
class CallStats:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    def add(self, response: Response) -> None:
        self.calls += 1
        self.cache_hits += response.cache_hit
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens


MAX_RETRY_AFTER = 300.0


def backoff(attempt: int, retry_after: float | None, base: float = 0.5, cap: float = 30.0
            ) -> float:
    """Exponential backoff with full jitter; a server's Retry-After wins when it says more
    (up to five minutes)."""
    delay = random.uniform(0, min(cap, base * 2 ** attempt))
    return max(delay, min(retry_after or 0.0, MAX_RETRY_AFTER))


class LLMClient:
    """The calls of one run: a provider and a limiter per model, one cache, shared counters."""

    def __init__(self, models: Mapping[str, ModelSpec], cache: CallCache,
                 concurrency: int | None = None):
        if concurrency:
            models = {n: dataclasses.replace(m, concurrency=concurrency)
                      for n, m in models.items()}
        self.models, self.cache = models, cache
        self.transport = Transport()
        self.shared: dict[str, Any] = {}
        self.stats = CallStats()
        self._providers: dict[str, Provider] = {}
        self._limits = {name: PriorityLimiter(spec.concurrency)
                        for name, spec in models.items()}

    def provider(self, name: str) -> Provider:
        if name not in self._providers:
            spec = self.models[name]
            self._providers[name] = PROVIDERS.get(spec.provider)(spec, self.transport, self.shared)
        return self._providers[name]

    async def complete(self, model: str, request: Request) -> Response:
        spec = self.models[model]
        key = cache_key(spec.provider, spec.model, request,
                        getattr(self.provider(model), "cache_extra", None))
        cached = self.cache.get(key)
        if cached is not None:
            self.stats.add(cached)
            return cached
        if self.cache.mode == "read_only":
            raise CacheMiss(f"offline and no cached reply for model {model!r} "
                            f"({spec.provider}:{spec.model})")
        response = await self._with_retry(model, spec, request)
        self.cache.put(key, spec.provider, spec.model, response)
        self.stats.add(response)
        return response

    async def _with_retry(self, name: str, spec: ModelSpec, request: Request) -> Response:
        provider = self.provider(name)
        for attempt in itertools.count():
            try:
                return await self._limited(name, provider, request)
            except LLMError as exc:
                if not exc.retryable or attempt >= spec.retries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(backoff(attempt, exc.retry_after))
        raise AssertionError("unreachable")

    async def _limited(self, name: str, provider: Provider, request: Request) -> Response:
        limiter = self._limits[name]
        await limiter.acquire(request.priority)
        started = time.perf_counter()
        try:
            response = await provider.complete(request)
        finally:
            limiter.release()
        return Response(**{**response.__dict__, "latency": time.perf_counter() - started})

    async def close(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the run's result
                raise RunError(f"could not stop provider {provider.kind}: {exc}") from exc
        await self.transport.close()
        self.cache.close()
