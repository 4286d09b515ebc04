"""`kind: pairwise` — judges compare two samples for the same prompt (e.g. AIDSAFE against
the zero-shot baseline), each judge asked twice with the positions swapped to cancel order
bias; A wins only when it wins both ways.

```yaml
input:                           # run A's dataset, each row joined with run B's row
  path: ../runs/aidsafe/dataset.jsonl
  join: {path: ../runs/zero-shot-cot/dataset.jsonl, on: prompt, as: b}
stages:
  - id: compare
    kind: pairwise
    models: [judge_a, judge_b]   # or model: judge
    prompt: pairwise.j2          # sees `first` and `second`, each {thoughts, response}
    a: {thoughts: "{{ input.thoughts }}", response: "{{ input.response }}"}
    b: {thoughts: "{{ input.b.thoughts }}", response: "{{ input.b.response }}"}
```
Each judge answers `{"winner": "first" | "second" | "tie", "rationale": …}`. The result:
`judges` ({model: {ab, ba, outcome}}: `ab` the winner with A shown first, `ba` with B first,
each "a", "b" or "tie"; `outcome` "win" (A both times), "loss" (B both times) or "tie") and
`outcome` (the judges' majority, for A). The manifest counts `outcome.win|tie|loss`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Mapping

from ..calls import JUDGE_KEYS, Ask, ask_model, judge_asks
from ..context import Item
from ..errors import ItemError
from ..loader import BuildContext
from ..spec import StageSpec

RESULT = frozenset({"judges", "outcome"})
SIDE = {"type": "object", "additionalProperties": False, "required": ["thoughts", "response"],
        "properties": {"thoughts": {"type": "string"}, "response": {"type": "string"}}}
REPLY = {"type": "object", "required": ["winner", "rationale"],
         "properties": {"winner": {"enum": ["first", "second", "tie"]},
                        "rationale": {"type": "string", "maxLength": 400}}}


@dataclass(frozen=True)
class PairwiseConfig:
    asks: tuple[Ask, ...]
    a: Mapping[str, str]
    b: Mapping[str, str]


class Pairwise:
    schema: dict[str, Any] = {"required": ["a", "b"], "properties": {
        **JUDGE_KEYS, "a": SIDE, "b": SIDE}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> PairwiseConfig | None:
        for side in ("a", "b"):
            for key, text in raw[side].items():
                ctx.check_text(text, side, key)
        sample = frozenset({"thoughts", "response"})
        asks = judge_asks(raw, ctx, {**ctx.scope, "first": sample, "second": sample}, REPLY)
        return PairwiseConfig(asks, raw["a"], raw["b"]) if asks else None

    @staticmethod
    def shape(config: PairwiseConfig) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        config: PairwiseConfig = stage.config
        calls: list[dict] = []
        record = item.stages[stage.id] = {"calls": calls}
        a, b = (_sample(item, side, f"stage {stage.id!r} {name}")
                for side, name in ((config.a, "a"), (config.b, "b")))
        judges = dict(zip([ask.model for ask in config.asks], await asyncio.gather(
            *(_judge(ask, item, calls, stage.id, a, b) for ask in config.asks)), strict=True))
        wins = sum(j["outcome"] == "win" for j in judges.values())
        losses = sum(j["outcome"] == "loss" for j in judges.values())
        outcome = "win" if wins > losses else "loss" if losses > wins else "tie"
        record["stats"] = {f"outcome.{outcome}": 1}
        return {"judges": judges, "outcome": outcome}


def _sample(item: Item, side: Mapping[str, str], where: str) -> dict[str, Any]:
    context = item.context()
    thoughts = item.templates.evaluate(side["thoughts"], context, f"{where} thoughts")
    if not isinstance(thoughts, list) or not all(isinstance(t, str) for t in thoughts):
        raise ItemError(f"{where}: thoughts must be a list of strings", kind="bad_value")
    return {"thoughts": thoughts,
            "response": str(item.templates.evaluate(side["response"], context,
                                                    f"{where} response"))}


async def _judge(ask: Ask, item: Item, calls: list, stage: str, a: dict, b: dict
                 ) -> dict[str, str]:
    """The judge both ways: A first, then B first."""
    first, second = await asyncio.gather(*(
        ask_model(ask, item, calls, tags={"stage": stage, "agent": ask.model, "turn": turn},
                  extra={"first": x, "second": y})
        for turn, (x, y) in ((1, (a, b)), (2, (b, a)))))
    ab = {"first": "a", "second": "b"}.get(_winner(first), "tie")
    ba = {"first": "b", "second": "a"}.get(_winner(second), "tie")
    outcome = "win" if ab == ba == "a" else "loss" if ab == ba == "b" else "tie"
    return {"ab": ab, "ba": ba, "outcome": outcome}


def _winner(reply: Any) -> str:
    return reply.get("winner", "tie") if isinstance(reply, dict) else "tie"
