"""Figure a: engine overhead on plain calls.

N single-stage `generate` calls (an `openai` model at the fake server, 100 ms latency,
`concurrency: 256`, cache off) run through `engine.api.run`, against the floor: a bare aiohttp
client (one ClientSession, a semaphore of 256) sending the same N bodies to the same server.
Both alternate `repeats` times in the same run; the figure is median(engine) / median(floor).
"""

from __future__ import annotations

import asyncio
import json
import tempfile
from pathlib import Path
from typing import Any

import aiohttp

from engine.api import load_workflow, run
from engine.runner import RunOptions

from .common import (
    Figure,
    Stopwatch,
    fake_server,
    median,
    say,
    server_call,
    write_jsonl,
    write_yaml,
)

CONCURRENCY = 256
LATENCY = 0.1
MODEL = "fake-model"
PARAMS = {"max_tokens": 16, "temperature": 0.0}


def prompts(count: int) -> list[str]:
    """One distinct prompt per call."""
    return [f"Request {i:06d}: summarise the safety policy on topic {i % 97}." for i in
            range(count)]


def bodies(texts: list[str]) -> list[dict[str, Any]]:
    """Exactly what the engine's openai provider sends for each prompt (checked in the run)."""
    return [{"model": MODEL, "messages": [{"role": "user", "content": t}], **PARAMS}
            for t in texts]


def recipe(base_url: str) -> dict[str, Any]:
    """One `generate` stage on an `openai` model at the fake server, cache off."""
    model = {"provider": "openai", "model": MODEL, "base_url": base_url, "params": PARAMS,
             "concurrency": CONCURRENCY, "timeout": 60, "retries": 0}
    return {"version": 1, "name": "bench-calls", "models": {"m": model},
            "input": {"path": "input.jsonl"},
            "stages": [{"id": "gen", "kind": "generate", "model": "m",
                        "prompt_text": "{{ input.prompt }}"}],
            "cache": {"dir": "cache", "mode": "off"}}


async def floor_run(url: str, payloads: list[dict[str, Any]]) -> int:
    """The bare client: one session, a semaphore, every body posted and its JSON decoded."""
    limit = asyncio.Semaphore(CONCURRENCY)
    ok = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def one(payload: dict[str, Any]) -> None:
            nonlocal ok
            async with limit, session.post(url, json=payload) as resp:
                body = await resp.json()
                ok += bool(body["choices"][0]["message"]["content"])
        await asyncio.gather(*(one(p) for p in payloads))
    return ok


def engine_run(recipe_path: Path, run_dir: Path) -> tuple[float, int]:
    """The engine through its Python API; returns the wall of `run` and the items done."""
    workflow = load_workflow(recipe_path)
    with Stopwatch() as sw:
        state = run(workflow, RunOptions(run_dir=run_dir, fresh=True))
    return sw.seconds, state.done


def _same_bodies(url: str, payloads: list[dict[str, Any]]) -> bool:
    """Whether the engine sent exactly the floor's bodies (the fake server logs them)."""
    sent = [e["body"] for e in server_call(url, "/_log")]
    canon = sorted(json.dumps(b, sort_keys=True) for b in sent)
    return canon == sorted(json.dumps(b, sort_keys=True) for b in payloads)


def measure(calls: int, repeats: int) -> Figure:
    """Floor and engine alternate `repeats` times against one fake-server process."""
    texts = prompts(calls)
    payloads = bodies(texts)
    engine_s: list[float] = []
    floor_s: list[float] = []
    same = True
    with tempfile.TemporaryDirectory(prefix="bench-a-") as tmp, fake_server(LATENCY) as url:
        home = Path(tmp)
        write_jsonl(home / "input.jsonl", ({"prompt": t} for t in texts))
        path = write_yaml(home / "recipe.yaml", recipe(url))
        for rep in range(repeats):
            server_call(url, "/_reset?full=1", "POST")
            with Stopwatch() as sw:
                ok = asyncio.run(floor_run(url + "/chat/completions", payloads))
            floor_s.append(sw.seconds)
            server_call(url, "/_reset?full=1", "POST")
            seconds, done = engine_run(path, home / "run")
            engine_s.append(seconds)
            same = same and _same_bodies(url, payloads)
            say(f"  a[{rep + 1}/{repeats}] floor {floor_s[-1]:.2f}s ({ok} ok), "
                f"engine {seconds:.2f}s ({done} done)")
    ideal = calls * LATENCY / CONCURRENCY
    return Figure("a", f"engine/floor wall, {calls:,} calls", median(engine_s) / median(floor_s),
                  "x", 1.15, "<=", {"calls": calls, "engine_s": engine_s, "floor_s": floor_s,
                                    "ideal_s": ideal, "same_bodies": same})
