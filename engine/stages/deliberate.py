"""`kind: deliberate` — agents take turns extending and correcting a chain of thought until a
stop rule fires (AIDSAFE step 3).

```yaml
- id: deliberation
  kind: deliberate
  init: seed                     # an earlier stage whose result has `thoughts` and `response`
  agents:                        # any number; each with its own model and templates
    - {name: agent_a, model: deliberator, prompt: deliberate.j2}
    - {name: agent_b, model: deliberator, prompt: deliberate.j2, system: strict_system.j2}
  order: round_robin             # or random (seeded by `seed` and the item id: reproducible)
  seed: 0
  schema: {…}                    # the turn reply (default: thoughts, response, agree)
  max_attempts: 3                # an invalid turn is asked again with the next sample index
  stop:                          # any rule ends the loop (see engine/stop_rules.py)
    - agreement: {field: agree}
    - max_turns: 4
```
Each turn the agent's template sees `agent` (name, model), `turn` (1, 2, …), `transcript` (the
init entry then every turn: agent, turn, thoughts, response), `thoughts` (all so far, each with
text, agent, turn) and `response` (the latest), plus everything earlier stages produced. A turn
replies JSON with new `thoughts` (appended, tagged with agent and turn) and an updated
`response` (replaces the previous one when not empty). The result: `thoughts` (strings),
`thought_log`, `response`, `turns`, `stopped_by` ({rule, reason}).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..calls import CALL_KEYS, INVALID_KEYS, Ask, ask_model, build_ask
from ..context import Item
from ..errors import ItemError
from ..loader import BuildContext
from ..schema import suggest
from ..spec import StageSpec
from ..stop_rules import Turn, build_stop, first_fired, stop_schema

TEMPLATE = {"type": "string", "minLength": 1}
TURN_SCHEMA = {
    "type": "object", "required": ["thoughts", "response", "agree"],
    "properties": {
        "thoughts": {"type": "array", "maxItems": 5,
                     "items": {"type": "string", "minLength": 1, "maxLength": 400}},
        "response": {"type": "string", "maxLength": 2000},
        "agree": {"type": "boolean"}}}
TURN_NAMES = {"agent": frozenset({"name", "model"}), "turn": None, "transcript": None,
              "thoughts": None, "response": None}
RESULT = frozenset({"thoughts", "thought_log", "response", "turns", "stopped_by"})


@dataclass(frozen=True)
class Agent:
    name: str
    ask: Ask


@dataclass(frozen=True)
class DeliberateConfig:
    init: str | None
    agents: tuple[Agent, ...]
    order: str
    seed: int
    stop: tuple[tuple[str, Any], ...]


def _schema() -> dict[str, Any]:
    agent = {"type": "object", "additionalProperties": False, "required": ["name", "model"],
             "properties": {"name": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
                            **CALL_KEYS}}
    return {"required": ["agents", "stop"], "properties": {
        "init": {"type": "string"}, "agents": {"type": "array", "minItems": 1, "items": agent},
        "order": {"enum": ["round_robin", "random"]}, "seed": {"type": "integer"},
        "schema": {"type": "object"}, **INVALID_KEYS,
        "params": {"type": "object"}, "system": TEMPLATE, "system_text": {"type": "string"},
        "stop": stop_schema()}}


class Deliberate:
    schema = staticmethod(_schema)

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> DeliberateConfig | None:
        init = raw.get("init")
        if init is not None:
            _check_init(init, ctx)
        agents = tuple(a for a in (_agent(raw, i, ctx) for i in range(len(raw["agents"]))) if a)
        names = [a["name"] for a in raw["agents"]]
        for i, name in enumerate(names):
            if name in names[:i]:
                ctx.error(f"agent name {name!r} is used twice", "give every agent its own name",
                          "agents", i, "name")
        stop = build_stop(raw["stop"], ctx)
        _check_agreement(stop, agents, ctx)
        if len(agents) != len(raw["agents"]):
            return None
        return DeliberateConfig(init=init, agents=agents, order=raw.get("order", "round_robin"),
                                seed=raw.get("seed", 0), stop=stop)

    @staticmethod
    def shape(config: DeliberateConfig) -> frozenset[str]:
        return RESULT

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> dict[str, Any]:
        return await _Loop(stage, item).run()


def _check_init(init: str, ctx: BuildContext) -> None:
    if init not in ctx.scope or init in ("input", "vars", "policies"):
        hint = (f"{init!r} runs later; init names an earlier stage" if init in ctx.later
                else suggest(init, [s for s in ctx.scope if s not in ("input", "vars",
                                                                      "policies")]))
        ctx.error(f"init names no earlier stage: {init!r}", hint, "init")
        return
    keys = ctx.scope[init]
    if keys is not None and not {"thoughts", "response"} <= keys:
        ctx.error(f"stage {init!r} has no thoughts and response to start from",
                  "its schema needs properties `thoughts` (a list) and `response`", "init")


def _agent(raw: dict[str, Any], index: int, ctx: BuildContext) -> Agent | None:
    sub = ctx.at("agents", index)
    spec = raw["agents"][index]
    ask = build_ask(spec, raw, sub, {**ctx.scope, **TURN_NAMES}, TURN_SCHEMA)
    return Agent(name=spec["name"], ask=ask) if ask else None


def _check_agreement(stop: tuple, agents: tuple[Agent, ...], ctx: BuildContext) -> None:
    """An agreement field the turn schema does not have would never fire."""
    for i, (name, field) in enumerate(stop):
        if name != "agreement":
            continue
        for agent in agents:
            props = (agent.ask.schema or {}).get("properties")
            if props is not None and field not in props:
                ctx.error(f"agreement field {field!r} is not in agent {agent.name}'s turn "
                          "schema, so it would never fire", suggest(field, props),
                          "stop", i, "agreement")
                return


class _Loop:
    """One item's deliberation."""

    def __init__(self, stage: StageSpec, item: Item):
        self.stage, self.item, self.config = stage, item, stage.config
        self.calls: list[dict] = []
        self.record: dict[str, Any] = {"calls": self.calls}
        item.stages[stage.id] = self.record
        seed = item.values.get(self.config.init) if self.config.init else None
        thoughts, response = _start(seed, self.config.init)
        self.log = [{"text": t, "agent": self.config.init, "turn": 0} for t in thoughts]
        self.response = response
        self.transcript = [{"agent": self.config.init or "start", "turn": 0,
                            "thoughts": list(thoughts), "response": response}]
        self.rng = random.Random(f"{self.config.seed}\0{item.id}")
        self.previous: Agent | None = None

    def pick(self, number: int) -> Agent:
        agents = self.config.agents
        if self.config.order == "round_robin":
            return agents[(number - 1) % len(agents)]
        choices = [a for a in agents if a is not self.previous] or list(agents)
        return self.rng.choice(choices)

    async def run(self) -> dict[str, Any]:
        number, fired, tokens = 0, None, 0
        while fired is None:
            number += 1
            agent = self.previous = self.pick(number)
            before = len(self.calls)
            reply = await ask_model(agent.ask, self.item, self.calls, tags={
                "stage": self.stage.id, "agent": agent.name, "turn": number},
                extra=self.extra(agent, number))
            tokens += sum(c["prompt_tokens"] + c["completion_tokens"]
                          for c in self.calls[before:])
            turn = self.apply(agent, number, reply, tokens)
            fired = first_fired(self.config.stop, turn)
        stopped = fired
        self.record.update(transcript=self.transcript, stopped_by=stopped,
                           stats={"turns": number, f"stopped_by.{fired['rule']}": 1})
        return {"thoughts": [t["text"] for t in self.log], "thought_log": self.log,
                "response": self.response, "turns": number, "stopped_by": stopped}

    def extra(self, agent: Agent, number: int) -> dict[str, Any]:
        return {"agent": {"name": agent.name, "model": agent.ask.model}, "turn": number,
                "transcript": self.transcript, "thoughts": self.log, "response": self.response}

    def apply(self, agent: Agent, number: int, reply: Any, tokens: int) -> Turn:
        new = _strings(reply.get("thoughts") if isinstance(reply, dict) else None,
                       f"turn {number} of {agent.name}")
        previous, earlier = self.response, [t["text"] for t in self.log]
        candidate = reply.get("response") if isinstance(reply, dict) else None
        if isinstance(candidate, str) and candidate.strip():
            self.response = candidate.strip()
        self.log += [{"text": t, "agent": agent.name, "turn": number} for t in new]
        self.transcript.append({"agent": agent.name, "turn": number, "thoughts": new,
                                "response": self.response})
        return Turn(number=number, agent=agent.name, raw=self.calls[-1]["raw"], parsed=reply,
                    tokens=tokens, previous_response=previous, response=self.response,
                    new_thoughts=new, earlier_thoughts=earlier)


def _strings(value: Any, where: str) -> list[str]:
    """Thoughts as a list of non-empty strings (one string counts as one thought)."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise ItemError(f"{where}: thoughts must be a list of strings, got {value!r:.80}",
                        kind="bad_value")
    return [str(v).strip() for v in value if str(v).strip()]


def _start(seed: Any, init: str | None) -> tuple[list[str], str]:
    if init is None:
        return [], ""
    if not isinstance(seed, dict) or not isinstance(seed.get("response", ""), str):
        raise ItemError(f"init stage {init!r} gave no thoughts/response to start from",
                        kind="bad_init")
    return _strings(seed.get("thoughts"), f"init stage {init!r}"), seed.get("response", "").strip()
