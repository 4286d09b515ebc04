"""Figures b and c: the AIDSAFE recipe (workflows/aidsafe.yaml) through the fake server.

b. N items, both models `provider: openai` at the fake server (100 ms latency,
   `concurrency: 64`), cache in a temp folder (`cache_dir=`, the API's `--cache-dir`). The server is scripted so each item's
   deliberation stops after K turns, K drawn in 1..4 per item: the item's prompt carries a
   marker `[stop-after-K]` and the deliberation turn whose prompt says "This is turn K." gets
   `"agree": true`. In-flight utilisation = (calls x latency / concurrency) / wall.
c. The same recipe again with `fresh=True` against the same cache: every call is a hit.
   Cached calls per second, and the cached wall as a share of the uncached wall.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path
from typing import Any

from engine.api import load_workflow, run
from engine.runner import RunOptions, RunState

from .common import ROOT, Figure, Stopwatch, fake_server, say, write_jsonl

RECIPE = ROOT / "workflows" / "aidsafe.yaml"
LATENCY = 0.1
CONCURRENCY = 64
MAX_TURNS = 4

INTENTS = {"explicit_intents": ["learn how to store household chemicals"],
           "implicit_intents": ["keep the family safe"]}
SEED = {"thoughts": ["The request is about household safety.",
                     "No policy forbids explaining safe storage."],
        "response": "Keep chemicals in their original containers, out of children's reach."}
TURN = {"thoughts": ["Mixing bleach and ammonia must be warned against explicitly."],
        "response": "Store them sealed, apart, out of reach; never mix bleach and ammonia.",
        "agree": False}
AGREE = {"thoughts": [], "response": "", "agree": True}
REFINER = {"drop": [], "response": "Store them sealed, apart and out of reach."}


def rules() -> list[tuple[str, str]]:
    """Fake-server rules, first match wins over all message contents joined. The backreference
    makes the turn named by the item's marker the agreeing one."""
    return [(r"(?s)\[stop-after-(\d)\].*This is turn \1\.", json.dumps(AGREE)),
            (r"This is turn \d+\.", json.dumps(TURN)),
            (r"You are an impartial refiner", json.dumps(REFINER)),
            (r"Intents of the request:", json.dumps(SEED)),
            (r"explicit_intents", json.dumps(INTENTS))]


def items(count: int, seed: int = 0) -> list[dict[str, Any]]:
    """Distinct prompts (so no two items share a cache key), each with its stop turn."""
    rng = random.Random(seed)
    return [{"id": f"b{i:05d}", "stop_after": (k := rng.randint(1, MAX_TURNS)),
             "prompt": f"Question {i}: how do I store cleaning products safely? "
                       f"[stop-after-{k}]"} for i in range(count)]


def overrides(base_url: str) -> tuple[str, ...]:
    """`--set`-style overrides: both models at the fake server, 64 requests in flight each."""
    sets: list[str] = []
    for model in ("deliberator", "refiner"):
        sets += [f"models.{model}.provider=openai", f"models.{model}.model=fake-model",
                 f"models.{model}.base_url={base_url}",
                 f"models.{model}.concurrency={CONCURRENCY}"]
    return tuple(sets)


def _run(home: Path, base_url: str, fresh: bool) -> tuple[float, RunState]:
    """One run of the recipe through the Python API; returns the wall of `run`."""
    # cache_dir is the API's --cache-dir: a `--set cache.dir=` outside the recipe's folder
    # would be refused (recipes may only write next to themselves)
    workflow = load_workflow(RECIPE, overrides(base_url), input_path=str(home / "input.jsonl"),
                             cache_dir=str(home / "cache"))
    with Stopwatch() as sw:
        state = run(workflow, RunOptions(run_dir=home / "run", fresh=fresh))
    return sw.seconds, state


def _trace_summary(run_dir: Path, rows: list[dict[str, Any]]) -> tuple[bool, dict[str, int]]:
    """Whether every item's deliberation stopped exactly after its scripted turn, and the
    calls per model (from trace.jsonl)."""
    wanted = {r["id"]: r["stop_after"] for r in rows}
    turns: dict[str, int] = {}
    per_model: dict[str, int] = {}
    with (run_dir / "trace.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            turns[record["id"]] = record["stages"]["deliberation"]["value"]["turns"]
            for stage in record["stages"].values():
                for call in stage.get("calls", []):
                    per_model[call["model"]] = per_model.get(call["model"], 0) + 1
    return turns == wanted, per_model


def measure(count: int) -> list[Figure]:
    """b from an uncached run, c from a cached rerun of the same items."""
    rows = items(count)
    expected = sum(3 + r["stop_after"] for r in rows)
    with tempfile.TemporaryDirectory(prefix="bench-bc-") as tmp, \
            fake_server(LATENCY, rules()) as url:
        home = Path(tmp)
        write_jsonl(home / "input.jsonl", rows)
        cold_s, cold = _run(home, url, fresh=True)
        turns_ok, per_model = _trace_summary(home / "run", rows)
        warm_s, warm = _run(home, url, fresh=True)
    calls, hits = cold.llm.stats.calls, warm.llm.stats.cache_hits
    ideal = calls * LATENCY / CONCURRENCY
    # each model has its own 64 slots, so the figure can pass 1; the busiest model's own
    # utilisation (its calls x latency / its concurrency / wall) is the stricter reading
    busiest = max(per_model.values(), default=0) * LATENCY / CONCURRENCY / cold_s
    say(f"  b: {cold.done} done, {cold.failed} failed, {calls} calls (expected {expected}), "
        f"{cold_s:.2f}s; turns as scripted: {turns_ok}; calls per model {per_model}, "
        f"busiest model's own utilisation {busiest:.3f}")
    say(f"  c: {warm.done} done, {hits} cache hits of {warm.llm.stats.calls} calls, "
        f"{warm_s:.3f}s")
    b = Figure("b", f"in-flight utilisation, AIDSAFE x{count:,}", ideal / cold_s, "", 0.87,
               ">=", {"items": count, "done": cold.done, "failed": cold.failed,
                      "calls": calls, "expected_calls": expected, "wall_s": cold_s,
                      "ideal_s": ideal, "turns_as_scripted": turns_ok,
                      "calls_per_model": per_model, "busiest_model_utilisation": busiest})
    c_rate = Figure("c.rate", "cached calls per second", hits / warm_s, "calls/s", 20_000,
                    ">=", {"cache_hits": hits, "wall_s": warm_s, "done": warm.done})
    c_share = Figure("c.share", "cached wall / uncached wall", 100 * warm_s / cold_s, "%", 5.0,
                     "<=", {"cached_s": warm_s, "uncached_s": cold_s})
    return [b, c_rate, c_share]
