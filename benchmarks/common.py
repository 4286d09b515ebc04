"""Shared pieces of the harness: figures, the fake server as a child process, small helpers."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Figure:
    """One measured number with its target; `better` says which side of the target passes."""

    key: str
    name: str
    value: float | None
    unit: str
    target: float
    better: str                      # "<=" or ">="
    details: dict[str, Any] = field(default_factory=dict)
    skipped: str | None = None       # why the figure was not measured

    @property
    def passed(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.target if self.better == "<=" else self.value >= self.target

    def measured(self) -> str:
        return "skipped" if self.value is None else f"{_fmt(self.value)} {self.unit}".strip()

    def goal(self) -> str:
        return f"{'≤' if self.better == '<=' else '≥'} {_fmt(self.target)} {self.unit}".strip()

    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: "skipped"}[self.passed]

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "value": self.value, "unit": self.unit,
                "target": self.target, "better": self.better, "passed": self.passed,
                "skipped": self.skipped, "details": self.details}


def _fmt(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def say(message: str) -> None:
    """A progress line, flushed at once (the harness runs for minutes)."""
    print(message, flush=True)


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Stream rows to a jsonl file (never all in memory); returns how many were written."""
    count = 0
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def write_yaml(path: Path, recipe: dict[str, Any]) -> Path:
    """Write a recipe. JSON is YAML, so no YAML writer is needed."""
    path.write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return path


@contextmanager
def fake_server(latency: float, rules: list[tuple[str, str]] = ()) -> Iterator[str]:
    """Run `python -m engine.testing.fake_server` in its own process (so it never shares the
    measured client's event loop or core time slice); yields its base URL."""
    args = [sys.executable, "-m", "engine.testing.fake_server", "--port", "0",
            "--latency", str(latency)]
    for pattern, reply in rules:
        if "=" in pattern:
            raise ValueError(f"a fake-server rule pattern cannot contain '=': {pattern!r}")
        args += ["--rule", f"{pattern}={reply}"]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the fake server did not start (exit {proc.poll()})")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def server_call(base_url: str, path: str, method: str = "GET") -> Any:
    """A test route of the fake server (`/_log`, `/_reset?full=1`), outside any event loop."""
    root = base_url.rsplit("/v1", 1)[0]
    request = urllib.request.Request(root + path, method=method, data=b"" if method == "POST"
                                     else None)
    with urllib.request.urlopen(request, timeout=60) as resp:
        return json.loads(resp.read())


class Stopwatch:
    """`with Stopwatch() as sw: ...` then `sw.seconds` (perf_counter wall time)."""

    def __enter__(self) -> "Stopwatch":
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
