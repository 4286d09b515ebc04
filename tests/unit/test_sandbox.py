"""The template escape corpus: every attempt to reach Python internals is refused."""

from pathlib import Path

import pytest

from engine.errors import ItemError, Loc
from engine.templates import TemplateRef, Templates

CORPUS = Path(__file__).resolve().parents[1] / "data" / "template_escapes.txt"
ESCAPES = [line for line in CORPUS.read_text().splitlines()
           if line.strip() and not line.startswith("#")]


def test_the_corpus_is_substantial():
    assert len(ESCAPES) >= 20


@pytest.mark.parametrize("text", ESCAPES)
def test_escape_is_refused_without_side_effects(tmp_path, monkeypatch, text):
    monkeypatch.chdir(tmp_path)
    templates = Templates(tmp_path)
    context = {"input": {"prompt": "x"}, "policies": [{"id": "p"}], "vars": {}}
    with pytest.raises(ItemError) as err:
        templates.render(TemplateRef(Loc("r.yaml", 1, 1), text=text), context)
    assert err.value.kind == "template"
    assert not (tmp_path / "MARKER").exists()
    assert context["input"] == {"prompt": "x"} and context["policies"] == [{"id": "p"}]
