"""Figure d: peak memory of a long input.

10k and 1M rows (small jsonl files written by streaming) go through one cheap `mock` stage
(cache off, a tiny `prompt_text`), each run in a fresh child process
(`python -m benchmarks.fig_memory --child RECIPE RUN_DIR`) that reports its own peak RSS
(VmHWM of /proc/self/status; `ru_maxrss` where there is no /proc, see `peak_rss`), its RSS
before the run, rows and wall time.
Targets: every peak ≤ 250 MB, and the big peak ≤ 1.2x the small one (memory flat in the
input's length).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ROOT, Figure, say, write_jsonl, write_yaml

MB = 1024 * 1024


def recipe() -> dict[str, Any]:
    """One cheap `mock` stage, cache off; no id_field, so ids are row numbers."""
    return {"version": 1, "name": "bench-memory",
            "models": {"m": {"provider": "mock"}},
            "input": {"path": "input.jsonl"},
            "stages": [{"id": "hi", "kind": "generate", "model": "m",
                        "prompt_text": "Say hi to {{ input.name }}."}],
            "cache": {"dir": "cache", "mode": "off"}}


def rows(count: int) -> Iterator[dict[str, Any]]:
    """`count` tiny rows, generated lazily (the input is written by streaming)."""
    return ({"name": f"user{i}"} for i in range(count))


def _status(field: str) -> int | None:
    """A size from /proc/self/status (VmRSS: now, VmHWM: peak of this process image), bytes."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def peak_rss() -> int:
    """This process's peak RSS in bytes. VmHWM first: ru_maxrss of a child started by
    fork/vfork + exec also holds the parent's high-water mark at exec time (Linux keeps it in
    the signal struct), so in a harness grown to 65 MB a 45 MB child reads 65 MB."""
    hwm = _status("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(recipe_path: str, run_dir: str) -> None:
    """Run one recipe in this (fresh) process and print one JSON line about it."""
    from engine.api import load_workflow, run
    from engine.runner import RunOptions

    workflow = load_workflow(recipe_path)
    before = _status("VmRSS") or 0
    started = time.perf_counter()
    state = run(workflow, RunOptions(run_dir=Path(run_dir), fresh=True))
    wall = time.perf_counter() - started
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    print(json.dumps({"done": state.done, "failed": state.failed, "wall_s": wall,
                      "rss_before_mb": before / MB, "peak_rss_mb": peak_rss() / MB,
                      "ru_maxrss_mb": maxrss / MB}))


def one_size(home: Path, count: int) -> dict[str, Any]:
    """Write `count` rows, run them in a fresh child, return what the child reported."""
    folder = home / f"rows-{count}"
    folder.mkdir()
    write_jsonl(folder / "input.jsonl", rows(count))
    path = write_yaml(folder / "recipe.yaml", recipe())
    out = subprocess.run([sys.executable, "-m", "benchmarks.fig_memory", "--child", str(path),
                          str(folder / "run")], cwd=ROOT, capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"memory child failed ({out.returncode}): {out.stderr[-2000:]}")
    report = json.loads(out.stdout.strip().splitlines()[-1])
    report["rows"] = count
    report["rows_per_s"] = count / report["wall_s"]
    say(f"  d: {count:,} rows: peak {report['peak_rss_mb']:.1f} MB (before the run "
        f"{report['rss_before_mb']:.1f} MB), {report['rows_per_s']:,.0f} rows/s, "
        f"{report['done']:,} done in {report['wall_s']:.1f}s")
    return report


def measure(small: int, big: int) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="bench-d-") as tmp:
        low = one_size(Path(tmp), small)
        high = one_size(Path(tmp), big)
    details = {"small": low, "big": high}
    peak = max(low["peak_rss_mb"], high["peak_rss_mb"])
    ratio = high["peak_rss_mb"] / low["peak_rss_mb"]
    return [Figure("d.peak", f"peak RSS, {small:,} / {big:,} rows (max)", peak, "MB", 250,
                   "<=", details),
            Figure("d.ratio", f"peak RSS {big:,} rows / {small:,} rows", ratio, "x", 1.2,
                   "<=", {"small_mb": low["peak_rss_mb"], "big_mb": high["peak_rss_mb"],
                          "rows_per_s_small": low["rows_per_s"],
                          "rows_per_s_big": high["rows_per_s"]})]


def main() -> None:
    parser = argparse.ArgumentParser(description="the child process of figure d")
    parser.add_argument("--child", nargs=2, metavar=("RECIPE", "RUN_DIR"), required=True)
    child(*parser.parse_args().child)


if __name__ == "__main__":
    main()
