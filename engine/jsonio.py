"""JSON for the hot paths (trace lines, cache entries, cache keys), on orjson: run files and
the cache are written and read once per item and per call, and the standard library's
encoder was the largest cost of a cached replay (see benchmarks/)."""

from __future__ import annotations

from typing import Any

import orjson

_OPTIONS = orjson.OPT_NON_STR_KEYS


def dumps(value: Any) -> str:
    """Compact JSON text (UTF-8, no spaces); values JSON cannot hold become strings."""
    return orjson.dumps(value, default=str, option=_OPTIONS).decode("utf-8")


def canonical(value: Any) -> bytes:
    """Compact JSON with sorted keys: the same value always gives the same bytes."""
    return orjson.dumps(value, default=str, option=_OPTIONS | orjson.OPT_SORT_KEYS)


def loads(text: str | bytes) -> Any:
    return orjson.loads(text)
