"""House rules that code review alone would miss: import direction, registries, plugins."""

import ast
from pathlib import Path

import pytest

from engine.registry import ALL, Registry

ENGINE = Path(__file__).resolve().parents[2] / "engine"
# Each module may import only from modules listed before it (DESIGN.md section 2).
ORDER = ["errors", "jsonio", "spec", "registry", "source", "schema", "inputs", "templates", "loader",
         "llm", "context", "parsing", "calls", "stop_rules", "filters", "stages", "outputs",
         "runner", "report_plots", "report_page", "report", "api",
         "cli"]
THIRD_PARTY_HOMES = {"aiohttp": {"llm.transport", "testing.fake_server"}, "orjson": {"jsonio"},
                     "diskcache": {"llm.cache"}, "xllamacpp": {"llm.local_server"},
                     "matplotlib": {"report_plots"}}


def engine_modules():
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE).with_suffix("")
        parts = [p for p in rel.parts if p != "__init__"]
        yield ".".join(parts), path


def imports_of(path, module):
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            if node.module is None:  # `from . import api, __version__`
                yield from (".".join(base + [a.name]) for a in node.names
                            if not a.name.startswith("__"))
            else:
                yield target
        elif isinstance(node, ast.Import):
            yield from ("@" + a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield "@" + node.module.split(".")[0]


def rank(module):
    top = module.split(".")[0]
    return ORDER.index(top) if top in ORDER else None


@pytest.mark.parametrize("module,path", list(engine_modules()))
def test_imports_flow_one_way(module, path):
    if module.startswith("testing") or rank(module) is None:
        return
    for target in imports_of(path, module):
        if target.startswith("@"):
            lib = target[1:]
            homes = THIRD_PARTY_HOMES.get(lib)
            assert homes is None or module in homes, f"{module} imports {lib}"
            continue
        if not target or target.split(".")[0] == module.split(".")[0] or target == "":
            continue
        assert rank(target) is not None and rank(target) < rank(module), \
            f"{module} imports {target}"


def test_registry_collisions_are_loud():
    registry = Registry("aidsafe.test")
    registry.register("x", object())
    with pytest.raises(ValueError, match="registered twice"):
        registry.register("x", object())


def test_builtins_come_from_entry_points():
    assert {"generate"} <= set(ALL["stages"].names())
    assert {"openai", "local", "mock"} <= set(ALL["providers"].names())
    assert {"trace", "jsonl"} <= set(ALL["outputs"].names())
    assert set(ALL["stages"].origins().values()) == {"built-in"}


def test_modules_stay_small():
    for module, path in engine_modules():
        if module.startswith("testing"):
            continue
        assert len(path.read_text().splitlines()) <= 420, module


def test_usage_errors_exit_2_without_internal_error():
    from click.testing import CliRunner
    from engine.cli import toolbox
    result = CliRunner().invoke(toolbox, ["cache", "stats"])
    assert result.exit_code == 2 and "give a WORKFLOW or --cache-dir" in result.output
    assert "internal error" not in result.output
