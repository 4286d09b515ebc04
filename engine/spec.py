"""The declaration, as frozen, behaviour-free data. Every object knows where in YAML it came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .errors import Loc



def _empty() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True)
class Policy:
    id: str
    title: str
    text: str


@dataclass(frozen=True)
class ModelSpec:
    """One entry of `models:`; `options` holds the provider's own keys (e.g. mock `replies`)."""

    name: str
    provider: str
    model: str
    loc: Loc
    base_url: str | None = None
    api_key_env: str | None = None
    params: Mapping[str, Any] = field(default_factory=_empty)
    concurrency: int = 8
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    timeout: float = 120.0
    retries: int = 5
    backoff: float = 0.5          # seconds: the first retry waits up to this, then doubling
    options: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True)
class JoinSpec:
    """`input.join`: each row gets the row of another file with the same `on` value."""

    path: Path
    display: str
    on: str
    name: str
    format: str = "jsonl"


@dataclass(frozen=True)
class InputSpec:
    path: Path
    display: str
    loc: Loc
    format: str = "jsonl"
    id_field: str | None = None
    limit: int | None = None
    join: JoinSpec | None = None


@dataclass(frozen=True)
class StageSpec:
    """A stage: the common keys, plus `config`, the frozen spec its kind built."""

    id: str
    kind: str
    loc: Loc
    config: Any
    when: str | None = None


@dataclass(frozen=True)
class OutputSpec:
    format: str
    loc: Loc
    path: str
    config: Any = None
    when: str | None = None        # write an item's record only when this is true


@dataclass(frozen=True)
class CacheSpec:
    dir: Path
    mode: str = "read_write"


@dataclass(frozen=True)
class Workflow:
    name: str
    file: Path
    loc: Loc
    description: str
    vars: Mapping[str, Any]
    policies: tuple[Policy, ...]
    models: Mapping[str, ModelSpec]
    input: InputSpec | None
    stages: tuple[StageSpec, ...]
    outputs: tuple[OutputSpec, ...]
    cache: CacheSpec
    files: Mapping[str, str] = field(default_factory=_empty)  # every file the recipe read -> sha256
    fingerprint: str = ""   # what decides each item's record (see loader.fingerprint)
    template_dirs: tuple[Path, ...] = ()    # --allow-root folders, searched for templates too
