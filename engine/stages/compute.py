"""`kind: compute` — a value built from templates, no model called: to rename or reshape
what earlier stages (or the input) hold, so later stages and outputs read one shape.

```yaml
- id: chosen
  kind: compute
  fields:                        # a lone {{ expression }} keeps its type (a list stays a list)
    thoughts: "{{ input.thoughts }}"
    response: "{{ input.response }}"
```
The result is the object of the fields: `{{ chosen.thoughts }}` in later templates.
"""

from __future__ import annotations

from typing import Any, Mapping

from ..context import Item
from ..loader import BuildContext
from ..spec import StageSpec


class Compute:
    schema: dict[str, Any] = {"required": ["fields"], "properties": {"fields": {
        "type": "object", "minProperties": 1, "additionalProperties": {"type": "string"}}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> Mapping[str, str]:
        for name, text in raw["fields"].items():
            ctx.check_text(text, "fields", name)
        return dict(raw["fields"])

    @staticmethod
    def shape(config: Mapping[str, str]) -> frozenset[str]:
        return frozenset(config)

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        context = item.context()
        item.stages[stage.id] = {}
        return {name: item.templates.evaluate(text, context, f"stage {stage.id!r} {name}")
                for name, text in stage.config.items()}
