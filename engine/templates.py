"""Jinja prompt templates: sandboxed, strict about undefined names, confined to known folders.

Every template a recipe uses is compiled and checked against the names that will exist at its
stage before the first call (`check`). Rendering (`render`, `evaluate`) reuses the compiled form.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import jinja2
from jinja2 import meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from .errors import ItemError, Loc, Problem

SHARED_TEMPLATES = Path(__file__).resolve().parent.parent / "templates"
_WHOLE_EXPR = re.compile(r"^\s*\{\{((?:(?!\{\{|\}\}).)*)\}\}\s*$", re.S)
_DICT_METHODS = frozenset(dir(dict))
Scope = Mapping[str, "frozenset[str] | None"]  # name -> known keys (None: any)


class _ConfinedLoader(jinja2.FileSystemLoader):
    """FileSystemLoader that also refuses symlinks leading out of its folders."""

    def get_source(self, environment, template):
        source, filename, uptodate = super().get_source(environment, template)
        real = Path(filename).resolve()
        if not any(real.is_relative_to(Path(d).resolve()) for d in self.searchpath):
            raise jinja2.TemplateNotFound(template)
        return source, filename, uptodate


@dataclass(frozen=True)
class TemplateRef:
    """A template used by a recipe: a file name (`prompt:`) or inline text (`prompt_text:`)."""

    loc: Loc
    name: str | None = None
    text: str | None = None

    @property
    def label(self) -> str:
        return f"template {self.name!r}" if self.name else "inline template"


class Templates:
    """The template environment of one recipe."""

    def __init__(self, recipe_dir: Path, extra_dirs: tuple[Path, ...] = ()):
        self.dirs = [recipe_dir.resolve(), *(d.resolve() for d in extra_dirs), SHARED_TEMPLATES]
        self.env = ImmutableSandboxedEnvironment(
            loader=_ConfinedLoader([str(d) for d in self.dirs]),
            undefined=jinja2.StrictUndefined, keep_trailing_newline=False,
            trim_blocks=True, lstrip_blocks=True, autoescape=False)
        self.env.filters["tojson"] = _tojson
        self._compiled: dict[TemplateRef, jinja2.Template] = {}
        self.used: set[Path] = set()     # every template file checked, includes too
        self._exprs: dict[str, Callable[..., Any]] = {}

    def path_of(self, name: str) -> Path | None:
        """The file a template name resolves to (the recipe's folder first, then templates/)."""
        try:
            _, filename, _ = self.env.loader.get_source(self.env, name)
        except jinja2.TemplateNotFound:
            return None
        return Path(filename)

    def compile(self, ref: TemplateRef) -> jinja2.Template:
        tpl = self._compiled.get(ref)
        if tpl is None:
            tpl = (self.env.get_template(ref.name) if ref.name
                   else self.env.from_string(ref.text or ""))
            self._compiled[ref] = tpl
        return tpl

    def render(self, ref: TemplateRef, context: Mapping[str, Any]) -> str:
        try:
            return self.compile(ref).render(context)
        except Exception as exc:  # noqa: BLE001 - any error in a template fails only its item
            raise ItemError(f"{ref.label}: {exc.__class__.__name__}: {exc}",
                            kind="template") from exc

    def evaluate(self, text: str, context: Mapping[str, Any], where: str) -> Any:
        """`{{ expr }}` alone gives the native value (a list stays a list); otherwise a string."""
        fn = self._exprs.get(text)
        if fn is None:
            whole = _WHOLE_EXPR.match(text)
            fn = (self.env.compile_expression(whole.group(1), undefined_to_none=False) if whole
                  else self.env.from_string(text).render)
            self._exprs[text] = fn
        try:
            value = fn(**context)
            if isinstance(value, jinja2.Undefined):
                value._fail_with_undefined_error()
        except Exception as exc:  # noqa: BLE001 - any error in a template fails only its item
            raise ItemError(f"{where}: {exc.__class__.__name__}: {exc}", kind="template") from exc
        return value

    def check(self, ref: TemplateRef, scope: Scope, later: frozenset[str] = frozenset()
              ) -> list[Problem]:
        """Compile a template and check every name it uses against `scope`."""
        try:
            if ref.name:
                source, filename, _ = self.env.loader.get_source(self.env, ref.name)
                self.used.add(Path(filename))
            else:
                source = ref.text or ""
            ast = self.env.parse(source, name=ref.name)
            undeclared = meta.find_undeclared_variables(ast)  # compiles: unknown filters show
        except jinja2.TemplateNotFound:
            return [Problem(ref.loc, f"{ref.label} not found",
                            "templates resolve against the recipe's folder, then the "
                            "project's templates/ folder; paths may not leave those folders")]
        except jinja2.TemplateSyntaxError as exc:
            return [Problem(self._where(ref, exc.lineno), f"template syntax: {exc.message}",
                            "check the Jinja tags around this line")]
        except UnicodeDecodeError as exc:
            return [Problem(ref.loc, f"{ref.label} is not UTF-8 text: {exc.reason} at byte "
                            f"{exc.start}", "save the template as UTF-8")]
        problems = self._check_names(ref, ast, undeclared, scope, later)
        problems += self._check_filters(ref, ast)
        # an included template also sees what this one `set` before including it
        assigned = {n.name: None for n in ast.find_all(nodes.Name) if n.ctx == "store"}
        for included in meta.find_referenced_templates(ast):
            if included is not None:
                problems += self.check(TemplateRef(ref.loc, name=included),
                                       {**scope, **assigned}, later)
        return problems

    def check_text(self, text: str, loc: Loc, scope: Scope,
                   later: frozenset[str] = frozenset()) -> list[Problem]:
        """Check an inline template string (a `when:` or an output field)."""
        whole = _WHOLE_EXPR.match(text)
        body = "{{ " + whole.group(1) + " }}" if whole else text
        return self.check(TemplateRef(loc, text=body), scope, later)

    def _where(self, ref: TemplateRef, line: int | None) -> Loc:
        if ref.name:
            path = self.path_of(ref.name)
            return Loc(display_path(path) if path else ref.name, line or 1, 1)
        return Loc(ref.loc.file, ref.loc.line + max((line or 1) - 1, 0), ref.loc.col)

    def _check_filters(self, ref: TemplateRef, ast: nodes.Template) -> list[Problem]:
        """Filters and tests inside `{% if %}` are only looked up at render time; check now."""
        problems = []
        for node in ast.find_all((nodes.Filter, nodes.Test)):
            table = self.env.filters if isinstance(node, nodes.Filter) else self.env.tests
            if node.name not in table:
                what = "filter" if isinstance(node, nodes.Filter) else "test"
                problems.append(Problem(self._where(ref, node.lineno),
                                        f"{ref.label} uses unknown {what} {node.name!r}",
                                        _did_you_mean(node.name, table)))
        return problems

    def _check_names(self, ref: TemplateRef, ast: nodes.Template, undeclared: set[str],
                     scope: Scope, later: frozenset[str]) -> list[Problem]:
        problems = []
        known = set(scope) | set(self.env.globals)
        for name in sorted(undeclared - known):
            hint = (f"{name!r} is a stage that runs later; a template sees only earlier stages"
                    if name in later else _did_you_mean(name, known))
            problems.append(Problem(self._where(ref, _first_line(ast, name)),
                                    f"{ref.label} uses undefined name {name!r}", hint))
        for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
            problem = self._check_attr(ref, node, scope)
            if problem:
                problems.append(problem)
        return problems

    def _check_attr(self, ref: TemplateRef, node: nodes.Node, scope: Scope) -> Problem | None:
        if not isinstance(node.node, nodes.Name) or node.node.ctx != "load":
            return None
        attr = node.attr if isinstance(node, nodes.Getattr) else getattr(node.arg, "value", None)
        keys = scope.get(node.node.name)
        if not isinstance(attr, str) or keys is None or attr in keys or attr in _DICT_METHODS:
            return None
        return Problem(self._where(ref, node.lineno),
                       f"{ref.label} uses {node.node.name}.{attr}, but "
                       f"{node.node.name} has no field {attr!r}",
                       _did_you_mean(attr, keys, "known fields"))


def _first_line(ast: nodes.Template, name: str) -> int:
    for node in ast.find_all(nodes.Name):
        if node.name == name:
            return node.lineno
    return 1


def _did_you_mean(word: str, choices, label: str = "names available here") -> str:
    close = difflib.get_close_matches(word, sorted(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]!r}?"
    return f"{label}: " + ", ".join(sorted(c for c in choices if c not in _JINJA_GLOBALS))


_JINJA_GLOBALS = frozenset(ImmutableSandboxedEnvironment().globals)


def _tojson(value: Any, indent: int | None = None) -> str:
    """`tojson` without HTML escaping (prompts are not HTML)."""
    return json.dumps(value, ensure_ascii=False, indent=indent)


def truthy(value: Any) -> bool:
    """A condition's verdict: a rendered string such as "False" or "0" counts as false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "none")
    return bool(value)


def display_path(path: Path) -> str:
    """A path as messages show it: relative to the working folder when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def file_hash(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
