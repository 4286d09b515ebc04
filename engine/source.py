"""YAML with positions: every key and value of a recipe keeps its file:line:col."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import Loc, Problem, RecipeError

Path_ = tuple  # a path into the document: ("stages", 0, "prompt")


@dataclass
class Document:
    """Parsed YAML plus where each value and each mapping key came from."""

    file: str
    data: Any
    values: dict[Path_, Loc] = field(default_factory=dict)
    keys: dict[Path_, Loc] = field(default_factory=dict)

    def loc(self, path: Path_, key: bool = False) -> Loc:
        """The location of `path` (its key when `key`), or of its nearest located ancestor."""
        path = tuple(path)
        while path:
            found = (self.keys if key else self.values).get(path) or self.values.get(path)
            if found:
                return found
            path = path[:-1]
        return self.values.get((), Loc(self.file, 1, 1))


class RecipeLoader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans: only true/false are booleans, so `mode: off` or
    `answer: no` stay strings."""


RecipeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
RecipeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"))


def load_value(text: str) -> Any:
    """One YAML value with the recipe's rules (for `--set`)."""
    return yaml.load(text, Loader=RecipeLoader)


def _mark(file: str, mark: yaml.Mark | None) -> Loc:
    return Loc(file, mark.line + 1, mark.column + 1) if mark else Loc(file, 1, 1)


class _Builder:
    def __init__(self, file: str):
        self.doc = Document(file, None)
        self.constructor = yaml.constructor.SafeConstructor()
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.doc.values[path] = _mark(self.doc.file, node.start_mark)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(child, path + (i,)) for i, child in enumerate(node.value)]
        try:
            return self.constructor.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self.problems.append(Problem(_mark(self.doc.file, node.start_mark),
                                         f"cannot read value: {exc.problem}",
                                         "quote the value to make it a plain string"))
            return None

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict:
        self.constructor.flatten_mapping(node)  # YAML merge keys (<<)
        out: dict = {}
        for key_node, value_node in node.value:
            key = self.build(key_node, path + ("<key>",))
            if not isinstance(key, (str, int, float, bool)) or key is None:
                self.problems.append(Problem(_mark(self.doc.file, key_node.start_mark),
                                             "mapping keys must be plain scalars"))
                continue
            key_loc = _mark(self.doc.file, key_node.start_mark)
            if key in out:
                first = self.doc.keys[path + (key,)]
                self.problems.append(Problem(key_loc, f"duplicate key {key!r}",
                                             f"it is already set at line {first.line}; keep one"))
                continue
            self.doc.keys[path + (key,)] = key_loc
            out[key] = self.build(value_node, path + (key,))
        self.doc.values.pop(path + ("<key>",), None)
        return out


def parse_yaml(text: str, file: str) -> Document:
    """Parse one YAML document, keeping positions. Raises RecipeError on any syntax problem."""
    try:
        node = yaml.compose(text, Loader=RecipeLoader)
    except yaml.MarkedYAMLError as exc:
        what = exc.problem or exc.context or "invalid YAML"
        raise RecipeError([Problem(_mark(file, exc.problem_mark), f"YAML syntax: {what}",
                                   "check indentation, colons and quoting around this spot")]) from exc
    except yaml.YAMLError as exc:
        raise RecipeError([Problem(Loc(file, 1, 1), f"YAML syntax: {exc}")]) from exc
    builder = _Builder(file)
    builder.doc.data = builder.build(node, ()) if node is not None else None
    if builder.problems:
        raise RecipeError(builder.problems)
    return builder.doc


def load_yaml_file(path: Path, display: str | None = None) -> Document:
    """Read and parse a YAML file; `display` is the name used in messages."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise RecipeError([Problem(Loc(name), "file not found", "check the path")]) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Problem(Loc(name), f"cannot read file: {exc}")]) from exc
    return parse_yaml(text, name)
