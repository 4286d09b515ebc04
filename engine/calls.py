"""Calling a model from a stage: render, ask, parse, validate, retry invalid replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .context import Item
from .loader import BuildContext
from .errors import CacheMiss, ItemError, LLMError
from .llm.types import Request
from .parsing import ParseError, check_schema, parse_reply
from .templates import TemplateRef


@dataclass(frozen=True)
class Ask:
    """How to ask one model: the templates, the expected shape and how often to retry."""

    model: str
    prompt: TemplateRef
    system: TemplateRef | None = None
    parse: Any = "text"
    schema: Mapping[str, Any] | None = None
    params: Mapping[str, Any] | None = None
    max_attempts: int = 1
    on_invalid: str = "retry"     # retry | fail | keep_raw


INVALID_KEYS = {
    "max_attempts": {"type": "integer", "minimum": 1},
    "on_invalid": {"enum": ["retry", "fail", "keep_raw"],
                   "description": "retry: ask again with the next sample index (max_attempts, "
                                  "default 3), then fail the item; fail: fail at once; "
                                  "keep_raw: keep the raw reply as the value"}}


def invalid_policy(raw: Mapping[str, Any], ctx: BuildContext) -> tuple[str, int]:
    """`on_invalid` and `max_attempts` of a stage (what to do with an empty, unparsable,
    wrong-shaped or cut-off reply)."""
    mode = raw.get("on_invalid", "retry")
    if mode == "fail" and raw.get("max_attempts", 1) > 1:
        ctx.error("on_invalid: fail asks once; max_attempts would never be used",
                  "use on_invalid: retry, or drop max_attempts", "max_attempts")
    default = {"retry": 3, "fail": 1, "keep_raw": 1}[mode]
    return mode, raw.get("max_attempts", default)


CALL_KEYS = {"model": {"type": "string"}, "prompt": {"type": "string", "minLength": 1},
             "prompt_text": {"type": "string"}, "system": {"type": "string", "minLength": 1},
             "system_text": {"type": "string"}, "schema": {"type": "object"},
             "params": {"type": "object"}}


def build_ask(spec: Mapping[str, Any], defaults: Mapping[str, Any], ctx: BuildContext,
              scope: Mapping[str, Any], schema: Mapping[str, Any] | None) -> Ask | None:
    """One declared JSON call (an agent of `deliberate`, a step of `loop`): its own keys win
    over the stage's defaults (system, schema, params, on_invalid, max_attempts)."""
    model = ctx.model(spec["model"], "model")
    source = spec if {"system", "system_text"} & set(spec) else {
        **{k: defaults[k] for k in ("system", "system_text") if k in defaults}, **spec}
    system = ctx.template(source, "system", "system_text", scope=scope, required=False)
    prompt = ctx.template(spec, "prompt", "prompt_text", scope=scope)
    on_invalid, attempts = invalid_policy(defaults, ctx)
    if model is None or prompt is None:
        return None
    params = {**defaults.get("params", {}), **spec.get("params", {})}
    return Ask(model=spec["model"], prompt=prompt, system=system, parse="json",
               schema=spec.get("schema", defaults.get("schema", schema)),
               params=params or None, max_attempts=attempts, on_invalid=on_invalid)


JUDGE_KEYS = {"model": {"type": "string"},
              "models": {"type": "array", "minItems": 1, "items": {"type": "string"}},
              "prompt": {"type": "string", "minLength": 1}, "prompt_text": {"type": "string"},
              "system": {"type": "string", "minLength": 1}, "system_text": {"type": "string"},
              "params": {"type": "object"}, **INVALID_KEYS}


def judge_asks(raw: Mapping[str, Any], ctx: BuildContext, scope: Mapping[str, Any],
               schema: Mapping[str, Any]) -> tuple[Ask, ...] | None:
    """The same question for each judge model of `model: NAME` or `models: [NAME, …]`."""
    names = raw.get("models") or ([raw["model"]] if "model" in raw else [])
    if not names or ("model" in raw and "models" in raw):
        ctx.error("give the judges as `model: NAME` or `models: [NAME, …]` (one of them)",
                  "e.g. models: [judge_a, judge_b]")
    system = ctx.template(raw, "system", "system_text", scope=scope, required=False)
    prompt = ctx.template(raw, "prompt", "prompt_text", scope=scope)
    known = [n for n in names if ctx.model(n, "models" if "models" in raw else "model")]
    on_invalid, attempts = invalid_policy(raw, ctx)
    if prompt is None or not names or len(known) != len(names):
        return None
    return tuple(Ask(model=name, prompt=prompt, system=system, parse="json", schema=schema,
                     params=raw.get("params"), max_attempts=attempts, on_invalid=on_invalid)
                 for name in names)


def render_messages(ask: Ask, item: Item, extra: Mapping[str, Any]) -> tuple[dict, ...]:
    context = item.context(**extra)
    messages = []
    if ask.system is not None:
        messages.append({"role": "system", "content": item.templates.render(ask.system, context)})
    messages.append({"role": "user", "content": item.templates.render(ask.prompt, context)})
    return tuple(messages)


async def ask_model(ask: Ask, item: Item, calls: list, *, sample: int = 0, stride: int = 1,
                    tags: Mapping[str, Any] | None = None,
                    extra: Mapping[str, Any] | None = None) -> Any:
    """One parsed, validated reply. An invalid reply is asked again with the next sample index
    (a new cache entry) up to `max_attempts`; every attempt is appended to `calls`."""
    messages = render_messages(ask, item, extra or {})
    params = {**item.workflow.models[ask.model].params, **(ask.params or {})}
    problem = ""
    for attempt in range(ask.max_attempts):
        request = Request(messages=messages, params=params, schema=ask.schema,
                          sample=sample + attempt * stride, tags=dict(tags or {}),
                          priority=item.index)
        try:
            response = await item.llm.complete(ask.model, request)
        except CacheMiss as exc:
            raise ItemError(str(exc), kind="offline_miss") from exc
        except LLMError as exc:
            raise ItemError(f"model {ask.model!r}: {exc.message}" +
                            (f" ({exc.hint})" if exc.hint else ""), kind="llm_error") from exc
        call = {"model": ask.model, **{k: v for k, v in request.tags.items() if k != "stage"},
                "sample": request.sample, "attempt": attempt + 1,
                "messages": list(messages), "raw": response.text,
                "finish_reason": response.finish_reason,
                "prompt_tokens": response.prompt_tokens,
                "completion_tokens": response.completion_tokens,
                "cache_hit": response.cache_hit}
        calls.append(call)
        try:
            if not response.text.strip():
                raise ParseError("reply is empty")
            value = parse_reply(response.text, ask.parse)
            if ask.schema is not None:
                check_schema(value, ask.schema)
        except ParseError as exc:
            cut = " (the reply was cut at max_tokens)" if response.finish_reason == "length" else ""
            problem = f"{exc}{cut}"
            call["error"] = problem
            continue
        call["parsed"] = value
        return value
    if ask.on_invalid == "keep_raw":
        calls[-1]["kept_raw"] = True
        return calls[-1]["raw"]
    raise ItemError(f"invalid reply after {ask.max_attempts} attempt(s): {problem}",
                    kind="invalid_reply")
