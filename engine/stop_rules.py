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

from .parsing import compiled, regex_problem


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


def similarity(a: str, b: str) -> float:
    """Deterministic text similarity in [0, 1] (difflib ratio on normalised text)."""
    a, b = " ".join(a.lower().split()), " ".join(b.lower().split())
    if a == b:
        return 1.0
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


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
        same_response = similarity(turn.response, turn.previous_response) >= config.similarity
        same_thoughts = all(
            any(similarity(new, old) >= config.similarity for old in turn.earlier_thoughts)
            for new in turn.new_thoughts)
        still = {"response": same_response, "thoughts": same_thoughts,
                 "both": same_response and same_thoughts}[config.on]
        return f"turn {turn.number} changed nothing (similarity >= {config.similarity})" \
            if still else None
