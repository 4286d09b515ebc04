"""The engine's Python API: load, run, render, cache. The CLI is a thin shell over it."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from . import __version__
from .context import Item
from .errors import Loc, Problem, RecipeError, RunError
from .inputs import InputError, read_rows
from .llm.cache import CallCache
from .llm.client import LLMClient
from .loader import load_workflow
from .runner import Runner, RunOptions, RunState
from .spec import CacheSpec, Workflow
from .templates import file_hash

__all__ = ["load_workflow", "run", "render_item", "cache_for", "RunOptions", "RunState"]


def run(workflow: Workflow, options: RunOptions) -> RunState:
    """Run (or resume) a workflow into options.run_dir and write its manifest."""
    runner = Runner(workflow, options)
    started = time.time()
    done = runner.prepare()
    write_manifest(workflow, options, runner.state, started, "running")
    status = "interrupted"
    try:
        state = asyncio.run(runner.run(done))
        status = "complete"
        return state
    except RunError:
        status = "stopped"
        raise
    finally:
        write_manifest(workflow, options, runner.state, started, status)


def _safe_url(url: str | None) -> str | None:
    """A base URL without credentials, for the manifest."""
    if not url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def write_manifest(workflow: Workflow, options: RunOptions, state: RunState, started: float,
                   status: str) -> None:
    """manifest.json: what ran, on what, with which files, and what it cost."""
    stats = state.llm.stats if state.llm else None
    files = dict(workflow.files)
    if workflow.input is not None and workflow.input.path.exists():
        files[str(workflow.input.path)] = file_hash(workflow.input.path)
    home = workflow.file.resolve().parent
    files = {os.path.relpath(path, home): digest for path, digest in files.items()}
    manifest = {
        "engine": {"name": "aidsafe", "version": __version__,
                   "python": platform.python_version()},
        "status": status, "workflow": workflow.name, "recipe": str(workflow.file),
        "fingerprint": workflow.fingerprint,
        "hashes": {"sha256": files},
        "models": {name: {"provider": m.provider, "model": m.model,
                          "base_url": _safe_url(m.base_url), "params": dict(m.params),
                          "concurrency": options.concurrency or m.concurrency}
                   for name, m in workflow.models.items()},
        "stages": [{"id": s.id, "kind": s.kind} for s in workflow.stages],
        "cache": {"dir": str(workflow.cache.dir), "mode": workflow.cache.mode},
        "counts": {"done": state.done, "failed": state.failed, "resumed": state.resumed,
                   "in_outputs": state.done + state.resumed,
                   "failures_by_kind": state.failure_kinds},
        "calls": dataclasses.asdict(stats) if stats else {},
        "per_stage": state.per_stage,
        "timings": {"started": started, "finished": time.time(),
                    "wall_s": round(time.time() - started, 3)},
    }
    options.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = options.run_dir / "manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, options.run_dir / "manifest.json")


def pick_row(workflow: Workflow, which: str | None):
    """The input row chosen by position (`3`) or id (`p07`); the first one by default."""
    if workflow.input is None:
        raise RecipeError([Problem(Loc(str(workflow.file)), "the recipe has no input",
                                   "add `input: {path: …}` or pass --input")])
    for row in read_rows(workflow.input, limit=None):
        if isinstance(row, InputError):
            continue
        if which is None or str(row.index) == which or str(row.id) == which:
            return row
    raise RecipeError([Problem(Loc("--item"), f"no input row {which!r}",
                               "give a 0-based row number or an id from the input")])


def render_item(workflow: Workflow, which: str | None = None) -> dict[str, Any]:
    """Every prompt one item would send, with no model called: each model is swapped for the
    deterministic `mock` provider so later stages have something to render."""
    mocked = {name: dataclasses.replace(m, provider="mock", options={"replies": []})
              for name, m in workflow.models.items()}
    wf = dataclasses.replace(workflow, models=mocked,
                             cache=CacheSpec(dir=workflow.cache.dir, mode="off"))
    row = pick_row(wf, which)
    runner = Runner(wf, RunOptions(run_dir=Path(os.devnull)))

    async def one() -> dict[str, Any]:
        llm = LLMClient(wf.models, CallCache(wf.cache.dir, "off"))
        item = Item(row.index, row.id, row.row, wf, runner.templates, llm)
        try:
            for stage in wf.stages:
                await runner.run_stage(stage, item)
        finally:
            await llm.close()
        return item.trace()

    return asyncio.run(one())


def cache_for(workflow: Workflow | None, folder: str | None) -> CallCache:
    if folder:
        return CallCache(Path(folder))
    assert workflow is not None
    return CallCache(workflow.cache.dir, workflow.cache.mode)
