"""`python -m benchmarks.run [--quick] [--only a,b,...] [--json PATH]`: measure every figure
in one run on this machine, print a table (figure, measured, target, pass/fail) and write the
results as JSON (default benchmarks/results/latest.json). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import ROOT, Figure, cpu_account, say

GROUPS = "abcde"
DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"


@dataclass(frozen=True)
class Sizes:
    calls: int          # a: calls per run
    repeats: int        # a: engine/floor runs, alternating
    items: int          # b, c: AIDSAFE items
    small_rows: int     # d
    big_rows: int       # d
    local_limit: int    # e: --limit


FULL = Sizes(calls=5000, repeats=3, items=1000, small_rows=10_000, big_rows=1_000_000,
             local_limit=5)
QUICK = Sizes(calls=1000, repeats=1, items=200, small_rows=10_000, big_rows=100_000,
              local_limit=1)


def _plan(sizes: Sizes) -> dict[str, Callable[[], list[Figure]]]:
    """One measuring function per group of figures (b and c share one pair of runs)."""
    from . import fig_calls, fig_local, fig_memory, fig_recipe

    return {"a": lambda: [fig_calls.measure(sizes.calls, sizes.repeats)],
            "bc": lambda: fig_recipe.measure(sizes.items),
            "d": lambda: fig_memory.measure(sizes.small_rows, sizes.big_rows),
            "e": lambda: [fig_local.measure(sizes.local_limit)]}


def measure(only: str, sizes: Sizes) -> list[Figure]:
    """Run the groups holding a requested figure, each with its CPU accounting."""
    figures: list[Figure] = []
    for group, run in _plan(sizes).items():
        if not set(group) & set(only):
            continue
        say(f"[{group}] measuring …")
        with cpu_account() as load:
            measured = [f for f in run() if f.key[0] in only]
        for figure in measured:
            figure.details["cpu"] = load
        figures += measured
        busy = load.get("foreign_share", 0.0)
        warn = (f"; WARNING: other processes used {busy:.0%} of the machine's CPU meanwhile, "
                "so these figures are not comparable with their targets" if busy > 0.1 else "")
        say(f"[{group}] {load['wall_s']:.1f}s, harness CPU {load['own_cpu_s']:.1f}s, other "
            f"processes' CPU {load.get('foreign_cpu_s', float('nan')):.1f}s{warn}")
    return figures


def table(figures: list[Figure]) -> str:
    """The final table: figure, measured, target, result."""
    rows = [("figure", "measured", "target", "result")]
    rows += [(f"{f.key}  {f.name}", f.measured(), f.goal(), f.verdict()) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _git() -> dict[str, Any]:
    """The commit measured, and whether the tree had uncommitted changes."""
    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                             check=False)
        return out.stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def report(figures: list[Figure], sizes: Sizes, quick: bool, total: float) -> dict[str, Any]:
    """The JSON written to --json."""
    return {"when": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "quick": quick, "sizes": sizes.__dict__, "total_s": round(total, 1),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "platform": platform.platform()},
            "git": _git(), "figures": [f.to_json() for f in figures]}


def _args(argv: list[str] | None) -> argparse.Namespace:
    """Command-line options; --only is normalised to a string of letters."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller sizes, about a minute (see benchmarks/README.md)")
    parser.add_argument("--only", default=GROUPS, metavar="a,b,...",
                        help="figures to measure, from a, b, c, d, e (default: all)")
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, metavar="PATH",
                        help=f"where to write the results (default {DEFAULT_JSON})")
    args = parser.parse_args(argv)
    args.only = "".join(sorted({p.strip() for p in args.only.split(",") if p.strip()}))
    if not args.only or set(args.only) - set(GROUPS):
        parser.error(f"--only takes letters from {','.join(GROUPS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, print the table, write the JSON; 0 whether or not targets are met."""
    args = _args(argv)
    sizes = QUICK if args.quick else FULL
    started = time.perf_counter()
    figures = measure(args.only, sizes)
    total = time.perf_counter() - started
    say("\n" + table(figures))
    say(f"\ntotal {total:.1f}s on {os.cpu_count()} CPUs"
        f"{' (quick sizes)' if args.quick else ''}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report(figures, sizes, args.quick, total), indent=2)
                         + "\n", encoding="utf-8")
    say(f"results: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
