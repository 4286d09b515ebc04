"""`kind: refine` — the refiner (AIDSAFE step 4): filters applied in order drop thoughts, each
drop recorded with the filter and the reason; an `llm` filter may also check the response.

```yaml
- id: refine
  kind: refine
  thoughts: "{{ deliberation.thoughts }}"     # a list of strings
  response: "{{ deliberation.response }}"     # optional
  filters:                                    # see engine/filters.py
    - {kind: near_duplicate, threshold: 0.9}
    - {kind: regex, drop: ["(?i)as an ai language model"]}
    - {kind: length, min_chars: 12}
    - {kind: llm, model: refiner, prompt: refine.j2, max_attempts: 3}
```
The result: `thoughts` (kept, in order), `response`, and `dropped` (the reject ledger: each
dropped thought with its `filter` and `reason`). The trace adds the calls and, per filter,
how many thoughts it dropped; the manifest sums those per filter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..context import Item
from ..errors import ItemError
from ..loader import BuildContext
from ..registry import FILTERS
from ..schema import kinds
from ..spec import StageSpec

RESULT = frozenset({"thoughts", "response", "dropped"})


@dataclass(frozen=True)
class Filter:
    kind: str
    name: str
    config: Any


@dataclass(frozen=True)
class RefineConfig:
    thoughts: str
    response: str | None
    filters: tuple[Filter, ...]


def _schema() -> dict[str, Any]:
    common = {"kind": {"type": "string"}, "name": {"type": "string", "minLength": 1}}
    return {"required": ["thoughts", "filters"], "properties": {
        "thoughts": {"type": "string", "minLength": 1,
                     "description": "a template giving the list of thoughts"},
        "response": {"type": "string"},
        "filters": {"type": "array", "minItems": 1,
                    "items": kinds(FILTERS, "kind", common, ["kind"])}}}


class Refine:
    schema = staticmethod(_schema)

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> RefineConfig:
        ctx.check_text(raw["thoughts"], "thoughts")
        if "response" in raw:
            ctx.check_text(raw["response"], "response")
        filters, names = [], []
        for i, spec in enumerate(raw["filters"]):
            sub = ctx.at("filters", i)
            name = spec.get("name", spec["kind"])
            if name in names:
                sub.error(f"two filters are named {name!r}",
                          "add `name:` to tell them apart in the reject ledger")
            names.append(name)
            filters.append(Filter(spec["kind"], name, FILTERS.get(spec["kind"]).build(spec, sub)))
        return RefineConfig(raw["thoughts"], raw.get("response"), tuple(filters))

    @staticmethod
    def shape(config: RefineConfig) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        config: RefineConfig = stage.config
        thoughts, response = _inputs(stage, config, item)
        calls: list[dict] = []
        ledger: list[dict] = []
        stats: dict[str, int] = {}
        item.stages[stage.id] = {"calls": calls, "stats": stats}
        for flt in config.filters:
            verdict = await FILTERS.get(flt.kind).apply(
                flt.config, thoughts, response, item, calls, {"stage": stage.id})
            ledger += [{"thought": thoughts[i], "filter": flt.name, "reason": reason}
                       for i, reason in sorted(verdict.drops.items())]
            stats[f"dropped.{flt.name}"] = len(verdict.drops)
            thoughts = [t for i, t in enumerate(thoughts) if i not in verdict.drops]
            if verdict.response is not None and verdict.response != response:
                stats["response_changed"] = 1
                response = verdict.response
        return {"thoughts": thoughts, "response": response, "dropped": ledger}


def _inputs(stage: StageSpec, config: RefineConfig, item: Item) -> tuple[list[str], str]:
    where = f"stage {stage.id!r}"
    thoughts = item.templates.evaluate(config.thoughts, item.context(), f"{where} thoughts")
    if not isinstance(thoughts, list) or not all(isinstance(t, str) for t in thoughts):
        raise ItemError(f"thoughts must be a list of strings, got {type(thoughts).__name__}",
                        kind="bad_value")
    response = (item.templates.evaluate(config.response, item.context(), f"{where} response")
                if config.response else "")
    return list(thoughts), str(response)
