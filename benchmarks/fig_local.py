"""Figure e: the embedded default, engine share of a real local run.

`aidsafe-run workflows/aidsafe.yaml --limit N` (fresh run folder, fresh cache) runs as a CLI
subprocess on the embedded llama.cpp server; its wall time is compared with the time the
server spent generating, read from the server's own log (`local-server.log`).

"Time the server spent generating", with 4 parallel slots: the wall-clock time during which
at least one slot was processing a request, i.e. the union of the [launch_slot_, release]
intervals of every task, from the log's own timestamps (`M.SS.mmm.uuu`, minutes since the
server's start). Any time no slot is busy (Python start-up, model load, the engine between
a reply and the next request, shutdown) is counted as the engine's. Engine share =
1 - busy / wall. For reference, the details also give the sum of the per-request
`total time` of `print_timing` divided by the slots: a lower bound of the busy time that is
only reached when all slots are always full, which a 5-item run of sequential stages cannot do.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import ROOT, Figure, Stopwatch, say

STAMP = r"(?P<m>\d+)\.(?P<s>\d+)\.(?P<ms>\d+)\.(?P<us>\d+)"
LAUNCH = re.compile(STAMP + r" \w slot launch_slot_: id\s+(?P<slot>\d+) \| task (?P<task>-?\d+)")
RELEASE = re.compile(STAMP + r" \w slot\s+release: id\s+(?P<slot>\d+) \| task (?P<task>-?\d+)")
TOTAL = re.compile(r"total time =\s+(?P<ms>[\d.]+) ms")
SLOTS = re.compile(r"n_slots = (?P<n>\d+)")
PROMPT = re.compile(r"prompt eval time =\s+[\d.]+ ms /\s+(?P<n>\d+) tokens")
GEN = re.compile(r"\|\s+eval time =\s+[\d.]+ ms /\s+(?P<n>\d+) tokens")


def _seconds(match: re.Match) -> float:
    return (int(match["m"]) * 60 + int(match["s"]) + int(match["ms"]) / 1e3
            + int(match["us"]) / 1e6)


def busy_intervals(log: str) -> list[tuple[float, float]]:
    """[start, end] of every task a slot processed, in seconds since the server started."""
    started: dict[str, float] = {}
    spans = []
    for line in log.splitlines():
        if match := LAUNCH.match(line):
            started[match["slot"]] = _seconds(match)
        elif (match := RELEASE.match(line)) and match["slot"] in started:
            spans.append((started.pop(match["slot"]), _seconds(match)))
    return sorted(spans)


def union_length(spans: list[tuple[float, float]]) -> float:
    """Total length of the union of intervals (sorted by start)."""
    total, current = 0.0, None
    for start, end in spans:
        if current is not None and start <= current[1]:
            current[1] = max(current[1], end)
            continue
        if current is not None:
            total += current[1] - current[0]
        current = [start, end]
    return total + (current[1] - current[0] if current else 0.0)


def server_times(log: str) -> dict[str, Any]:
    """Busy wall, summed per-request totals and slots, from a llama.cpp server log."""
    spans = busy_intervals(log)
    totals = [float(m["ms"]) / 1000 for m in TOTAL.finditer(log)]
    slots = int(m["n"]) if (m := SLOTS.search(log)) else 4
    busy = union_length(spans)
    generated = sum(int(m["n"]) for m in GEN.finditer(log))
    return {"requests": len(totals), "slots": slots, "busy_s": busy,
            "prompt_tokens_evaluated": sum(int(m["n"]) for m in PROMPT.finditer(log)),
            "generated_tokens": generated, "generated_per_busy_s": generated / busy if busy else 0,
            "sum_total_s": sum(totals), "sum_total_per_slot_s": sum(totals) / slots,
            "first_launch_s": spans[0][0] if spans else None,
            "last_release_s": spans[-1][1] if spans else None}


def _cli() -> list[str]:
    here = Path(sys.executable).parent / "aidsafe-run"
    found = str(here) if here.exists() else shutil.which("aidsafe-run")
    return [found] if found else [sys.executable, "-m", "engine.cli"]


def measure(limit: int) -> Figure:
    from engine.llm.local_server import missing_packages

    name = f"engine share, embedded model, --limit {limit}"
    if missing_packages():
        why = f"missing {', '.join(missing_packages())}"
        return Figure("e", name, None, "%", 5.0, "<=", skipped=why)
    with tempfile.TemporaryDirectory(prefix="bench-e-") as tmp:
        out, cache = Path(tmp) / "run", Path(tmp) / "cache"
        cmd = _cli() + ["workflows/aidsafe.yaml", "--limit", str(limit), "-o", str(out),
                        "--cache-dir", str(cache), "-q"]
        with Stopwatch() as sw:
            done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
        log_path = out / "local-server.log"
        if done.returncode != 0 or not log_path.exists():
            return Figure("e", name, None, "%", 5.0, "<=",
                          skipped=f"aidsafe-run exited {done.returncode}: "
                                  f"{done.stderr.strip()[-300:]}")
        times = server_times(log_path.read_text(encoding="utf-8", errors="replace"))
    times["wall_s"] = sw.seconds
    times["engine_share_lower_bound_def"] = 100 * (1 - times["sum_total_per_slot_s"]
                                                   / sw.seconds)
    share = 100 * (1 - times["busy_s"] / sw.seconds)
    say(f"  e: wall {sw.seconds:.1f}s, server busy {times['busy_s']:.1f}s over "
        f"{times['requests']} requests on {times['slots']} slots (sum of totals / slots "
        f"{times['sum_total_per_slot_s']:.1f}s)")
    return Figure("e", name, share, "%", 5.0, "<=", times)
