"""The invalid-recipe corpus: `aidsafe validate` on each recipe in tests/data/invalid/ exits 2
and prints exactly the stderr in its `NAME.expected` (file:line:col, error, hint, count).

Absolute paths are machine-specific, so before comparing, the corpus folder is written as
`$INVALID_DIR` and the shared templates folder as `$SHARED_TEMPLATES`. When a message changes on
purpose, regenerate the `.expected` files (see tests/data/invalid/README.md) and read the diff.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from engine.cli import toolbox
from engine.templates import SHARED_TEMPLATES

INVALID = Path(__file__).resolve().parents[1] / "data" / "invalid"
RECIPES = sorted(p.name for p in INVALID.glob("*.yaml"))


def _validate(monkeypatch: pytest.MonkeyPatch, folder: Path, name: str):
    monkeypatch.chdir(folder)
    # click >= 8.2 keeps stderr apart from stdout (and dropped `mix_stderr`)
    return CliRunner().invoke(toolbox, ["validate", name])


def _normalized(text: str) -> str:
    return (text.replace(str(INVALID.resolve()), "$INVALID_DIR")
            .replace(str(SHARED_TEMPLATES.resolve()), "$SHARED_TEMPLATES"))


def _assert_clean_recipe_error(result) -> None:
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert result.exit_code == 2, result.stderr


@pytest.mark.parametrize("name", RECIPES)
def test_invalid_recipe_is_reported(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    expected = (INVALID / name).with_suffix(".expected").read_text(encoding="utf-8")
    result = _validate(monkeypatch, INVALID, name)
    _assert_clean_recipe_error(result)
    assert result.stdout == ""
    assert _normalized(result.stderr) == expected


def test_corpus_is_complete() -> None:
    assert len(RECIPES) >= 15
    missing = [n for n in RECIPES if not (INVALID / n).with_suffix(".expected").is_file()]
    assert not missing, f"recipes without an .expected file: {missing}"
    orphans = sorted(p.name for p in INVALID.glob("*.expected")
                     if not p.with_suffix(".yaml").is_file())
    assert not orphans, f".expected files without a recipe: {orphans}"
