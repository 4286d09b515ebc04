"""Stage kinds. Each is registered in the `aidsafe.stages` registry (setup.cfg entry points)
and follows `StageKind`; adding one never edits the runner."""

from __future__ import annotations

from typing import Any, Protocol

from ..context import Item
from ..loader import BuildContext
from ..spec import StageSpec


class StageKind(Protocol):
    """`schema`: JSON Schema properties of the kind's own YAML keys (merged into the contract).
    `build`: YAML mapping -> frozen config, recording problems on ctx (templates are checked
    there). `shape`: the keys of the stage's result, for checking `{{ stage.key }}` in later
    templates (None: unknown). `run`: the stage for one item; returns its result and keeps
    its calls in `item.stages[stage.id]`."""

    schema: dict[str, Any]

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> Any: ...

    @staticmethod
    def shape(config: Any) -> frozenset[str] | None: ...

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> Any: ...
