"""Stop rules for `deliberate` (the `aidsafe.stop_rules` registry). A stage's `stop:` is a list of
one-key mappings; the loop ends after the first turn on which any rule fires, and the record
says which rule fired and why.

```yaml
stop:
  - agreement: {field: agree}                  # the turn's parsed `agree` is true
  - phrase: "(?i)I agree with the previous agent"   # a regex found in the raw turn
  - max_turns: 6                               # the deliberation budget
  - max_tokens: 8000                           # prompt + completion tokens of this stage, per item
  - no_change: {similarity: 0.95, on: both}    # the turn changed nothing beyond this similarity
```
A rule is a class with `schema` (the JSON Schema of its value), `bounds` (whether it alone
guarantees the loop ends), `build(value) -> config` and `check(config, turn) -> reason | None`.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from .loader import BuildContext
from .parsing import compiled, regex_problem
from .registry import STOP_RULES


@dataclass
class Turn:
    """What the rules see after a turn."""

    number: int
    agent: str
    raw: str
    parsed: Any
    tokens: int                                  # this stage's tokens so far, for this item
    previous_response: str
    response: str
    new_thoughts: list[str] = field(default_factory=list)
    earlier_thoughts: list[str] = field(default_factory=list)
    values: dict[str, Any] = field(default_factory=dict)   # a loop turn's step results


def stop_schema() -> dict[str, Any]:
    """A `stop:` list: one-key mappings, one per registered rule."""
    rules = {name: rule.schema for name, rule in STOP_RULES}
    return {"type": "array", "minItems": 1, "items": {
        "type": "object", "minProperties": 1, "maxProperties": 1,
        "additionalProperties": False, "properties": rules}}


def build_stop(raw: list[dict], ctx: BuildContext) -> tuple[tuple[str, Any], ...]:
    """The rules of a `stop:` list; at least one must bound the loop."""
    rules = []
    for i, entry in enumerate(raw):
        (name, value), = entry.items()
        rule = STOP_RULES.get(name)
        problem = getattr(rule, "problem", lambda v: None)(value)
        if problem:
            ctx.error(f"stop rule {name}: {problem}", "fix the value", "stop", i, name)
        rules.append((name, rule.build(value)))
    if not any(STOP_RULES.get(name).bounds for name, _ in rules):
        ctx.error("no stop rule bounds the loop", "add `- max_turns: 6` (the budget) or "
                  "`- max_tokens: …`", "stop")
    return tuple(rules)


def first_fired(stop: tuple[tuple[str, Any], ...], turn: Turn) -> dict[str, str] | None:
    """`{rule, reason}` of the first rule that fires after this turn, or None."""
    for name, config in stop:
        reason = STOP_RULES.get(name).check(config, turn)
        if reason:
            return {"rule": name, "reason": reason}
    return None


def similarity(a: str, b: str, at_least: float = 0.0) -> float:
    """Deterministic text similarity in [0, 1] (difflib ratio on normalised text). With
    `at_least`, a pair whose cheap upper bounds fall short returns that bound instead of the
    exact ratio (the comparison with the threshold comes out the same, much faster)."""
    a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
    if a == b:
        return 1.0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for bound in (matcher.real_quick_ratio, matcher.quick_ratio):
        value = bound()
        if value < at_least:
            return value
    return matcher.ratio()


class Agreement:
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"field": {"type": "string", "minLength": 1}}}
    bounds = False

    @staticmethod
    def build(value: dict) -> str:
        return value.get("field", "agree")

    @staticmethod
    def check(config: str, turn: Turn) -> str | None:
        agreed = isinstance(turn.parsed, dict) and turn.parsed.get(config) is True
        return f"{turn.agent} set {config}=true" if agreed else None


class Phrase:
    schema = {"type": "string", "minLength": 1}
    bounds = False

    @staticmethod
    def build(value: str) -> str:
        return value

    @staticmethod
    def problem(value: str) -> str | None:
        return regex_problem(value)

    @staticmethod
    def check(config: str, turn: Turn) -> str | None:
        found = compiled(config).search(turn.raw)
        return f"{turn.agent} wrote {found.group(0)!r}" if found else None


@dataclass(frozen=True)
class ScoreConfig:
    step: str
    field: str
    at_least: float | None
    at_most: float | None


class Score:
    """A judge's verdict ends the loop: `score: {step: verdict, field: violation,
    at_least: 4}` fires when that step's parsed field reaches the threshold (`at_most` for a
    score that must fall)."""

    schema = {"type": "object", "additionalProperties": False, "required": ["step", "field"],
              "properties": {"step": {"type": "string"}, "field": {"type": "string"},
                             "at_least": {"type": "number"}, "at_most": {"type": "number"}}}
    bounds = False

    @staticmethod
    def build(value: dict) -> ScoreConfig:
        return ScoreConfig(value["step"], value["field"], value.get("at_least"),
                           value.get("at_most"))

    @staticmethod
    def problem(value: dict) -> str | None:
        if ("at_least" in value) == ("at_most" in value):
            return "give exactly one of at_least and at_most"
        return None

    @staticmethod
    def check(config: ScoreConfig, turn: Turn) -> str | None:
        step = turn.values.get(config.step)
        score = step.get(config.field) if isinstance(step, dict) else None
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            return None
        hit = (score >= config.at_least if config.at_least is not None
               else score <= config.at_most)
        bound = (f">= {config.at_least}" if config.at_least is not None
                 else f"<= {config.at_most}")
        return f"{config.step}.{config.field} = {score:g} {bound}" if hit else None


class _Budget:
    """A limit that ends the loop on its own."""

    schema = {"type": "integer", "minimum": 1}
    bounds = True

    @staticmethod
    def build(value: int) -> int:
        return value


class MaxTurns(_Budget):
    @staticmethod
    def check(config: int, turn: Turn) -> str | None:
        return f"{turn.number} of {config} turns used" if turn.number >= config else None


class MaxTokens(_Budget):
    @staticmethod
    def check(config: int, turn: Turn) -> str | None:
        return f"{turn.tokens} tokens used (budget {config})" if turn.tokens >= config else None


@dataclass(frozen=True)
class NoChangeConfig:
    similarity: float
    on: str


class NoChange:
    schema = {"type": "object", "additionalProperties": False,
              "properties": {"similarity": {"type": "number", "minimum": 0, "maximum": 1},
                             "on": {"enum": ["response", "thoughts", "both"]}}}
    bounds = False

    @staticmethod
    def build(value: dict) -> NoChangeConfig:
        return NoChangeConfig(value.get("similarity", 0.95), value.get("on", "both"))

    @staticmethod
    def check(config: NoChangeConfig, turn: Turn) -> str | None:
        same_response = similarity(turn.response, turn.previous_response,
                                   config.similarity) >= config.similarity
        same_thoughts = all(
            any(similarity(new, old, config.similarity) >= config.similarity
                for old in turn.earlier_thoughts)
            for new in turn.new_thoughts)
        still = {"response": same_response, "thoughts": same_thoughts,
                 "both": same_response and same_thoughts}[config.on]
        return f"turn {turn.number} changed nothing (similarity >= {config.similarity})" \
            if still else None
