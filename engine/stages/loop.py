"""`kind: loop` — rounds of model calls that feed each other until a stop rule fires; e.g.
the ear-whisperer: a whisperer writes a belief, a target reasons with it, a judge scores the
result, and the whisperer tries again with its earlier beliefs and their scores in view.

```yaml
- id: whisper
  kind: loop
  steps:                         # run in order each turn; each is a JSON model call
    - {id: belief, model: whisperer, prompt: whisper.j2, schema: {…}}
    - {id: attempt, model: target, prompt: target.j2, schema: {…}}
    - {id: verdict, model: judge, prompt: judge.j2, schema: {…}}
  max_attempts: 3                # defaults for the steps: system, schema, params, on_invalid
  stop:                          # see engine/stop_rules.py
    - score: {step: verdict, field: violation, at_least: 4}
    - max_turns: 4
```
A step's templates see `turn` (1, 2, …), `history` (every earlier turn: `turn` plus each
step's result by its id), the results of the earlier steps of this turn by their ids, plus
everything earlier stages produced. The result: `history` (all turns), `last` (the last
turn's step results), `turns`, `stopped_by` ({rule, reason}).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..calls import CALL_KEYS, INVALID_KEYS, Ask, ask_model, build_ask
from ..context import Item
from ..loader import BuildContext
from ..spec import StageSpec
from ..stop_rules import Turn, build_stop, first_fired, stop_schema

NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"}
RESULT = frozenset({"history", "last", "turns", "stopped_by"})


@dataclass(frozen=True)
class Step:
    id: str
    ask: Ask


@dataclass(frozen=True)
class LoopConfig:
    steps: tuple[Step, ...]
    stop: tuple[tuple[str, Any], ...]


def _schema() -> dict[str, Any]:
    step = {"type": "object", "additionalProperties": False, "required": ["id", "model"],
            "properties": {"id": NAME, **CALL_KEYS}}
    return {"required": ["steps", "stop"], "properties": {
        "steps": {"type": "array", "minItems": 1, "items": step},
        "system": {"type": "string", "minLength": 1}, "system_text": {"type": "string"},
        "schema": {"type": "object"}, "params": {"type": "object"}, **INVALID_KEYS,
        "stop": stop_schema()}}


class Loop:
    schema = staticmethod(_schema)

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> LoopConfig | None:
        scope = {**ctx.scope, "turn": None, "history": None}
        steps = []
        for index, spec in enumerate(raw["steps"]):
            sub = ctx.at("steps", index)
            if spec["id"] in scope:
                sub.error(f"step id {spec['id']!r} is already a name here",
                          "give the step another id", "id")
            ask = build_ask(spec, raw, sub, scope, None)
            if ask is not None:
                steps.append(Step(spec["id"], ask))
            scope[spec["id"]] = _keys(ask)
        stop = build_stop(raw["stop"], ctx)
        for i, (name, config) in enumerate(stop):
            if name == "score" and config.step not in {s["id"] for s in raw["steps"]}:
                ctx.error(f"score names no step: {config.step!r}",
                          "use the id of one of this loop's steps", "stop", i, "score", "step")
        if len(steps) != len(raw["steps"]):
            return None
        return LoopConfig(tuple(steps), stop)

    @staticmethod
    def shape(config: LoopConfig) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        config: LoopConfig = stage.config
        calls: list[dict] = []
        item.stages[stage.id] = record = {"calls": calls}
        history: list[dict[str, Any]] = []
        number, fired, tokens = 0, None, 0
        while fired is None:
            number += 1
            values: dict[str, Any] = {}
            for step in config.steps:
                before = len(calls)
                values[step.id] = await ask_model(
                    step.ask, item, calls, tags={"stage": stage.id, "agent": step.id,
                                                 "turn": number},
                    extra={"turn": number, "history": history, **values})
                tokens += sum(c["prompt_tokens"] + c["completion_tokens"]
                              for c in calls[before:])
            history.append({"turn": number, **values})
            fired = first_fired(config.stop, Turn(
                number=number, agent=config.steps[-1].id, raw=calls[-1]["raw"],
                parsed=values[config.steps[-1].id], tokens=tokens, previous_response="",
                response="", values=values))
        record.update(stopped_by=fired, stats={"turns": number,
                                               f"stopped_by.{fired['rule']}": 1})
        return {"history": history, "last": history[-1], "turns": number, "stopped_by": fired}


def _keys(ask: Ask | None) -> frozenset[str] | None:
    props = (ask.schema or {}).get("properties") if ask else None
    return frozenset(props) if props else None
