"""The call cache. The only module that imports diskcache.

Key = sha256 of canonical JSON of {key version, provider kind, model, rendered messages, every
generation param, response schema, sample index}. Never the API key, the base URL or code
identity. Values are JSON text (never pickle), so a shared cache folder cannot run code.
"""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Any, Iterator

import diskcache

from ..errors import RunError
from ..jsonio import canonical, dumps, loads
from .types import Request, Response

KEY_VERSION = 2
MODES = ("read_write", "read_only", "write_only", "off")


def item_key(code: str, fingerprint: str, row: Any) -> str:
    """Key of a whole item's trace: the code that ran (engine source and plugin versions), the
    recipe's fingerprint (everything that decides a record) and the input row. A replay serves every call of the item in one
    read; any change to the recipe, its templates or the engine misses, and then each call
    is looked up on its own as usual."""
    blob = canonical({"v": KEY_VERSION, "code": code, "recipe": fingerprint, "row": row})
    return hashlib.sha256(blob).hexdigest()


def cache_key(provider: str, model: str, request: Request, extra: Any = None) -> str:
    """`extra` is what a provider adds because it shapes replies without being part of the
    request (the scripted rules of `mock`)."""
    material = {"v": KEY_VERSION, "provider": provider, "model": model,
                "messages": request.messages, "params": request.params,
                "schema": request.schema, "sample": request.sample}
    if extra is not None:
        material["extra"] = extra
    return hashlib.sha256(canonical(material)).hexdigest()


class CallCache:
    """diskcache-backed store with the four modes of the recipe's `cache.mode`."""

    def __init__(self, folder: Path, mode: str = "read_write"):
        if mode not in MODES:
            raise ValueError(f"cache mode {mode!r}")
        self.folder, self.mode = folder, mode
        self._store: diskcache.Cache | None = None

    @property
    def store(self) -> diskcache.Cache:
        if self._store is None:
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._store = diskcache.Cache(str(self.folder), size_limit=2 ** 40,
                                              eviction_policy="none")
            except (OSError, sqlite3.Error) as exc:
                raise RunError(f"cannot open the cache at {self.folder}: {exc}",
                               "check the folder's permissions or pass --cache-dir") from exc
        return self._store

    def get(self, key: str) -> Response | None:
        if self.mode in ("off", "write_only"):
            return None
        raw = self.store.get(key)
        if raw is None:
            return None
        data = loads(raw)["response"]
        return Response(cache_hit=True, **data)

    def put(self, key: str, provider: str, model: str, response: Response) -> None:
        if self.mode in ("off", "read_only"):
            return
        value = dumps({"provider": provider, "model": model, "response": response.to_json()})
        try:
            self.store.set(key, value)
        except (OSError, sqlite3.Error) as exc:
            raise RunError(f"cannot write to the cache at {self.folder}: {exc}",
                           "free disk space or pass --cache-dir") from exc

    def entries(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for key in self.store.iterkeys():
            raw = self.store.get(key)
            if raw is not None:
                yield key, loads(raw)

    def get_item(self, key: str) -> dict[str, Any] | None:
        """A whole item's trace, stored after it finished (see `item_key`)."""
        if self.mode in ("off", "write_only"):
            return None
        raw = self.store.get("item:" + key)
        return loads(raw)["trace"] if raw is not None else None

    def put_item(self, key: str, trace: dict[str, Any]) -> None:
        if self.mode in ("off", "read_only"):
            return
        try:
            self.store.set("item:" + key, dumps({"kind": "item", "trace": trace}))
        except (OSError, sqlite3.Error) as exc:
            raise RunError(f"cannot write to the cache at {self.folder}: {exc}",
                           "free disk space or pass --cache-dir") from exc

    def stats(self) -> dict[str, Any]:
        per_model: dict[str, int] = {}
        tokens = items = 0
        for _, value in self.entries():
            if value.get("kind") == "item":
                items += 1
                continue
            name = f"{value['provider']}:{value['model']}"
            per_model[name] = per_model.get(name, 0) + 1
            tokens += value["response"].get("completion_tokens", 0)
        return {"folder": str(self.folder), "entries": sum(per_model.values()),
                "items": items, "bytes": self.store.volume(), "per_model": per_model,
                "completion_tokens": tokens}

    def clear(self) -> int:
        return self.store.clear()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
