"""Shared pieces of the harness: figures, the fake server as a child process, small helpers."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

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
        target = _fmt(self.target)
        target = target.rstrip("0").rstrip(".") if "." in target else target
        return f"{'≤' if self.better == '<=' else '≥'} {target} {self.unit}".strip()

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

    def __enter__(self) -> Self:
        self.started = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.started


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _machine_busy_s() -> float | None:
    """CPU seconds the whole machine has spent busy (all CPUs), from /proc/stat."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)        # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    """CPU seconds of this process and of every child it has reaped (and theirs)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def cpu_account() -> Iterator[dict[str, Any]]:
    """Fills a dict with the CPU time the harness used and the CPU time other processes on
    the machine used meanwhile (`foreign_cpu_s`): a figure measured while something else
    loaded this 2-core machine is not comparable with its target."""
    report: dict[str, Any] = {}
    machine, own, started = _machine_busy_s(), _own_cpu_s(), time.perf_counter()
    try:
        yield report
    finally:
        wall = time.perf_counter() - started
        mine = _own_cpu_s() - own
        report.update(wall_s=round(wall, 2), own_cpu_s=round(mine, 2))
        now = _machine_busy_s()
        if machine is not None and now is not None:
            foreign = max(0.0, now - machine - mine)
            report.update(foreign_cpu_s=round(foreign, 2),
                          foreign_share=round(foreign / (wall * (os.cpu_count() or 1)), 3))
