"""`kind: generate` — one model call per sample, parsed and validated.

```yaml
- id: intents
  kind: generate
  model: writer
  system: system.j2                  # or system_text: "You are …" (optional)
  prompt: intents.j2                 # or prompt_text: "List the intents of {{ input.prompt }}"
  parse: json                        # text | json | lines | {regex: "…"} | {tag: answer}
  schema: {type: object, required: [explicit_intents],
           properties: {explicit_intents: {type: array, items: {type: string}, maxItems: 5}}}
  samples: 1                         # >1: the result is a list, one entry per sample
  on_invalid: retry                  # retry (default) | fail | keep_raw: see README
  max_attempts: 3                    # retry: asked again with the next sample index, then fail
  params: {max_tokens: 256}          # overrides the model's params for this stage
  when: "{{ input.category != 'benign' }}"
```
The result is the parsed value: `{{ intents.explicit_intents }}` in later templates.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

from ..context import Item
from ..loader import BuildContext
from ..parsing import PARSE_SCHEMA, regex_problem, schema_problem
from ..spec import StageSpec
from ..calls import INVALID_KEYS, Ask, ask_model, invalid_policy

TEMPLATE = {"type": "string", "minLength": 1}


@dataclass(frozen=True)
class GenerateConfig(Ask):
    """An `Ask` plus the number of independent samples."""

    samples: int = 1


class Generate:
    schema: dict[str, Any] = {
        "required": ["model"],
        "properties": {
            "model": {"type": "string"}, "prompt": TEMPLATE, "prompt_text": {"type": "string"},
            "system": TEMPLATE, "system_text": {"type": "string"}, "parse": PARSE_SCHEMA,
            "schema": {"type": "object"}, "samples": {"type": "integer", "minimum": 1},
            **INVALID_KEYS, "params": {"type": "object"}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> Ask | None:
        model = ctx.model(raw["model"], "model")
        system = ctx.template(raw, "system", "system_text", required=False)
        prompt = ctx.template(raw, "prompt", "prompt_text")
        parse = raw.get("parse", "json" if "schema" in raw else "text")
        schema = raw.get("schema")
        if schema is not None:
            if parse != "json":
                ctx.error("`schema` needs `parse: json`", "remove parse or set it to json",
                          "schema")
            problem = schema_problem(schema)
            if problem:
                ctx.error(f"schema is not a valid JSON Schema: {problem}",
                          "see https://json-schema.org/understanding-json-schema", "schema")
        if isinstance(parse, dict) and "regex" in parse and regex_problem(parse["regex"]):
            ctx.error(f"parse.regex is not a valid regex: {regex_problem(parse['regex'])}",
                      "escape special characters such as ( [ ? with \\", "parse", "regex")
        on_invalid, attempts = invalid_policy(raw, ctx)
        if model is None or prompt is None:
            return None
        return GenerateConfig(model=raw["model"], prompt=prompt, system=system, parse=parse,
                              schema=schema, params=raw.get("params"), max_attempts=attempts,
                              on_invalid=on_invalid, samples=raw.get("samples", 1))

    @staticmethod
    def shape(config: GenerateConfig) -> frozenset[str] | None:
        if config.samples != 1:
            return None
        if isinstance(config.parse, dict) and "regex" in config.parse:
            if regex_problem(config.parse["regex"]):
                return None
            names = re.compile(config.parse["regex"]).groupindex
            return frozenset(names) if names else None
        props = (config.schema or {}).get("properties")
        return frozenset(props) if config.parse == "json" and props else None

    @staticmethod
    async def run(stage: StageSpec, item: Item) -> Any:
        config: GenerateConfig = stage.config
        calls: list = []
        item.stages[stage.id] = {"calls": calls}
        values = await asyncio.gather(*(
            ask_model(config, item, calls, sample=s, stride=config.samples,
                      tags={"stage": stage.id}) for s in range(config.samples)))
        return values[0] if config.samples == 1 else list(values)
