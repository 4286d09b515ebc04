"""`provider: mock` — scripted replies for tests and offline demos; no network.

Rules are tried in order; the first whose conditions all hold answers. Conditions: `stage`,
`agent`, `turn` (tags the stage sets), `sample`, and `prompt` (a regex searched in every
message). `reply` is a string or any YAML value (sent as JSON); `replies` is a list picked by
sample index. With no matching rule the reply is deterministic: an instance of the stage's
`schema` when it has one, else a short text derived from the prompt.

```yaml
models:
  scripted:
    provider: mock
    latency: 0.01            # seconds per call (optional)
    replies:
      - {stage: intents, prompt: "(?i)bomb", reply: {explicit_intents: [make a weapon]}}
      - {agent: agent_b, turn: 2, reply: "I agree with the previous agent."}
      - {stage: seed, replies: ["not json", '{"thoughts": ["ok"], "response": "fine"}']}
```
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from typing import Any, Mapping

from ...spec import ModelSpec
from ..types import Request, Response

RULE = {"type": "object", "additionalProperties": False,
        "properties": {"stage": {"type": "string"}, "agent": {"type": "string"},
                       "turn": {"type": "integer"}, "sample": {"type": "integer"},
                       "prompt": {"type": "string"}, "reply": {},
                       "replies": {"type": "array", "minItems": 1},
                       "finish_reason": {"type": "string"}}}


class MockProvider:
    kind = "mock"
    default_model = "scripted"
    schema: dict[str, Any] = {"properties": {
        "replies": {"type": "array", "items": RULE},
        "latency": {"type": "number", "minimum": 0}}}

    def __init__(self, spec: ModelSpec, transport: Any, shared: dict[str, Any]):
        self.spec = spec
        self.rules = list(spec.options.get("replies", []))
        self.latency = float(spec.options.get("latency", 0))
        self.cache_extra = {"replies": self.rules}
        self._patterns = {i: re.compile(r["prompt"]) for i, r in enumerate(self.rules)
                          if "prompt" in r}

    @staticmethod
    def check(spec: ModelSpec) -> list[tuple[str, str]]:
        problems = []
        for i, rule in enumerate(spec.options.get("replies", [])):
            if "prompt" in rule:
                try:
                    re.compile(rule["prompt"])
                except re.error as exc:
                    problems.append((f"replies[{i}].prompt is not a valid regex: {exc}",
                                     "escape special characters such as ( [ ? with \\",
                                     ("replies", i, "prompt")))
        return problems

    def _matches(self, index: int, rule: Mapping[str, Any], request: Request, text: str) -> bool:
        for key in ("stage", "agent", "turn"):
            if key in rule and request.tags.get(key) != rule[key]:
                return False
        if "sample" in rule and rule["sample"] != request.sample:
            return False
        pattern = self._patterns.get(index)
        return pattern is None or bool(pattern.search(text))

    async def complete(self, request: Request) -> Response:
        if self.latency:
            await asyncio.sleep(self.latency)
        text = "\n".join(str(m.get("content", "")) for m in request.messages)
        finish = "stop"
        for index, rule in enumerate(self.rules):
            if self._matches(index, rule, request, text):
                reply = (rule["replies"][request.sample % len(rule["replies"])]
                         if "replies" in rule else rule.get("reply", ""))
                finish = rule.get("finish_reason", "stop")
                break
        else:
            reply = default_reply(request, text)
        out = reply if isinstance(reply, str) else json.dumps(reply, ensure_ascii=False)
        return Response(text=out, finish_reason=finish, prompt_tokens=len(text.split()),
                        completion_tokens=len(out.split()))

    async def close(self) -> None:
        return None


def default_reply(request: Request, text: str) -> Any:
    digest = hashlib.sha256(f"{request.sample}\n{text}".encode()).hexdigest()[:8]
    if request.schema:
        return example_instance(request.schema, digest)
    return f"mock reply {digest}"


def example_instance(schema: Mapping[str, Any], tag: str) -> Any:
    """A small value valid against common JSON Schema shapes (deterministic for a tag)."""
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0]
    for key in ("anyOf", "oneOf"):
        if schema.get(key):
            return example_instance(schema[key][0], tag)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {k: example_instance(v, f"{tag}-{k}") for k, v in props.items()}
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        return [example_instance(schema.get("items", {}), f"{tag}-{i}") for i in range(count)]
    if kind in ("integer", "number"):
        return schema.get("minimum", 1)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"mock {tag}"
