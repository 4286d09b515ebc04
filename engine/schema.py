"""The recipe contract as JSON Schema, and validation that reports file:line:col with a hint.

The schema is assembled from a base (top-level keys, models, input, cache) and the fragments each
registered stage kind, provider and output format declares, so plugins extend it. The file
`schemas/workflow.schema.json` is this schema for the built-ins (`aidsafe schema` prints it; a test
checks the file is current).
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable

import jsonschema

from .errors import Problem
from .registry import OUTPUTS, PROVIDERS, STAGES, Registry
from .source import Document

NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_-]*$",
        "description": "letters, digits, '_' and '-', starting with a letter or '_'"}
TEMPLATE = {"type": "string", "minLength": 1}

MODEL_COMMON = {
    "provider": {"type": "string", "description": "openai | local | mock | a plugin's provider"},
    "model": {"type": "string", "minLength": 1},
    "base_url": {"type": "string", "pattern": "^https?://",
                 "description": "the server's URL, starting with http:// or https://"},
    "api_key_env": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$",
                    "description": "the NAME of the environment variable holding the key "
                                   "(letters, digits, '_'), never the key itself"},
    "params": {"type": "object", "description": "generation parameters sent as they are"},
    "concurrency": {"type": "integer", "minimum": 1},
    "requests_per_minute": {"type": "number", "exclusiveMinimum": 0},
    "tokens_per_minute": {"type": "number", "exclusiveMinimum": 0},
    "timeout": {"type": "number", "exclusiveMinimum": 0},
    "retries": {"type": "integer", "minimum": 0},
    "backoff": {"type": "number", "minimum": 0,
                "description": "seconds before the first retry (full jitter, doubling, at "
                               "most 30 s)"},
}
STAGE_COMMON = {
    "id": NAME,
    "kind": {"type": "string"},
    "when": {"type": "string", "description": "a Jinja condition; the stage is skipped when false"},
}
BASE: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "aidsafe workflow",
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "name", "models", "stages"],
    "properties": {
        "version": {"const": 1},
        "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                 "description": "letters, digits, '_', '.' and '-' (it names the run folder)"},
        "description": {"type": "string"},
        "vars": {"type": "object"},
        "policies": {"oneOf": [
            {"type": "string", "minLength": 1},
            {"type": "array", "items": {"$ref": "#/$defs/policy"}}]},
        "models": {"type": "object", "minProperties": 1,
                   "propertyNames": NAME, "additionalProperties": {"$ref": "#/$defs/model"}},
        "input": {"$ref": "#/$defs/input"},
        "stages": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/stage"}},
        "outputs": {"type": "array", "items": {"$ref": "#/$defs/output"}},
        "cache": {"$ref": "#/$defs/cache"},
    },
    "$defs": {
        "policy": {"type": "object", "additionalProperties": False,
                   "required": ["id", "text"],
                   "properties": {"id": {"type": "string"}, "title": {"type": "string"},
                                  "text": {"type": "string"}}},
        "input": {"type": "object", "additionalProperties": False, "required": ["path"],
                  "properties": {"path": {"type": "string", "minLength": 1},
                                 "format": {"enum": ["jsonl", "json", "csv", "trace"],
                                            "description": "trace: another run's trace.jsonl"},
                                 "id_field": {"type": "string"},
                                 "join": {"$ref": "#/$defs/join"},
                                 "limit": {"type": "integer", "minimum": 1}}},
        "join": {"type": "object", "additionalProperties": False,
                 "required": ["path", "on"],
                 "description": "rows of another file (loaded whole) matched on a field",
                 "properties": {"path": {"type": "string", "minLength": 1},
                                "on": {"type": "string", "minLength": 1},
                                "as": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                                "format": {"enum": ["jsonl", "json", "csv", "trace"]}}},
        "cache": {"type": "object", "additionalProperties": False,
                  "properties": {"dir": {"type": "string", "minLength": 1},
                                 "mode": {"enum": ["read_write", "read_only", "write_only",
                                                   "off"]}}},
    },
}


ENUM_NAMES = {"kind": "stage kind", "provider": "provider", "format": "format", "mode": "mode"}


def fragment_of(impl: Any) -> dict:
    """A kind's own schema fragment; `schema` may be a dict or a function building one (for
    kinds whose keys depend on another registry, e.g. `deliberate`'s stop rules)."""
    fragment = getattr(impl, "schema", {}) or {}
    return fragment() if callable(fragment) else fragment


def kinds(registry: Registry, key: str, common: dict, required: list[str]) -> dict:
    """A schema whose `key` picks one registered kind; each kind adds its own properties."""
    branches = []
    for name, impl in registry:
        fragment = fragment_of(impl)
        then = {"properties": fragment.get("properties", {})}
        if fragment.get("required"):
            then["required"] = fragment["required"]
        branches.append({"if": {"properties": {key: {"const": name}}, "required": [key]},
                         "then": then})
    properties = dict(common)
    properties[key] = dict(properties.get(key, {}), enum=registry.names())
    return {"type": "object", "required": required, "properties": properties,
            "allOf": branches, "unevaluatedProperties": False}


