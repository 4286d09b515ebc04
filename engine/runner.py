"""The runner: streams items through their stages, many in flight, and writes them in order.

Items start in input order inside a bounded window; each runs its stages in order as one task;
finished items are written in input order (so reruns give byte-identical files) as soon as all
earlier ones are written. Per-model limiters serve older items first. A failed item goes to
`failures.jsonl` and the run goes on. Resume: items whose line is in `trace.jsonl` are skipped
and the declared outputs are rebuilt from the trace.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from .context import Item
from .errors import ItemError, Loc, Problem, RecipeError, RunError
from .jsonio import loads
from .inputs import InputError, Row, read_rows
from .llm.cache import CallCache, item_key
from .llm.client import LLMClient
from .outputs import RunFiles
from .registry import STAGES, code_version
from .spec import StageSpec, Workflow
from .templates import Templates, truthy

RUN_FILES = ("manifest.json", "failures.jsonl", "local-server.log")


@dataclass
class RunOptions:
    run_dir: Path
    limit: int | None = None
    fresh: bool = False
    concurrency: int | None = None       # overrides every model's concurrency
    max_open: int | None = None          # items in flight (default: 2 x total concurrency)
    progress: Callable[["RunState"], None] | None = None
    max_failures: int | None = None      # stop the run once more items than this failed


@dataclass
class RunState:
    """Counters of a run, shown live by the CLI and saved in the manifest."""

    done: int = 0
    failed: int = 0
    resumed: int = 0
    started_at: float = field(default_factory=time.time)
    failure_kinds: dict[str, int] = field(default_factory=dict)
    per_stage: dict[str, dict[str, int]] = field(default_factory=dict)
    llm: LLMClient | None = None

    def kinds_text(self) -> str:
        return ", ".join(f"{k}: {v}" for k, v in sorted(self.failure_kinds.items()))

    def count_calls(self, stages: dict[str, Any]) -> None:
        for sid, record in stages.items():
            totals = self.per_stage.setdefault(sid, {"calls": 0, "cache_hits": 0,
                                                     "prompt_tokens": 0,
                                                     "completion_tokens": 0})
            for key, count in record.get("stats", {}).items():
                totals[key] = totals.get(key, 0) + count
            for call in record.get("calls", []):
                totals["calls"] += 1
                totals["cache_hits"] += bool(call.get("cache_hit"))
                totals["prompt_tokens"] += call.get("prompt_tokens", 0)
                totals["completion_tokens"] += call.get("completion_tokens", 0)


def _key(item_id: Any) -> str:
    return json.dumps(item_id)


def read_done(trace: Path) -> set[str]:
    """Ids already in trace.jsonl. A torn last line (a kill mid-write) is cut off."""
    done: set[str] = set()
    if not trace.exists():
        return done
    good = 0
    with trace.open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                break
            try:
                done.add(_key(loads(line)["id"]))
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
    if good != trace.stat().st_size:
        with trace.open("r+b") as fh:
            fh.truncate(good)
    return done


class Runner:
    def __init__(self, workflow: Workflow, options: RunOptions):
        self.wf, self.opts = workflow, options
        self.templates = Templates(workflow.file.resolve().parent, workflow.template_dirs)
        self.state = RunState()
        self.files = RunFiles(options.run_dir, workflow, self.templates)
        self.kinds = {s.id: STAGES.get(s.kind) for s in workflow.stages}

    def prepare(self) -> set[str]:
        """Before any call: start over (--fresh) or check that the folder is this recipe's, then
        repair the trace and rebuild the outputs from it. Returns the ids already done."""
        if self.wf.input is None:
            raise RecipeError([Problem(Loc(str(self.wf.file)), "the recipe has no input",
                                       "add `input: {path: prompts.jsonl}` or pass --input")])
        if self.opts.fresh:
            self._clear()
        done = read_done(self.opts.run_dir / self.files.trace_path)
        if done:
            self._check_same_recipe()
        self.files.open(truncate_derived=True)
        self._rebuild()
        return done

    async def run(self, done: set[str]) -> RunState:
        cache = CallCache(self.wf.cache.dir, self.wf.cache.mode)
        llm = LLMClient(self.wf.models, cache, self.opts.concurrency)
        llm.shared["log_dir"] = self.opts.run_dir
        self.state.llm = llm
        try:
            await self._stream(llm, done)
        finally:
            self.files.close()
            await llm.close()
        return self.state

    def _check_same_recipe(self) -> None:
        """Resume only what the same recipe started: otherwise old and new records would mix."""
        try:
            before = json.loads((self.opts.run_dir / "manifest.json").read_text())
        except (OSError, ValueError):
            return
        if before.get("fingerprint") in (None, self.wf.fingerprint):
            return
        home = self.wf.file.resolve().parent
        now = {os.path.relpath(p, home): h for p, h in self.wf.files.items()}
        changed = sorted(p for p, h in before.get("hashes", {}).get("sha256", {}).items()
                         if p in now and now[p] != h)
        what = f" ({', '.join(changed)} changed)" if changed else ""
        raise RunError(f"{self.opts.run_dir} holds records of a different version of this "
                       f"recipe{what}",
                       "rerun with --fresh to start over (calls whose prompts did not change "
                       "still come from the cache), or pass another --output-dir")

    def _clear(self) -> None:
        for name in [s.path for s in self.wf.outputs] + list(RUN_FILES):
            (self.opts.run_dir / name).unlink(missing_ok=True)

    def _rebuild(self) -> None:
        trace = self.opts.run_dir / self.files.trace_path
        if not trace.exists():
            return
        with trace.open(encoding="utf-8") as fh:
            for line in fh:
                record = loads(line)
                try:
                    self.files.write(record, derived_only=True)
                except ItemError as exc:
                    raise RunError(f"cannot rebuild the outputs from item {record['id']!r} of "
                                   f"the trace: {exc}", "rerun with --fresh") from exc
                self.state.resumed += 1

    def _window(self) -> int:
        if self.opts.max_open:
            return self.opts.max_open
        total = sum(self.opts.concurrency or m.concurrency for m in self.wf.models.values())
        return max(16, 2 * total)

    async def _stream(self, llm: LLMClient, done: set[str]) -> None:
        window: deque[asyncio.Task] = deque()
        seen: set[str] = set()
        size = self._window()
        limit = self.opts.limit if self.opts.limit is not None else self.wf.input.limit
        fatal: list[RunError] = []

        def stop_all(task: asyncio.Task) -> None:
            """A RunError in any item (a wrong key, a dead server) stops the run now."""
            if not fatal and not task.cancelled() and isinstance(task.exception(), RunError):
                fatal.append(task.exception())
                for other in window:
                    other.cancel()

        async def finish_first() -> None:
            try:
                outcome = await window.popleft()
            except asyncio.CancelledError:
                if fatal:
                    raise fatal[0] from None
                raise
            self._finish(outcome)

        try:
            for row in read_rows(self.wf.input, limit):
                if isinstance(row, InputError):
                    task = asyncio.ensure_future(_failed(row))
                else:
                    key = _key(row.id)
                    dup = key in seen
                    if self.wf.input.id_field:   # row numbers cannot repeat: keep no set
                        seen.add(key)
                    if key in done and not dup:
                        continue
                    task = asyncio.ensure_future(self._item(row, llm, dup))
                task.add_done_callback(stop_all)
                window.append(task)
                if len(window) >= size:
                    await finish_first()
            while window:
                await finish_first()
        finally:
            for task in window:
                task.cancel()

    async def _item(self, row: Row, llm: LLMClient, duplicate: bool) -> dict[str, Any]:
        item = Item(row.index, row.id, row.row, self.wf, self.templates, llm)
        if duplicate:
            return _failure(item, ItemError(f"id {row.id!r} appears twice in the input",
                                            stage="input", kind="duplicate_id"))
        key = item_key(code_version(), self.wf.fingerprint, row.row)
        replay = llm.cache.get_item(key)
        if replay is not None:
            replay.update(id=row.id, index=row.index)
            for record in replay["stages"].values():
                llm.stats.replayed(record.get("calls", []))
            return {"trace": replay}
        stage: StageSpec | None = None
        try:
            for stage in self.wf.stages:
                await self.run_stage(stage, item)
            trace = item.trace()
            llm.cache.put_item(key, trace)
            return {"trace": trace}
        except ItemError as exc:
            exc.stage = exc.stage or (stage.id if stage else "")
            return _failure(item, exc)
        except RunError:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug in one stage must not end the run
            return _failure(item, ItemError(f"{exc.__class__.__name__}: {exc}",
                                            stage.id if stage else "", kind="internal_error"))

    async def run_stage(self, stage: StageSpec, item: Item) -> None:
        """One stage for one item (skipped when its `when` is false)."""
        if stage.when is not None:
            verdict = self.templates.evaluate(stage.when, item.context(),
                                              f"stage {stage.id!r} when")
            if not truthy(verdict):
                item.values[stage.id] = None
                item.stages[stage.id] = {"skipped": True, "value": None}
                return
        try:
            value = await self.kinds[stage.id].run(stage, item)
        except ItemError as exc:
            exc.stage = exc.stage or stage.id
            raise
        item.values[stage.id] = value
        item.stages.setdefault(stage.id, {})["value"] = value

    def _finish(self, outcome: dict[str, Any]) -> None:
        if "trace" in outcome:
            try:
                self.files.write(outcome["trace"])
                self.state.done += 1
                self.state.count_calls(outcome["trace"]["stages"])
            except ItemError as exc:
                outcome = {"failure": {"id": outcome["trace"]["id"], "stage": "outputs",
                                       "kind": exc.kind, "error": exc.message}}
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                outcome = {"failure": {"id": outcome["trace"]["id"], "stage": "outputs",
                                       "kind": "internal_error",
                                       "error": f"{exc.__class__.__name__}: {exc}"}}
        if "failure" in outcome:
            self.files.fail(outcome["failure"])
            self.state.failed += 1
            kind = outcome["failure"]["kind"]
            self.state.failure_kinds[kind] = self.state.failure_kinds.get(kind, 0) + 1
            if self.opts.max_failures is not None and self.state.failed > self.opts.max_failures:
                raise RunError(f"{self.state.failed} items failed, more than --max-failures "
                               f"{self.opts.max_failures} ({self.state.kinds_text()})",
                               "see failures.jsonl; fix the cause and rerun to resume")
        if self.opts.progress:
            self.opts.progress(self.state)


async def _failed(error: InputError) -> dict[str, Any]:
    return {"failure": {"id": None, "stage": "input", "kind": "bad_input", "error": str(error)}}


def _failure(item: Item, exc: ItemError) -> dict[str, Any]:
    return {"failure": {"id": item.id, "index": item.index, "stage": exc.stage,
                        "kind": exc.kind, "error": exc.message, "trace": item.trace()}}
