"""Fixtures for running the real CLI (as a subprocess) against the in-repo fake OpenAI server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

from engine.testing import fake_server
from engine.testing.fake_server import FakeServer, FakeServerConfig

BIN = Path(sys.executable).parent
RUN = str(BIN / "aidsafe-run")
TOOLBOX = str(BIN / "aidsafe")
KEY_ENV = "AIDSAFE_TEST_API_KEY"
PROMPTS = ["alpha question", "bravo question", "charlie question", "delta question",
           "echo question"]


@dataclass
class Fake:
    """A running fake server: its base URL, the server object (request log, live config)."""

    base_url: str
    server: FakeServer

    @property
    def config(self) -> FakeServerConfig:
        return self.server.config

    @property
    def chats(self) -> list[dict[str, Any]]:
        return [r for r in self.server.requests if r["path"].endswith("/chat/completions")]

    def reset(self) -> None:
        self.server.reset()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Fake]]:
    """Factory: `fake(latency=0.3, ...)` starts a fake server; every one is stopped at teardown."""
    stops: list[Callable[[], None]] = []

    def start(**config: Any) -> Fake:
        base_url, server, stop = fake_server.run_in_thread(FakeServerConfig(**config))
        stops.append(stop)
        return Fake(base_url, server)

    yield start
    for stop in reversed(stops):
        stop()


@dataclass
class Recipe:
    """A recipe written into a folder, and helpers to run the CLI on it."""

    dir: Path
    path: Path
    input: Path
    data: dict[str, Any]
    env: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.input.read_text(encoding="utf-8").splitlines()]

    @property
    def out(self) -> Path:
        return self.dir / "out"

    @property
    def cache(self) -> Path:
        return self.dir / "cache"

    def run(self, *args: str, out: Path | None = None, quiet: bool = True,
            env: dict[str, str] | None = None, check: bool = False
            ) -> subprocess.CompletedProcess:
        cmd = [RUN, str(self.path), "--output-dir", str(out or self.out), *args]
        if quiet:
            cmd.append("--quiet")
        return cli(cmd, cwd=self.dir, env={**self.env, **(env or {})}, check=check)

    def popen(self, *args: str, out: Path | None = None) -> subprocess.Popen:
        cmd = [RUN, str(self.path), "--output-dir", str(out or self.out), "--quiet", *args]
        return subprocess.Popen(cmd, cwd=self.dir, env=child_env(self.env),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def toolbox(self, *args: str, check: bool = False) -> subprocess.CompletedProcess:
        return cli([TOOLBOX, *args], cwd=self.dir, env=self.env, check=check)


def child_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != KEY_ENV}
    env.update(extra)
    env["COLUMNS"] = "200"
    return env


def cli(cmd: list[str], cwd: Path, env: dict[str, str], check: bool = False
        ) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=child_env(env), capture_output=True, text=True,
                          timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} exited {proc.returncode}\nstdout:\n{proc.stdout}\n"
                             f"stderr:\n{proc.stderr}")
    return proc


def write_recipe(folder: Path, base_url: str, *, prompts: list[str] | None = None,
                 stage: dict[str, Any] | None = None, model: dict[str, Any] | None = None,
                 fields: dict[str, str] | None = None, name: str = "fake-run",
                 env: dict[str, str] | None = None) -> Recipe:
    """A one-stage `generate` recipe on `provider: openai` at `base_url`, with its input."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"p{i:02d}", "prompt": text} for i, text in enumerate(prompts or PROMPTS)]
    input_path = folder / "prompts.jsonl"
    input_path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = {
        "version": 1, "name": name,
        "models": {"writer": {"provider": "openai", "model": "fake-model", "base_url": base_url,
                              "params": {"temperature": 0.0, "max_tokens": 64},
                              "concurrency": 2, **(model or {})}},
        "input": {"path": "prompts.jsonl", "id_field": "id"},
        "stages": [{"id": "gen", "kind": "generate", "model": "writer",
                    "prompt_text": "Answer briefly: {{ input.prompt }}", **(stage or {})}],
        "outputs": [{"format": "jsonl", "path": "answers.jsonl",
                     "fields": fields or {"id": "{{ input.id }}", "prompt": "{{ input.prompt }}",
                                          "answer": "{{ gen }}"}}],
        "cache": {"dir": "cache"},
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Recipe(folder, path, input_path, data, dict(env or {}))


@pytest.fixture
def make_recipe(tmp_path: Path) -> Callable[..., Recipe]:
    """Factory: `make_recipe(base_url, folder="a", stage={...}, ...)` writes a recipe."""

    def make(base_url: str, folder: str = "recipe", **kwargs: Any) -> Recipe:
        return write_recipe(tmp_path / folder, base_url, **kwargs)

    return make
