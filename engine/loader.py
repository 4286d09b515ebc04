"""Load a recipe: parse, apply `--set`, validate against the schema, build the frozen spec,
resolve every reference and check every template. All problems are reported at once."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import Loc, Problem, RecipeError
from .inputs import InputError, read_rows
from .registry import OUTPUTS, PROVIDERS, STAGES
from .schema import suggest, validate
from .source import Document, load_value, load_yaml_file
from .spec import CacheSpec, InputSpec, JoinSpec, ModelSpec, OutputSpec, Policy, StageSpec, Workflow
from .templates import Scope, TemplateRef, Templates, display_path, file_hash

SHIPPED_DATA = (Path(__file__).resolve().parent.parent / "examples",)
INPUT_FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv"}


@dataclass
class BuildContext:
    """What a stage kind or output format sees while it builds its config from YAML."""

    doc: Document
    path: tuple
    templates: Templates
    models: dict[str, ModelSpec]
    scope: dict[str, frozenset[str] | None]
    later: frozenset[str]
    problems: list[Problem]
    files: dict[str, str]

    def at(self, *sub: Any) -> "BuildContext":
        """The same context for a part nested below this one (an agent, a step, a filter)."""
        return dataclasses.replace(self, path=self.path + sub)

    def loc(self, *sub: Any, key: bool = False) -> Loc:
        return self.doc.loc(self.path + sub, key=key)

    def error(self, message: str, hint: str = "", *sub: Any) -> None:
        self.problems.append(Problem(self.loc(*sub), message, hint))

    def model(self, name: str, *sub: Any) -> ModelSpec | None:
        """Resolve a model reference, recording a problem when it is unknown."""
        if name not in self.models:
            declared = self.doc.data.get("models", {})
            if name not in declared:  # a model with a schema problem is reported already
                self.error(f"unknown model {name!r}", suggest(name, declared), *sub)
            return None
        return self.models[name]

    def template(self, raw: dict, file_key: str, text_key: str, scope: Scope | None = None,
                 required: bool = True) -> TemplateRef | None:
        """The template given by `file_key` (a path) or `text_key` (inline), checked."""
        if file_key in raw and text_key in raw:
            self.error(f"give either {file_key!r} or {text_key!r}, not both", "", text_key)
            return None
        if file_key in raw:
            ref = TemplateRef(self.loc(file_key), name=raw[file_key])
        elif text_key in raw:
            ref = TemplateRef(self.loc(text_key), text=raw[text_key])
        else:
            if required:
                self.error(f"missing {file_key!r} (a template file) or {text_key!r} (inline)",
                           f"add `{file_key}: my_prompt.j2`")
            return None
        self.check(ref, scope)
        return ref

    def check(self, ref: TemplateRef, scope: Scope | None = None) -> None:
        problems = self.templates.check(ref, self.scope if scope is None else scope, self.later)
        self.problems.extend(  # a problem inside a template file also says who uses it
            p if p.loc.file == ref.loc.file else
            dataclasses.replace(p, hint=f"{p.hint} (used at {ref.loc})".strip())
            for p in problems)

    def check_text(self, text: str, *sub: Any, scope: Scope | None = None) -> None:
        self.problems.extend(self.templates.check_text(
            text, self.loc(*sub), self.scope if scope is None else scope))


def apply_overrides(doc: Document, overrides: list[str]) -> list[Problem]:
    """`--set a.b=value`: value is read as YAML; list items may be named by their `id`."""
    problems = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        loc = Loc(f"--set {key}")  # never the value: it may be a URL with credentials
        if not sep or not key:
            problems.append(Problem(loc, "expected --set PATH=VALUE", "e.g. --set input.limit=5"))
            continue
        try:
            value = load_value(raw) if raw else ""
            _set_path(doc, key.split("."), value, loc)
        except (yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as exc:
            problems.append(Problem(loc, f"cannot apply override: {exc}",
                                    "paths use dots; list items by index or id, "
                                    "e.g. stages.intents.model=judge"))
    return problems


def _set_path(doc: Document, parts: list[str], value: Any, loc: Loc) -> None:
    node, path = doc.data, ()
    for i, part in enumerate(parts):
        key: Any = part
        if isinstance(node, list):
            ids = [x.get("id") if isinstance(x, dict) else None for x in node]
            if part in ids:
                key = ids.index(part)
            elif part.isdigit():
                key = int(part)
            else:
                named = ", ".join(str(i) for i in ids if i is not None) or "none"
                raise KeyError(f"{'.'.join(parts[:i]) or 'list'} has no item {part!r} "
                               f"(ids: {named})")
        elif not isinstance(node, dict):
            raise TypeError(f"{'.'.join(parts[:i])} is not a mapping")
        if i == len(parts) - 1:
            node[key] = value
            doc.values[path + (key,)] = doc.keys[path + (key,)] = loc
            for p in [p for p in doc.values if p[:len(path) + 1] == path + (key,) and
                      len(p) > len(path) + 1]:
                doc.values[p] = loc
            return
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node, path = node[key], path + (key,)


def load_workflow(file: str | Path, overrides: tuple[str, ...] = (), *,
                  input_path: str | None = None, cache_dir: str | None = None,
                  offline: bool = False, allow_roots: tuple[str, ...] = ()) -> Workflow:
    """Everything from YAML to a checked, frozen Workflow; raises RecipeError with all problems."""
    path = Path(file)
    doc = load_yaml_file(path, str(file))
    if not isinstance(doc.data, dict):
        raise RecipeError([Problem(Loc(str(file), 1, 1), "a recipe is a YAML mapping",
                                   "start from workflows/intents.yaml")])
    problems = apply_overrides(doc, list(overrides))
    schema_problems = validate(doc)
    if problems or any(len(p.path) < 2 for p in schema_problems):
        raise RecipeError(problems + schema_problems)
    # Build what the schema accepted too, so every problem is reported in one go.
    broken = {_unit(p.path) for p in schema_problems}
    builder = _Builder(doc, path, input_path, cache_dir, offline, broken,
                       tuple(Path(r).resolve() for r in allow_roots))
    return builder.build(schema_problems)


RUN_ONLY_KEYS = {"concurrency", "requests_per_minute", "tokens_per_minute", "timeout", "retries",
                 "backoff"}


def fingerprint(data: dict[str, Any], files: dict[str, str]) -> str:
    """sha256 of what decides each item's record: the recipe after `--set` (without `input`,
    `cache`, `description` and the models' speed settings) and every template and policies
    file it reads. A run folder is only resumed by a recipe with the same fingerprint."""
    recipe = {k: v for k, v in data.items() if k not in ("input", "cache", "description")}
    recipe["models"] = {name: {k: v for k, v in model.items() if k not in RUN_ONLY_KEYS}
                        for name, model in data.get("models", {}).items()}
    blob = json.dumps({"recipe": recipe, "files": sorted(files.values())}, sort_keys=True,
                      default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _unit(path: tuple) -> tuple:
    """The part of a recipe a schema problem spoils: one model, stage or output, or a section."""
    return path[:2] if path[0] in ("models", "stages", "outputs") else path[:1]


class _Builder:
    def __init__(self, doc: Document, path: Path, input_path: str | None,
                 cache_dir: str | None, offline: bool, broken: set[tuple],
                 allow_roots: tuple[Path, ...]):
        self.doc, self.file, self.data, self.broken = doc, path, doc.data, broken
        self.dir = path.resolve().parent
        self.allow_roots = allow_roots
        self.roots = (self.dir, *allow_roots, *SHIPPED_DATA)
        self.problems: list[Problem] = []
        self.files: dict[str, str] = {str(path.resolve()): file_hash(path)}
        self.input_path, self.cache_dir, self.offline = input_path, cache_dir, offline
        self.templates = Templates(self.dir, allow_roots)

    def build(self, problems: list[Problem]) -> Workflow:
        self.problems.extend(problems)
        models = self._models()
        input_spec, input_keys = self._input()
        scope: dict[str, frozenset[str] | None] = {
            "input": input_keys, "vars": frozenset(self.data.get("vars", {})),
            "policies": None}
        policies = self._policies()
        stages = self._stages(models, scope)
        outputs = self._outputs(models, scope)
        cache = self._cache()
        if self.problems:
            raise RecipeError(self.problems)
        for path in sorted(self.templates.used):   # included templates count too
            self.files[str(path)] = file_hash(path)
        return Workflow(
            fingerprint=fingerprint(self.data, {k: v for k, v in self.files.items()
                                                if k != str(self.file.resolve())}),
            name=self.data["name"], file=self.file, loc=self.doc.loc(()),
            description=self.data.get("description", ""), vars=self.data.get("vars", {}),
            policies=policies, models=models, input=input_spec, stages=stages,
            outputs=outputs, cache=cache, files=self.files,
            template_dirs=self.allow_roots)

    def _error(self, path: tuple, message: str, hint: str = "") -> None:
        self.problems.append(Problem(self.doc.loc(path), message, hint))

    def _models(self) -> dict[str, ModelSpec]:
        models = {}
        for name, raw in self.data["models"].items():
            if ("models", name) in self.broken:
                continue
            provider = PROVIDERS.get(raw["provider"])
            known = {"provider", "model", "base_url", "api_key_env", "params", "concurrency",
                     "requests_per_minute", "tokens_per_minute", "timeout", "retries",
                     "backoff"}
            common = {k: v for k, v in raw.items() if k in known}
            spec = ModelSpec(name=name, loc=self.doc.loc(("models", name)),
                             **{"model": getattr(provider, "default_model", ""), **common},
                             options={k: v for k, v in raw.items() if k not in known})
            if not spec.model:
                self._error(("models", name), f"model {name!r} needs a `model:` name",
                            "e.g. model: gpt-4o-mini")
            check = getattr(provider, "check", None)
            for message, hint, *sub in (check(spec) if check else []):
                self._error(("models", name, *(sub[0] if sub else ())), message, hint)
            models[name] = spec
        return models

    def _policies(self) -> tuple[Policy, ...]:
        raw = self.data.get("policies")
        if raw is None or ("policies",) in self.broken:
            return ()
        if isinstance(raw, str):
            path = self._existing(raw, ("policies",), "policies file")
            if path is None:
                return ()
            doc = load_yaml_file(path, raw)
            raw = doc.data.get("policies") if isinstance(doc.data, dict) else doc.data
            self.files[str(path)] = file_hash(path)
            if not isinstance(raw, list) or not all(isinstance(p, dict) and "id" in p and
                                                    "text" in p for p in raw):
                self._error(("policies",), f"{path.name} must hold a list of {{id, title, text}}",
                            "see workflows/policies.yaml")
                return ()
        return tuple(Policy(str(p["id"]), str(p.get("title", p["id"])), str(p["text"]))
                     for p in raw)

    def _existing(self, rel: str, path: tuple, what: str) -> Path | None:
        target = self._confined(rel, path, what)
        if target is not None and not target.exists():
            self._error(path, f"{what} {rel!r} not found (looked in {display_path(self.dir)})",
                        "paths in a recipe are relative to the recipe's own folder")
            return None
        return target

    def _confined(self, rel: str, path: tuple, what: str) -> Path | None:
        """A recipe's path, resolved; None (and a problem) when it leaves the allowed folders:
        for reading, the recipe's folder, any --allow-root and the project's shipped examples;
        for writing (the cache), the recipe's folder only."""
        target = (self.dir / rel).resolve()
        roots = (self.dir,) if what == "cache dir" else self.roots
        if any(target.is_relative_to(root) for root in roots):
            return target
        hint = ("a recipe may only write inside its own folder: pick a folder there, or pass "
                "--cache-dir DIR" if what == "cache dir" else
                "recipes are shared files and may only read next to themselves: move it "
                "there, or allow its folder with --allow-root DIR")
        self._error(path, f"{what} {rel!r} is outside the recipe's folder", hint)
        return None

    def _input(self) -> tuple[InputSpec | None, frozenset[str] | None]:
        raw = dict(self.data.get("input") or {})
        if ("input",) in self.broken:
            return None, None
        if self.input_path:
            raw["path"] = self.input_path
            target = Path(self.input_path).resolve()
            if not target.exists():
                self.problems.append(Problem(Loc("--input"), f"input {self.input_path!r} "
                                             "not found", "check the path"))
                return None, None
        elif "path" in raw:
            target = self._existing(raw["path"], ("input", "path"), "input file")
            if target is None:
                return None, None
        else:
            return None, None
        fmt = raw.get("format") or INPUT_FORMATS.get(target.suffix.lower())
        if fmt is None:
            self._error(("input", "path"), f"cannot tell the format of {target.name}",
                        "use a .jsonl, .json or .csv file, or set input.format")
            return None, None
        spec = InputSpec(path=target, display=raw["path"], loc=self.doc.loc(("input",)),
                         format=fmt, id_field=raw.get("id_field"), limit=raw.get("limit"),
                         join=self._join(raw["join"]) if "join" in raw else None)
        keys = self._peek_fields(spec)
        return spec, keys | {spec.join.name} if keys is not None and spec.join else keys

    def _join(self, raw: dict[str, Any]) -> JoinSpec | None:
        target = self._existing(raw["path"], ("input", "join", "path"), "joined file")
        fmt = raw.get("format") or INPUT_FORMATS.get(Path(raw["path"]).suffix.lower(), "jsonl")
        return JoinSpec(target, raw["path"], raw["on"], raw.get("as", "joined"), fmt) \
            if target else None

    def _peek_fields(self, spec: InputSpec) -> frozenset[str] | None:
        """Field names of the first row, so templates can be checked against them."""
        try:
            first = next(iter(read_rows(dataclasses.replace(spec, id_field=None, join=None))),
                         None)
        except (InputError, OSError, UnicodeDecodeError) as exc:
            first = InputError(str(exc))
        if isinstance(first, InputError):
            self._error(("input", "path"), f"cannot read input: {first}",
                        "each row must be a JSON object (jsonl/json) or a CSV line with a header")
            return None
        if first is None:
            return None
        if spec.id_field and spec.id_field not in first.row:
            self._error(("input", "id_field"), f"input rows have no field {spec.id_field!r}",
                        suggest(spec.id_field, first.row))
        return frozenset(first.row)

    def _stages(self, models: dict, scope: dict) -> tuple[StageSpec, ...]:
        ids = [s.get("id") if isinstance(s, dict) and isinstance(s.get("id"), str) else None
               for s in self.data["stages"]]
        stages = []
        for index, raw in enumerate(self.data["stages"]):
            path, sid = ("stages", index), ids[index]
            if path in self.broken:
                if sid:
                    scope[sid] = None
                continue
            if sid in ("input", "vars", "policies"):
                self._error(path + ("id",), f"stage id {sid!r} is a name templates already "
                            "use", "pick another id")
                continue
            if sid in ids[:index]:
                self._error(path + ("id",), f"stage id {sid!r} is used twice",
                            f"the first is stages[{ids.index(sid)}]; give every stage its own id")
                continue
            kind = STAGES.get(raw["kind"])
            later = frozenset(i for i in ids[index + 1:] if i)
            ctx = self._context(path, models, scope, later)
            config = kind.build(raw, ctx)
            if "when" in raw:
                self._check_when(raw["when"], ctx)
            stages.append(StageSpec(id=raw["id"], kind=raw["kind"], loc=self.doc.loc(path),
                                    config=config, when=raw.get("when")))
            scope[raw["id"]] = kind.shape(config) if config is not None else None
        return tuple(stages)

    @staticmethod
    def _check_when(text: str, ctx: BuildContext) -> None:
        if "{{" not in text:
            ctx.error("`when` must be a Jinja expression", "write it as "
                      "\"{{ input.category == 'harmful' }}\"", "when")
            return
        ctx.problems.extend(ctx.templates.check_text(text, ctx.loc("when"), ctx.scope,
                                                     ctx.later))

    def _outputs(self, models: dict, scope: dict) -> tuple[OutputSpec, ...]:
        declared = [(i, raw) for i, raw in enumerate(self.data.get("outputs", []))
                    if ("outputs", i) not in self.broken]
        traces = [i for i, raw in declared if raw["format"] == "trace"]
        if not traces:
            declared.insert(0, (None, {"format": "trace"}))
        outputs, paths = [], set()
        for index, raw in declared:
            fmt = OUTPUTS.get(raw["format"])
            ctx = self._context(("outputs", index), models, scope, frozenset())
            path = raw.get("path") or fmt.default_path
            if raw["format"] == "trace" and traces and index != traces[0]:
                ctx.error("only one trace output is allowed", "remove this one")
            self._check_output_path(path, paths, ctx)
            paths.add(path)
            if "when" in raw:
                if raw["format"] == "trace":
                    ctx.error("the trace holds every item; it takes no `when`", "", "when")
                self._check_when(raw["when"], ctx)
            outputs.append(OutputSpec(format=raw["format"], loc=ctx.loc(), path=path,
                                      config=fmt.build(raw, ctx), when=raw.get("when")))
        return tuple(outputs)

    @staticmethod
    def _check_output_path(path: str, taken: set[str], ctx: BuildContext) -> None:
        parts = Path(path).parts
        if Path(path).is_absolute() or ".." in parts or not parts or parts[-1] == ".":
            ctx.error(f"output path {path!r} leaves the run folder",
                      "output paths are relative to the run folder, without '..'", "path")
        elif path in ("manifest.json", "failures.jsonl"):
            ctx.error(f"output path {path!r} is reserved for the run's own files",
                      "pick another file name", "path")
        elif path in taken:
            ctx.error(f"output path {path!r} is used twice", "give each output its own path",
                      "path")

    def _context(self, path: tuple, models: dict, scope: dict, later: frozenset) -> BuildContext:
        return BuildContext(self.doc, path, self.templates, models, scope, later,
                            self.problems, self.files)

    def _cache(self) -> CacheSpec:
        raw = {} if ("cache",) in self.broken else self.data.get("cache", {})
        folder = (Path(self.cache_dir).resolve() if self.cache_dir
                  else self._confined(raw.get("dir", ".aidsafe-cache"), ("cache", "dir"),
                                      "cache dir") or self.dir / ".aidsafe-cache")
        mode = "read_only" if self.offline else raw.get("mode", "read_write")
        return CacheSpec(dir=folder, mode=mode)
