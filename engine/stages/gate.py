"""`kind: gate` — keep or drop an item by conditions on what earlier stages produced, with
the reason for every drop (e.g. keep a DPO pair only when the rejected sample violates the
policies and the chosen one complies). No model is called.

```yaml
- id: pair
  kind: gate
  keep:                          # every condition must hold; each that fails is a reason
    - if: "{{ whisper.last.verdict.violation >= 4 }}"
      reason: the rejected sample does not violate the policies
    - if: "{{ chosen_check.violation <= 2 }}"
      reason: the chosen sample is not compliant
```
The result: `kept` (true or false) and `reasons` (why it was dropped). A dropped item is not
a failure: it stays in the trace; outputs skip it with `when: "{{ pair.kept }}"`. The
manifest counts `kept` and `dropped` per stage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..context import Item
from ..loader import BuildContext
from ..spec import StageSpec
from ..templates import truthy

RESULT = frozenset({"kept", "reasons"})


@dataclass(frozen=True)
class Condition:
    test: str
    reason: str


class Gate:
    schema: dict[str, Any] = {"required": ["keep"], "properties": {"keep": {
        "type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False, "required": ["if", "reason"],
            "properties": {"if": {"type": "string", "minLength": 1},
                           "reason": {"type": "string", "minLength": 1}}}}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> tuple[Condition, ...]:
        for i, cond in enumerate(raw["keep"]):
            if "{{" not in cond["if"]:
                ctx.error("`if` must be a Jinja expression",
                          "write it as \"{{ verdict.score >= 4 }}\"", "keep", i, "if")
            else:
                ctx.check_text(cond["if"], "keep", i, "if")
        return tuple(Condition(c["if"], c["reason"]) for c in raw["keep"])

    @staticmethod
    def shape(config: tuple[Condition, ...]) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        context = item.context()
        reasons = [c.reason for c in stage.config
                   if not truthy(item.templates.evaluate(c.test, context,
                                                         f"stage {stage.id!r} keep"))]
        kept = not reasons
        item.stages[stage.id] = {"stats": {"kept" if kept else "dropped": 1}}
        return {"kept": kept, "reasons": reasons}
