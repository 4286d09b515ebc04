"""One extension pattern: a named registry per extension point, filled by built-ins and plugins.

Built-ins and plugins both register through the entry-point group named after the registry
(the built-ins are declared in this project's setup.cfg), e.g. a plugin's setup.cfg::

    [options.entry_points]
    aidsafe.stages =
        my_kind = my_package.stages:MyKind
"""

from __future__ import annotations

import functools
import hashlib
from importlib.metadata import entry_points
from pathlib import Path
from typing import Generic, Iterator, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps a kind name (as written in YAML) to its implementation. Collisions are loud."""

    def __init__(self, group: str):
        self.group = group
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._plugins_loaded = False

    def register(self, name: str, item: T, origin: str = "built-in") -> T:
        if name in self._items:
            raise ValueError(
                f"{self.group}: {name!r} is registered twice "
                f"({self._origins[name]} and {origin}); rename one of them")
        self._items[name] = item
        self._origins[name] = origin
        return item

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group):
            builtin = ep.value.startswith("engine.")
            self.register(ep.name, ep.load(), origin="built-in" if builtin else f"plugin {ep.value}")

    def get(self, name: str) -> T | None:
        self._load_plugins()
        return self._items.get(name)

    def names(self) -> list[str]:
        self._load_plugins()
        return sorted(self._items)

    def origins(self) -> dict[str, str]:
        self._load_plugins()
        return dict(self._origins)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        self._load_plugins()
        return iter(sorted(self._items.items()))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 of the engine's own source and the versions of installed plugins: whole-item
    replays are only valid for the same code (single calls are keyed on what the model sees
    and stay valid across code changes)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        digest.update(str(path.relative_to(package)).encode() + b"\0" + path.read_bytes())
    for group in sorted({r.group for r in ALL.values()}):
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            dist = getattr(ep, "dist", None)
            digest.update(f"{group}:{ep.name}={ep.value}@{dist.version if dist else ''}".encode())
    return digest.hexdigest()


STAGES: Registry = Registry("aidsafe.stages")        # stage kinds: generate, ...
PROVIDERS: Registry = Registry("aidsafe.providers")  # openai, local, mock, ...
OUTPUTS: Registry = Registry("aidsafe.outputs")      # trace, jsonl, aidsafe, sft, ...
STOP_RULES: Registry = Registry("aidsafe.stop_rules")  # agreement, phrase, max_turns, ...
FILTERS: Registry = Registry("aidsafe.filters")      # near_duplicate, regex, length, llm, ...
ALL = {"stages": STAGES, "providers": PROVIDERS, "outputs": OUTPUTS, "stop_rules": STOP_RULES,
       "filters": FILTERS}
