"""Command line: `aidsafe-run WORKFLOW` and the `aidsafe` toolbox. The only module that prints
errors and picks exit codes: 0 done, 1 runtime failure, 2 recipe or usage error."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable

import click

from . import __version__, api, report as reporting
from .errors import AidsafeError, RecipeError, RunError
from .registry import ALL
from .runner import RunOptions, RunState
from .schema import build_schema


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn engine errors into messages and exit codes; a traceback only with --debug."""

    @functools.wraps(fn)
    def wrapper(*args: Any, debug: bool = False, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (click.exceptions.ClickException, click.exceptions.Abort):
            raise  # usage errors: click prints them (exit 2)
        except Exception as exc:  # noqa: BLE001 - the one place errors become exit codes
            if debug:
                raise
            code, text = _describe(exc)
            click.echo(text, err=True)
            sys.exit(code)
        except KeyboardInterrupt:
            click.echo("interrupted: rerun the same command to resume", err=True)
            sys.exit(130)

    return click.option("--debug", is_flag=True, help="Show tracebacks.")(wrapper)


def _describe(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, RecipeError):
        count = len(exc.problems)
        return 2, f"{exc}\n{count} problem{'s' * (count != 1)} found"
    if isinstance(exc, RunError):
        return 1, f"error: {exc}"
    if isinstance(exc, AidsafeError):
        return 1, f"error: {exc}"
    return 1, (f"internal error: {exc.__class__.__name__}: {exc}\n"
               "  hint: rerun with --debug and report the traceback")


def _load(workflow: str, sets: tuple[str, ...], **kwargs: Any):
    return api.load_workflow(workflow, sets, **kwargs)


def allow_root_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--allow-root", "allow_roots", multiple=True, metavar="DIR",
                        type=click.Path(file_okay=False, exists=True),
                        help="Also let the recipe read inputs, policies and templates in DIR "
                             "(repeatable).")(fn)


SET_HELP = "Override a recipe value: --set models.writer.provider=openai (repeatable)."


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--input", "input_path", help="Input file (overrides input.path).")
@click.option("--output-dir", "-o", type=click.Path(file_okay=False),
              help="Run folder (default: runs/<name>/).")
@click.option("--limit", type=click.IntRange(min=1), help="Process only the first N rows.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--cache-dir", type=click.Path(file_okay=False), help="Call cache folder.")
@click.option("--offline", is_flag=True, help="Cache only: a call not in the cache fails.")
@click.option("--dry-run", is_flag=True, help="Validate and show the first item's prompts.")
@click.option("--concurrency", type=click.IntRange(min=1), help="Requests in flight per model.")
@click.option("--fresh", is_flag=True, help="Start the run over (the cache is kept).")
@click.option("--max-failures", metavar="N|P%",
              help="Exit 1 when more than N items (the run stops at once) or more than P% of "
                   "the items (checked at the end) failed.")
@click.option("--quiet", "-q", is_flag=True, help="No progress display.")
@allow_root_option
@click.version_option(__version__, prog_name="aidsafe")
@guarded
def run_main(workflow: str, input_path: str | None, output_dir: str | None, limit: int | None,
             sets: tuple[str, ...], cache_dir: str | None, offline: bool, dry_run: bool,
             concurrency: int | None, fresh: bool, max_failures: str | None, quiet: bool,
             allow_roots: tuple[str, ...]) -> None:
    """Run a workflow: every item through every stage; rerun to resume."""
    count, share = _failure_budget(max_failures)
    wf = _load(workflow, sets, input_path=input_path, cache_dir=cache_dir, offline=offline,
               allow_roots=allow_roots)
    if dry_run:
        _print_render(wf, api.render_item(wf))
        click.echo(f"dry run: {wf.name} is valid; no model was called", err=True)
        return
    run_dir = Path(output_dir or Path("runs") / wf.name)
    progress = _Progress(limit or (wf.input.limit if wf.input else None), quiet)
    options = RunOptions(run_dir=run_dir, limit=limit, fresh=fresh, concurrency=concurrency,
                         progress=progress.update, max_failures=count)
    try:
        state = api.run(wf, options)
    finally:
        progress.close()
    if not quiet:
        click.echo(_summary(wf.name, state, run_dir), err=True)
    if state.failed and not state.done and not state.resumed:
        click.echo(f"error: no item succeeded ({state.failed} failed); see "
                   f"{run_dir / 'failures.jsonl'}", err=True)
        sys.exit(1)
    processed = state.done + state.failed
    if share is not None and processed and state.failed / processed * 100 > share:
        click.echo(f"error: {state.failed} of {processed} items failed, more than "
                   f"--max-failures {share:g}% ({state.kinds_text()})", err=True)
        sys.exit(1)


def _failure_budget(text: str | None) -> tuple[int | None, float | None]:
    """`--max-failures 10` (a count) or `--max-failures 5%` (a share)."""
    if text is None:
        return None, None
    try:
        if text.endswith("%"):
            share = float(text[:-1])
            if 0 <= share <= 100:
                return None, share
        elif int(text) >= 0:
            return int(text), None
    except ValueError:
        pass
    raise click.BadParameter("give a count such as 10 or a share such as 5%",
                             param_hint="--max-failures")