def build_schema() -> dict[str, Any]:
    """The whole contract for the registered stage kinds, providers and output formats."""
    schema = {k: v for k, v in BASE.items()}
    defs = dict(BASE["$defs"])
    defs["model"] = kinds(PROVIDERS, "provider", MODEL_COMMON, ["provider"])
    defs["stage"] = kinds(STAGES, "kind", STAGE_COMMON, ["id", "kind"])
    defs["output"] = kinds(OUTPUTS, "format", {"format": {"type": "string"},
                                                "path": {"type": "string", "minLength": 1},
                                                "when": {"type": "string"}},
                            ["format"])
    schema["$defs"] = defs
    return schema


def _allowed_keys(schema: dict, instance: Any, root: dict) -> list[str]:
    """Property names a (sub)schema accepts for this instance, following $ref and if/then."""
    if "$ref" in schema:
        schema = root["$defs"][schema["$ref"].rsplit("/", 1)[-1]]
    keys = list(schema.get("properties", {}))
    for branch in schema.get("allOf", []):
        if "if" in branch and jsonschema.Draft202012Validator(branch["if"]).is_valid(instance):
            keys += list(branch["then"].get("properties", {}))
    return keys


def suggest(word: str, choices: Iterable[str]) -> str:
    """'did you mean …?' text, or the list of choices when nothing is close."""
    choices = sorted(set(map(str, choices)))
    close = difflib.get_close_matches(str(word), choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return "expected one of: " + ", ".join(choices) if choices else ""


def dotted(path: Iterable[Any], data: Any = None) -> str:
    """`stages[1](refine).filters[0]` style path for messages."""
    out, node = "", data
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f"({node['id']})"
        else:
            out += ("." if out else "") + str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out or "the recipe"


def _problems_for(error: jsonschema.ValidationError, doc: Document, root: dict) -> list[Problem]:
    path = tuple(error.absolute_path)
    where = dotted(path, doc.data)
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        allowed = _allowed_keys(error.schema, error.instance, root)
        extra = [k for k in error.instance if k not in allowed]
        return [Problem(doc.loc(path + (k,), key=True), f"unknown key {k!r} in {where}",
                        suggest(k, allowed)) for k in extra]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return [Problem(doc.loc(path), f"{where} is missing the required key {missing!r}",
                        f"add `{missing}: …`")]
    if error.validator == "enum":
        what = ENUM_NAMES.get(path[-1] if path else "", "value")
        if what == "stage kind" and "filters" in path:
            what = "filter kind"
        return [Problem(doc.loc(path), f"{where}: unknown {what} {error.instance!r}",
                        suggest(error.instance, error.validator_value))]
    if error.validator == "const":
        return [Problem(doc.loc(path), f"{where} must be {error.validator_value!r}",
                        f"write `{path[-1] if path else 'value'}: {error.validator_value}`")]
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = jsonschema.exceptions.best_match(error.context)
        return [Problem(doc.loc(path), f"{where}: {best.message}",
                        error.schema.get("description") or "see `aidsafe schema`")]
    if error.validator == "pattern":  # never echo the value: it may be a pasted secret
        return [Problem(doc.loc(path), f"{where} does not have the expected form",
                        _type_hint(error))]
    return [Problem(doc.loc(path), f"{where}: {error.message}", _type_hint(error))]


def _type_hint(error: jsonschema.ValidationError) -> str:
    if isinstance(error.schema, dict) and error.schema.get("description"):
        return error.schema["description"]
    if error.validator == "type":
        return f"write a value of type {error.validator_value}"
    if error.validator == "pattern":
        return f"it must match {error.validator_value}"
    return "see `aidsafe schema` for the allowed values"


def _hidden(error: jsonschema.ValidationError, all_errors: list) -> bool:
    """Unknown-key noise under an object whose kind itself is unknown."""
    if error.validator != "unevaluatedProperties":
        return False
    path = tuple(error.absolute_path)
    return any(e.validator == "enum" and tuple(e.absolute_path)[:-1] == path for e in all_errors)


def validate(doc: Document, schema: dict | None = None) -> list[Problem]:
    """All schema problems of the document, each with its location and a hint."""
    schema = schema or build_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = list(validator.iter_errors(doc.data))
    problems: list[Problem] = []
    for error in errors:
        if not _hidden(error, errors):
            path = tuple(error.absolute_path)
            problems.extend(dataclasses.replace(p, path=path)
                            for p in _problems_for(error, doc, schema))
    return problems
