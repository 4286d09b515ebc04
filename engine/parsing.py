"""Turning a raw reply into a value: `parse: text | json | lines | {regex: …} | {tag: …}`."""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Mapping

import jsonschema

from .errors import AidsafeError

PARSE_SCHEMA = {"description": "parse is text, json, lines, {regex: PATTERN} or {tag: NAME}",
                "oneOf": [
    {"enum": ["text", "json", "lines"]},
    {"type": "object", "additionalProperties": False, "required": ["regex"],
     "properties": {"regex": {"type": "string"}}},
    {"type": "object", "additionalProperties": False, "required": ["tag"],
     "properties": {"tag": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_.-]*$"}}}]}
_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.S)
_BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")


class ParseError(AidsafeError):
    """The reply does not have the declared shape."""


def parse_reply(text: str, mode: str | Mapping[str, str]) -> Any:
    if mode == "text":
        return text.strip()
    if mode == "json":
        return parse_json(text)
    if mode == "lines":
        return [_BULLET.sub("", line).strip() for line in text.splitlines() if line.strip()]
    if "regex" in mode:
        return _regex(text, mode["regex"])
    return _tag(text, mode["tag"])


def parse_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, a ```json fence, or the first {…} / […]."""
    stripped = text.strip()
    candidates = [stripped] + [m.strip() for m in _FENCE.findall(text)]
    for candidate in candidates:
        try:
            return json.loads(candidate)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            return decoder.raw_decode(text, match.start())[0]
        except ValueError:
            continue
    raise ParseError(f"reply is not JSON: {_short(text)}")


def _regex(text: str, pattern: str) -> Any:
    match = compiled(pattern).search(text)
    if match is None:
        raise ParseError(f"reply does not match /{pattern}/: {_short(text)}")
    if match.groupdict():
        return match.groupdict()
    return match.group(1) if match.groups() else match.group(0)


def _tag(text: str, tag: str) -> str:
    match = compiled(rf"<{re.escape(tag)}>(.*?)(?:</{re.escape(tag)}>|$)", re.S).search(text)
    if match is None:
        raise ParseError(f"reply has no <{tag}>…</{tag}>: {_short(text)}")
    return match.group(1).strip()


@functools.lru_cache(maxsize=256)
def compiled(pattern: str, flags: int = 0) -> re.Pattern:
    return re.compile(pattern, flags)


_VALIDATORS: dict[int, tuple[Mapping[str, Any], jsonschema.Draft202012Validator]] = {}


def _validator(schema: Mapping[str, Any]) -> jsonschema.Draft202012Validator:
    """One compiled validator per schema object (schemas live in frozen recipe specs)."""
    entry = _VALIDATORS.get(id(schema))
    if entry is None or entry[0] is not schema:
        entry = (schema, jsonschema.Draft202012Validator(schema))
        _VALIDATORS[id(schema)] = entry
    return entry[1]


def check_schema(value: Any, schema: Mapping[str, Any]) -> None:
    """Raise ParseError when a parsed value does not fit the stage's JSON schema."""
    validator = _validator(schema)
    if validator.is_valid(value):
        return
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "reply"
        raise ParseError(f"{where}: {error.message}")


def schema_problem(schema: Any) -> str | None:
    """Why a `schema:` is not a valid JSON Schema, or None."""
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.exceptions.SchemaError as exc:
        return exc.message
    return None


def regex_problem(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return str(exc)
    return None


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")
