"""Output formats (the `aidsafe.outputs` registry) and the files of a run.

Every declared output is derived from the item's trace record, so resuming can rebuild them
from `trace.jsonl` and they always agree with it.

```yaml
outputs:
  - {format: trace}                                   # always written: trace.jsonl
  - format: jsonl
    path: intents.jsonl
    fields: {prompt: "{{ input.prompt }}", intents: "{{ intents.explicit_intents }}"}
```
A field that is a single `{{ expression }}` keeps its JSON type (a list stays a list).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Mapping

from .context import template_context
from .errors import ItemError
from .jsonio import dumps
from .loader import BuildContext
from .registry import OUTPUTS
from .schema import suggest
from .spec import OutputSpec, Workflow
from .templates import Templates, truthy


class TraceOutput:
    """Everything about an item: input, each stage's calls (rendered messages, raw reply,
    parsed value, tokens, cache hit) and result."""

    default_path = "trace.jsonl"
    schema: dict[str, Any] = {"properties": {}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> None:
        return None

    @staticmethod
    def render(config: None, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> dict[str, Any]:
        return trace


@dataclass(frozen=True)
class JsonlConfig:
    fields: Mapping[str, str] | None


class JsonlOutput:
    """One JSON object per item; `fields` maps names to templates (default: id + every
    stage's result)."""

    default_path = "output.jsonl"
    schema: dict[str, Any] = {"properties": {
        "fields": {"type": "object", "additionalProperties": {"type": "string"}}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> JsonlConfig:
        fields = raw.get("fields")
        for name, text in (fields or {}).items():
            ctx.check_text(text, "fields", name, scope={**ctx.scope, "id": None})
        return JsonlConfig(fields=fields)

    @staticmethod
    def render(config: JsonlConfig, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> dict[str, Any]:
        values = {sid: st.get("value") for sid, st in trace["stages"].items()}
        if config.fields is None:
            return {"id": trace["id"], **values}
        context = {**template_context(workflow, trace["input"], values), "id": trace["id"]}
        return {name: templates.evaluate(text, context, f"output field {name!r}")
                for name, text in config.fields.items()}


@dataclass(frozen=True)
class CotConfig:
    source: str | None            # the stage whose result has thoughts and response
    prompt: str
    system: str | None = None
    cot: str | None = None


DEFAULT_COT = "<think>\n{{ thoughts | join('\\n') }}\n</think>\n\n{{ response }}"
COT_KEYS = {"from": {"type": "string", "description": "the stage whose result has thoughts "
                     "and response (default: the last such stage)"},
            "prompt": {"type": "string", "description": "template of the user prompt"}}


def _cot_config(raw: dict[str, Any], ctx: BuildContext) -> CotConfig:
    stages = [s for s in ctx.scope if s not in ("input", "vars", "policies")]
    source = raw.get("from")
    if source is None:
        source = next((s for s in reversed(stages) if ctx.scope[s] is not None and
                       {"thoughts", "response"} <= ctx.scope[s]), None)
        if source is None:
            ctx.error("no stage gives thoughts and response", "add `from: STAGE_ID`")
    elif source not in stages:
        ctx.error(f"`from` names no stage: {source!r}", suggest(source, stages), "from")
        source = None
    elif ctx.scope[source] is not None and not {"thoughts", "response"} <= ctx.scope[source]:
        ctx.error(f"stage {source!r} has no thoughts and response", "name another stage", "from")
    prompt = raw.get("prompt", "{{ input.prompt }}")
    ctx.check_text(prompt, "prompt" if "prompt" in raw else ())
    cot = raw.get("cot")
    if cot is not None:
        ctx.check_text(cot, "cot", scope={**ctx.scope, "thoughts": None, "response": None})
    return CotConfig(source, prompt, raw.get("system"), cot)


def _cot_parts(config: CotConfig, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> tuple[dict[str, Any], str, list[str], str]:
    values = {sid: st.get("value") for sid, st in trace["stages"].items()}
    result = values.get(config.source)
    if not isinstance(result, dict):
        raise ItemError(f"stage {config.source!r} gave {type(result).__name__}, not an object "
                        "with thoughts and response", kind="bad_value")
    thoughts, response = result.get("thoughts"), result.get("response")
    if not isinstance(thoughts, list) or not all(isinstance(t, str) for t in thoughts) \
            or not isinstance(response, str):
        raise ItemError(f"stage {config.source!r} gave no list of thoughts and response",
                        kind="bad_value")
    context = template_context(workflow, trace["input"], values)
    prompt = templates.evaluate(config.prompt, context, "output prompt")
    return context, str(prompt), thoughts, response


class AidsafeOutput:
    """The released AIDSAFE dataset's shape: exactly `prompt`, `thoughts` (a list of strings)
    and `response`."""

    default_path = "dataset.jsonl"
    schema: dict[str, Any] = {"properties": COT_KEYS}
    build = staticmethod(_cot_config)

    @staticmethod
    def render(config: CotConfig, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> dict[str, Any]:
        _, prompt, thoughts, response = _cot_parts(config, trace, workflow, templates)
        return {"prompt": prompt, "thoughts": thoughts, "response": response}


class SftOutput:
    """Chat messages for SFT: `{"messages": [system?, user, assistant]}`; the assistant turn
    holds the CoT then the response, laid out by `cot` (default `<think>…</think>` first)."""

    default_path = "sft.jsonl"
    schema: dict[str, Any] = {"properties": {
        **COT_KEYS, "system": {"type": "string", "description": "an optional system message"},
        "cot": {"type": "string", "description": "template of the assistant turn; sees "
                "thoughts and response"}}}
    build = staticmethod(_cot_config)

    @staticmethod
    def render(config: CotConfig, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> dict[str, Any]:
        context, prompt, thoughts, response = _cot_parts(config, trace, workflow, templates)
        assistant = templates.evaluate(config.cot or DEFAULT_COT,
                                       {**context, "thoughts": thoughts, "response": response},
                                       "output cot")
        messages = [{"role": "system", "content": config.system}] if config.system else []
        return {"messages": messages + [{"role": "user", "content": prompt},
                                        {"role": "assistant", "content": str(assistant)}]}


@dataclass(frozen=True)
class DpoConfig:
    prompt: str
    chosen: Mapping[str, str]       # {thoughts: template, response: template}
    rejected: Mapping[str, str]
    cot: str | None
    style: str


SIDE = {"type": "object", "additionalProperties": False, "required": ["thoughts", "response"],
        "properties": {"thoughts": {"type": "string"}, "response": {"type": "string"}},
        "description": "templates of the sample's thoughts (a list) and response"}


class DpoOutput:
    """Preference pairs in TRL's shape. `conversational`: `prompt` (the user message),
    `chosen` and `rejected` (one assistant message each, the CoT then the response, laid out
    by `cot` as in `sft`); `plain`: the same three fields as strings."""

    default_path = "dpo.jsonl"
    schema: dict[str, Any] = {"required": ["chosen", "rejected"], "properties": {
        "prompt": COT_KEYS["prompt"], "chosen": SIDE, "rejected": SIDE,
        "cot": {"type": "string", "description": "template of a sample; sees thoughts and "
                "response"},
        "style": {"enum": ["conversational", "plain"]}}}

    @staticmethod
    def build(raw: dict[str, Any], ctx: BuildContext) -> DpoConfig:
        prompt = raw.get("prompt", "{{ input.prompt }}")
        ctx.check_text(prompt, "prompt" if "prompt" in raw else ())
        for side in ("chosen", "rejected"):
            for key, text in raw[side].items():
                ctx.check_text(text, side, key)
        if "cot" in raw:
            ctx.check_text(raw["cot"], "cot", scope={**ctx.scope, "thoughts": None,
                                                     "response": None})
        return DpoConfig(prompt, raw["chosen"], raw["rejected"], raw.get("cot"),
                         raw.get("style", "conversational"))

    @staticmethod
    def render(config: DpoConfig, trace: dict[str, Any], workflow: Workflow,
               templates: Templates) -> dict[str, Any]:
        values = {sid: st.get("value") for sid, st in trace["stages"].items()}
        context = template_context(workflow, trace["input"], values)
        prompt = str(templates.evaluate(config.prompt, context, "output prompt"))
        chosen, rejected = (_sample(side, config.cot, context, templates, name)
                            for side, name in ((config.chosen, "chosen"),
                                               (config.rejected, "rejected")))
        if config.style == "plain":
            return {"prompt": prompt, "chosen": chosen, "rejected": rejected}
        return {"prompt": [{"role": "user", "content": prompt}],
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}


def _sample(side: Mapping[str, str], cot: str | None, context: dict[str, Any],
            templates: Templates, name: str) -> str:
    thoughts = templates.evaluate(side["thoughts"], context, f"output {name} thoughts")
    response = templates.evaluate(side["response"], context, f"output {name} response")
    if not isinstance(thoughts, list) or not all(isinstance(t, str) for t in thoughts):
        raise ItemError(f"{name} thoughts must be a list of strings", kind="bad_value")
    return str(templates.evaluate(cot or DEFAULT_COT,
                                  {**context, "thoughts": thoughts, "response": str(response)},
                                  f"output {name} cot"))


class RunFiles:
    """The open output files of a run; each item is appended whole and flushed."""

    def __init__(self, run_dir: Path, workflow: Workflow, templates: Templates):
        self.run_dir, self.workflow, self.templates = run_dir, workflow, templates
        self.outputs = [(spec, OUTPUTS.get(spec.format)) for spec in workflow.outputs]
        self.trace_path = next(s.path for s in workflow.outputs if s.format == "trace")
        self._files: dict[str, IO[str]] = {}

    def open(self, truncate_derived: bool) -> None:
        """Open every file for appending; derived outputs are emptied to be rebuilt."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for spec, _ in self.outputs:
            mode = "w" if truncate_derived and spec.format != "trace" else "a"
            self._files[spec.path] = self._open(spec.path, mode)
        self._files["failures.jsonl"] = self._open("failures.jsonl", "w")

    def _open(self, name: str, mode: str) -> IO[str]:
        path = self.run_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open(mode, encoding="utf-8")

    def write(self, trace: dict[str, Any], derived_only: bool = False) -> None:
        """Render every output first (a template error fails the item and writes nothing),
        then append; the trace line goes last, so an item counts as done only when whole."""
        records = [(spec.path, fmt.render(spec.config, trace, self.workflow, self.templates))
                   for spec, fmt in self.outputs
                   if not (derived_only and spec.format == "trace") and self._wanted(spec, trace)]
        records.sort(key=lambda pair: pair[0] == self.trace_path)
        for path, record in records:
            if record is not None:
                self._append(path, record)

    def _wanted(self, spec: OutputSpec, trace: dict[str, Any]) -> bool:
        if spec.when is None:
            return True
        values = {sid: st.get("value") for sid, st in trace["stages"].items()}
        context = template_context(self.workflow, trace["input"], values)
        return truthy(self.templates.evaluate(spec.when, context, f"output {spec.path} when"))

    def fail(self, record: dict[str, Any]) -> None:
        self._append("failures.jsonl", record)

    def _append(self, name: str, record: Any) -> None:
        fh = self._files[name]
        fh.write(dumps(record) + "\n")
        fh.flush()

    def close(self) -> None:
        for fh in self._files.values():
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()
        self._files.clear()
