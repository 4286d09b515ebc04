"""One path for every call: cache -> retry -> rate limit -> provider -> transport."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import CacheMiss, LLMError, RunError
from ..registry import PROVIDERS
from ..spec import ModelSpec
from .cache import CallCache, cache_key
from .limits import PriorityLimiter, per_minute
from .transport import Transport
from .types import Provider, Request, Response


@dataclass
class CallStats:
    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    retries: int = 0

    def replayed(self, calls: list[dict[str, Any]]) -> None:
        """Count the calls of an item replayed whole from the cache."""
        for call in calls:
            call["cache_hit"] = True
            self.calls += 1
            self.cache_hits += 1
            self.prompt_tokens += call.get("prompt_tokens", 0)
            self.completion_tokens += call.get("completion_tokens", 0)

    def add(self, response: Response) -> None:
        self.calls += 1
        self.cache_hits += response.cache_hit
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens


MAX_RETRY_AFTER = 300.0
FATAL_STATUS = frozenset({401, 403, 404})   # a wrong key, model name or URL: same for every item


def estimate_tokens(request: Request) -> int:
    """Prompt tokens (about four characters each) plus the completion budget."""
    chars = sum(len(str(m.get("content", ""))) for m in request.messages)
    return chars // 4 + int(request.params.get("max_tokens") or 256)


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
        self._rpm = {name: per_minute(spec.requests_per_minute, 1.0)
                     for name, spec in models.items()}
        self._tpm = {name: per_minute(spec.tokens_per_minute, 10.0)
                     for name, spec in models.items()}
        self._reached: set[str] = set()   # models that answered at least once in this run
        self._broken: dict[str, RunError] = {}   # models that failed for good: send no more

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
                response = await self._limited(name, provider, request)
                self._reached.add(name)
                return response
            except LLMError as exc:
                self._check_fatal(name, spec, exc, attempt)
                if not exc.retryable or attempt >= spec.retries:
                    raise
                self.stats.retries += 1
                await asyncio.sleep(backoff(attempt, exc.retry_after, spec.backoff))
        raise AssertionError("unreachable")

    def _check_fatal(self, name: str, spec: ModelSpec, exc: LLMError, attempt: int) -> None:
        """Errors that would fail every item the same way stop the run with one message."""
        where = f"{spec.loc}: model {name!r} ({spec.provider}:{spec.model})"
        if exc.status in FATAL_STATUS:
            error = RunError(f"{where}: {exc.message}", exc.hint)
        elif (exc.kind == "unreachable" and name not in self._reached
              and attempt >= min(2, spec.retries)):
            error = RunError(f"{where}: {exc.message} — is the server running?",
                             "start the server, or check base_url")
        else:
            return
        self._broken.setdefault(name, error)
        raise self._broken[name] from exc

    async def _limited(self, name: str, provider: Provider, request: Request) -> Response:
        limiter, rpm, tpm = self._limits[name], self._rpm[name], self._tpm[name]
        estimate = estimate_tokens(request) if tpm else 0
        epoch = await limiter.acquire(request.priority)
        started = time.perf_counter()
        try:
            if name in self._broken:
                raise self._broken[name]
            if rpm:
                await rpm.take(1)
            if tpm:
                await tpm.take(estimate)
            response = await provider.complete(request)
        except LLMError as exc:
            if exc.status == 429:
                limiter.throttled(epoch)
            raise
        finally:
            limiter.release()
        limiter.succeeded()
        if tpm:
            used = response.prompt_tokens + response.completion_tokens
            tpm.settle((used or estimate) - estimate)
        return Response(**{**response.__dict__, "latency": time.perf_counter() - started})

    async def close(self) -> None:
        for provider in self._providers.values():
            try:
                await provider.close()
            except Exception as exc:  # noqa: BLE001 - closing must not hide the run's result
                raise RunError(f"could not stop provider {provider.kind}: {exc}") from exc
        await self.transport.close()
        self.cache.close()
