"""Requests and responses as plain data, shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from ..spec import ModelSpec


@dataclass(frozen=True)
class Request:
    """One chat call. `tags` (stage, agent, turn) help scripted mocks and traces; they are not
    part of the cache key, which depends only on what the model sees."""

    messages: tuple[Mapping[str, str], ...]
    params: Mapping[str, Any] = field(default_factory=dict)
    schema: Mapping[str, Any] | None = None
    sample: int = 0
    tags: Mapping[str, Any] = field(default_factory=dict)
    priority: int = 0   # lower is served first (the item's position: finish old items first)


@dataclass(frozen=True)
class Response:
    text: str
    finish_reason: str = "stop"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hit: bool = False
    latency: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text, "finish_reason": self.finish_reason,
                "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


class Provider(Protocol):
    """Turns a Request into a Response for one configured model.

    Registered in the `aidsafe.providers` registry; the class may declare `schema` (its extra
    YAML keys), `default_model`, and `check(spec) -> [(message, hint)]` run at load time.
    """

    kind: str

    def __init__(self, spec: ModelSpec, transport: Any, shared: dict[str, Any]) -> None: ...

    async def complete(self, request: Request) -> Response: ...

    async def close(self) -> None: ...
