"""Refiner filters for `refine` (the `aidsafe.filters` registry), applied in order. Each drops
thoughts with a reason; `llm` may also return a checked response.

```yaml
filters:
  - {kind: near_duplicate, threshold: 0.9}        # drop thoughts too similar to an earlier one
  - {kind: regex, drop: ["(?i)as an ai language model"]}
  - {kind: length, min_chars: 12, max_chars: 600}
  - {kind: llm, model: refiner, prompt: refine.j2, max_attempts: 3}
```
Every filter may carry `name:` (the label in the reject ledger; default: its kind). A filter is
a class with `schema`, `build(raw, ctx) -> config` and
`async apply(config, thoughts, response, item, calls, tags) -> Verdict`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .calls import INVALID_KEYS, Ask, ask_model, invalid_policy
from .context import Item
from .loader import BuildContext
from .parsing import compiled, regex_problem
from .stop_rules import similarity

REASONS = ["repetitive", "redundant", "deceptive", "policy_inconsistent"]
TEMPLATE = {"type": "string", "minLength": 1}


@dataclass
class Verdict:
    """Indices (into the thoughts the filter was given) to drop, each with a reason."""

    drops: dict[int, str] = field(default_factory=dict)
    response: str | None = None          # a replacement response, if the filter checked it


class NearDuplicate:
    schema = {"properties": {"threshold": {"type": "number", "minimum": 0, "maximum": 1}}}

    @staticmethod
    def build(raw: dict, ctx: BuildContext) -> float:
        return raw.get("threshold", 0.9)

    @staticmethod
    async def apply(threshold: float, thoughts: list[str], response: str, item: Item,
                    calls: list, tags: dict) -> Verdict:
        verdict, kept = Verdict(), []
        for i, thought in enumerate(thoughts):
            best = max(((similarity(thought, thoughts[j], threshold), j) for j in kept),
                       default=None)
            if best and best[0] >= threshold:
                verdict.drops[i] = (f"near-duplicate of an earlier thought "
                                    f"(similarity {best[0]:.2f}): {thoughts[best[1]][:80]!r}")
            else:
                kept.append(i)
        return verdict


class Regex:
    schema = {"required": ["drop"], "properties": {
        "drop": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}}}}

    @staticmethod
    def build(raw: dict, ctx: BuildContext) -> tuple[str, ...]:
        for i, pattern in enumerate(raw["drop"]):
            if regex_problem(pattern):
                ctx.error(f"drop[{i}] is not a valid regex: {regex_problem(pattern)}",
                          "escape special characters such as ( [ ? with \\", "drop", i)
        return tuple(raw["drop"])

    @staticmethod
    async def apply(patterns: tuple[str, ...], thoughts: list[str], response: str, item: Item,
                    calls: list, tags: dict) -> Verdict:
        verdict = Verdict()
        for i, thought in enumerate(thoughts):
            hit = next((p for p in patterns if compiled(p).search(thought)), None)
            if hit is not None:
                verdict.drops[i] = f"matches /{hit}/"
        return verdict


@dataclass(frozen=True)
class LengthConfig:
    min_chars: int = 0
    max_chars: int | None = None


class Length:
    schema = {"properties": {"min_chars": {"type": "integer", "minimum": 0},
                             "max_chars": {"type": "integer", "minimum": 1}}}

    @staticmethod
    def build(raw: dict, ctx: BuildContext) -> LengthConfig:
        if "min_chars" not in raw and "max_chars" not in raw:
            ctx.error("a length filter needs min_chars or max_chars", "e.g. min_chars: 12")
        return LengthConfig(raw.get("min_chars", 0), raw.get("max_chars"))

    @staticmethod
    async def apply(config: LengthConfig, thoughts: list[str], response: str, item: Item,
                    calls: list, tags: dict) -> Verdict:
        verdict = Verdict()
        for i, thought in enumerate(thoughts):
            size = len(thought.strip())
            if size < config.min_chars:
                verdict.drops[i] = f"shorter than {config.min_chars} characters ({size})"
            elif config.max_chars is not None and size > config.max_chars:
                verdict.drops[i] = f"longer than {config.max_chars} characters ({size})"
        return verdict


def refiner_schema(count: int) -> dict:
    """The refiner's reply for `count` numbered thoughts (indices 1..count)."""
    index = {"type": "integer", "minimum": 1, "maximum": max(count, 1)}
    return {
        "type": "object", "required": ["drop", "response"],
        "properties": {
            "drop": {"type": "array", "maxItems": min(count, 8), "items": {
                "type": "object", "required": ["index", "reason"],
                "properties": {"index": index, "reason": {"enum": REASONS},
                               "why": {"type": "string", "maxLength": 120}}}},
            "response": {"type": "string", "maxLength": 2000}}}


class LLM:
    """The refiner agent. Its template sees `thoughts` (number them from 1) and `response`;
    it answers `{"drop": [{"index", "reason", "why"}], "response": "…"}` (sent as the schema),
    with reason one of repetitive, redundant, deceptive, policy_inconsistent."""

    schema = {"required": ["model"], "properties": {
        "model": {"type": "string"}, "prompt": TEMPLATE, "prompt_text": {"type": "string"},
        "system": TEMPLATE, "system_text": {"type": "string"},
        **INVALID_KEYS, "params": {"type": "object"}}}

    @staticmethod
    def build(raw: dict, ctx: BuildContext) -> Ask | None:
        scope = {**ctx.scope, "thoughts": None, "response": None}
        model = ctx.model(raw["model"], "model")
        system = ctx.template(raw, "system", "system_text", scope=scope, required=False)
        prompt = ctx.template(raw, "prompt", "prompt_text", scope=scope)
        on_invalid, attempts = invalid_policy(raw, ctx)
        if model is None or prompt is None:
            return None
        return Ask(model=raw["model"], prompt=prompt, system=system, parse="json",
                   schema=refiner_schema(8), params=raw.get("params"), max_attempts=attempts,
                   on_invalid=on_invalid)

    @staticmethod
    async def apply(ask: Ask, thoughts: list[str], response: str, item: Item,
                    calls: list, tags: dict) -> Verdict:
        # the schema sent bounds the indices by the thoughts at hand: out of range is invalid
        bounded = dataclasses.replace(ask, schema=refiner_schema(len(thoughts)))
        reply = await ask_model(bounded, item, calls, tags={**tags, "agent": "refiner"},
                                extra={"thoughts": thoughts, "response": response})
        if not isinstance(reply, dict):      # on_invalid: keep_raw, and still invalid
            return Verdict()
        verdict = Verdict(response=reply["response"].strip() or None)
        for drop in reply["drop"]:
            index = int(drop["index"]) - 1
            if index not in verdict.drops:
                why = f": {drop['why'].strip()}" if drop.get("why", "").strip() else ""
                verdict.drops[index] = f"{drop['reason']}{why}"
        return verdict