class _Progress:
    """Live counts on stderr (tqdm); silent with --quiet or when stderr is not a terminal."""

    def __init__(self, total: int | None, quiet: bool):
        from tqdm import tqdm
        self.bar = tqdm(total=total, unit="item", disable=True if quiet else None,
                        file=sys.stderr, dynamic_ncols=True)

    def update(self, state: RunState) -> None:
        stats = state.llm.stats
        self.bar.n = state.done + state.failed
        self.bar.set_postfix_str(
            f"done={state.done} failed={state.failed} calls={stats.calls} "
            f"cached={stats.cache_hits} tokens={stats.prompt_tokens + stats.completion_tokens}",
            refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _summary(name: str, state: RunState, run_dir: Path) -> str:
    stats = state.llm.stats if state.llm else None
    lines = [f"{name}: {state.done} done, {state.failed} failed"
             + (f", {state.resumed} already done" if state.resumed else "")]
    if stats:
        lines.append(f"  calls {stats.calls} ({stats.cache_hits} from cache, "
                     f"{stats.retries} retries), tokens {stats.prompt_tokens} in / "
                     f"{stats.completion_tokens} out")
    if state.failed:
        lines.append(f"  failures ({state.kinds_text()}): see {run_dir / 'failures.jsonl'}")
    lines.append(f"  output: {run_dir}/")
    return "\n".join(lines)


def _print_render(wf, trace: dict[str, Any]) -> None:
    click.echo(f"# item {trace['id']!r} of {wf.name}")
    for sid, record in trace["stages"].items():
        if record.get("skipped"):
            click.echo(f"\n## stage {sid}: skipped (when is false)")
            continue
        for call in record.get("calls", []):
            click.echo(f"\n## stage {sid} · model {call['model']} · sample {call['sample']}")
            for message in call["messages"]:
                click.echo(f"--- {message['role']}\n{message['content']}")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aidsafe")
def toolbox() -> None:
    """aidsafe toolbox: validate, render, cache, report, schema, plugins."""


@toolbox.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--input", "input_path", help="Input file (overrides input.path).")
@allow_root_option
@guarded
def validate(workflow: str, sets: tuple[str, ...], input_path: str | None,
             allow_roots: tuple[str, ...]) -> None:
    """Check a recipe (schema, references, templates) without calling any model."""
    wf = _load(workflow, sets, input_path=input_path, allow_roots=allow_roots)
    click.echo(f"ok: {wf.name}: {len(wf.stages)} stages, {len(wf.models)} models, "
               f"{len(wf.files)} files checked")


@toolbox.command()
@click.argument("workflow", type=click.Path(dir_okay=False))
@click.option("--item", "which", help="Row number (0-based) or id; default: the first row.")
@click.option("--set", "sets", multiple=True, metavar="PATH=VALUE", help=SET_HELP)
@click.option("--input", "input_path", help="Input file (overrides input.path).")
@allow_root_option
@guarded
def render(workflow: str, which: str | None, sets: tuple[str, ...], input_path: str | None,
           allow_roots: tuple[str, ...]) -> None:
    """Print the prompts of one item. No model is called: replies come from `mock`."""
    wf = _load(workflow, sets, input_path=input_path, allow_roots=allow_roots)
    _print_render(wf, api.render_item(wf, which))


@toolbox.group()
def cache() -> None:
    """Inspect or clear the call cache."""


def _cache_args(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--cache-dir", type=click.Path(file_okay=False),
                      help="Cache folder (instead of the recipe's).")(fn)
    return click.argument("workflow", required=False, type=click.Path(dir_okay=False))(fn)


def _open_cache(workflow: str | None, cache_dir: str | None):
    return api.cache_for(_load(workflow, ()) if workflow and not cache_dir else None, cache_dir)


@cache.command("stats")
@_cache_args
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@guarded
def cache_stats(workflow: str | None, cache_dir: str | None, as_json: bool) -> None:
    """Entries, size and tokens in the cache, per model."""
    _need_one(workflow, cache_dir)
    stats = _open_cache(workflow, cache_dir).stats()
    if as_json:
        click.echo(json.dumps(stats, indent=2))
        return
    click.echo(f"{stats['folder']}: {stats['entries']} entries, {stats['bytes']} bytes, "
               f"{stats['completion_tokens']} completion tokens")
    for model, count in sorted(stats["per_model"].items()):
        click.echo(f"  {model}: {count}")


@cache.command("clear")
@_cache_args
@click.option("--yes", is_flag=True, help="Do not ask.")
@guarded
def cache_clear(workflow: str | None, cache_dir: str | None, yes: bool) -> None:
    """Delete every entry of the cache (the next run pays for every call again)."""
    _need_one(workflow, cache_dir)
    store = _open_cache(workflow, cache_dir)
    if yes or click.confirm(f"delete every entry in {store.folder}?"):
        click.echo(f"removed {store.clear()} entries")


def _need_one(workflow: str | None, cache_dir: str | None) -> None:
    if not workflow and not cache_dir:
        raise click.UsageError("give a WORKFLOW or --cache-dir")


@toolbox.command()
@click.argument("run_dirs", nargs=-1, required=True, metavar="RUN_DIR [RUN_DIR ...]",
                type=click.Path(file_okay=False))
@click.option("--output", "-o", default="report.html", show_default=True,
              type=click.Path(dir_okay=False), help="The HTML file to write.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@guarded
def report(run_dirs: tuple[str, ...], output: str, as_json: bool) -> None:
    """One self-contained HTML page (grades, pairwise, plots, items, manifests) over run
    folders; the Table-1 numbers and win rates on stdout."""
    data, path = reporting.build(list(run_dirs), output)
    click.echo(json.dumps(data, indent=2, ensure_ascii=False) if as_json
               else reporting.summary_text(data))
    click.echo(f"report: {path}", err=True)


@toolbox.command()
def schema() -> None:
    """Print the recipe JSON Schema (editors can use it for completion)."""
    click.echo(json.dumps(build_schema(), indent=2))


@toolbox.command()
def plugins() -> None:
    """List stage kinds, providers and output formats, built-in and from plugins."""
    for group, registry in ALL.items():
        click.echo(f"{group} ({registry.group}):")
        for name, origin in sorted(registry.origins().items()):
            click.echo(f"  {name:16} {origin}")
