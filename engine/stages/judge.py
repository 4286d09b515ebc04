"""`kind: judge` — one or more judge models score each item on named integer scales; the
scores are averaged over the judges and each judge's own scores and rationale are kept.

```yaml
- id: grade
  kind: judge
  models: [judge_a, judge_b]     # or `model: judge`
  prompt: grade.j2               # the rubric; sees `scores` ({name: [low, high]}) too
  scores:
    relevance: [1, 5]
    faithfulness_policy_cot: [1, 5]
  max_attempts: 3                # a reply missing a score or out of range is invalid
```
Each judge answers JSON with every score and a short `rationale` (sent as the schema, so the
ranges are enforced by the grammar where the server supports it, and checked again here).
The result: `scores` (the mean of the judges, per name), `judges` ({model: {scores,
rationale}}).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

from ..calls import JUDGE_KEYS, Ask, ask_model, judge_asks
from ..context import Item
from ..loader import BuildContext
from ..spec import StageSpec

RESULT = frozenset({"scores", "judges"})


@dataclass(frozen=True)
class JudgeConfig:
    asks: tuple[Ask, ...]
    scores: Mapping[str, tuple[int, int]]


def reply_schema(scores: Mapping[str, tuple[int, int]]) -> dict[str, Any]:
    props: dict[str, Any] = {name: {"type": "integer", "minimum": low, "maximum": high}
                             for name, (low, high) in scores.items()}
    props["rationale"] = {"type": "string", "maxLength": 400}
    return {"type": "object", "required": [*scores, "rationale"], "properties": props}


class Judge:
    schema: dict[str, Any] = {"required": ["scores"], "properties": {
        **JUDGE_KEYS,
        "scores": {"type": "object", "minProperties": 1, "additionalProperties": {
            "type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "integer"},
            "description": "[lowest, highest] of an integer scale"}}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> JudgeConfig | None:
        scores = {name: (low, high) for name, (low, high) in raw["scores"].items()}
        for name, (low, high) in scores.items():
            if low >= high:
                ctx.error(f"score {name!r}: the lowest must be below the highest",
                          "e.g. [1, 5]", "scores", name)
        asks = judge_asks(raw, ctx, {**ctx.scope, "scores": frozenset(scores)},
                          reply_schema(scores))
        return JudgeConfig(asks, scores) if asks else None

    @staticmethod
    def shape(config: JudgeConfig) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        config: JudgeConfig = stage.config
        calls: list[dict] = []
        item.stages[stage.id] = {"calls": calls}
        extra = {"scores": {k: list(v) for k, v in config.scores.items()}}
        replies = await asyncio.gather(*(
            ask_model(ask, item, calls, tags={"stage": stage.id, "agent": ask.model},
                      extra=extra) for ask in config.asks))
        judges = {}
        for ask, reply in zip(config.asks, replies, strict=True):
            if isinstance(reply, dict):      # on_invalid: keep_raw leaves the raw text
                judges[ask.model] = {"scores": {n: reply[n] for n in config.scores},
                                     "rationale": reply.get("rationale", "")}
        means = {name: round(sum(j["scores"][name] for j in judges.values()) / len(judges), 4)
                 for name in config.scores} if judges else {}
        return {"scores": means, "judges": judges}
