"""Sandboxed, strict, confined templates (no sockets)."""

import os

import pytest

from engine.errors import ItemError, Loc
from engine.templates import TemplateRef, Templates

LOC = Loc("r.yaml", 3, 5)


def inline(text):
    return TemplateRef(LOC, text=text)


def test_undefined_names_are_found_before_any_call(tmp_path):
    t = Templates(tmp_path)
    problems = t.check(inline("{{ input.prompt }} {{ intnets.x }}"),
                       {"input": None, "intents": None})
    assert len(problems) == 1
    assert "undefined name 'intnets'" in problems[0].message
    assert problems[0].hint == "did you mean 'intents'?"


def test_a_later_stage_is_named_as_such(tmp_path):
    problems = Templates(tmp_path).check(inline("{{ refine }}"), {"input": None},
                                         later=frozenset({"refine"}))
    assert "runs later" in problems[0].hint


def test_fields_are_checked_against_known_keys(tmp_path):
    t = Templates(tmp_path)
    scope = {"input": frozenset({"id", "prompt"})}
    problems = t.check(inline("{{ input.promt }} {{ input['id'] }} {{ input.get('x') }}"), scope)
    assert [p.message for p in problems] == [
        "inline template uses input.promt, but input has no field 'promt'"]
    assert problems[0].hint == "did you mean 'prompt'?"


def test_loop_variables_and_globals_are_not_undefined(tmp_path):
    text = "{% for p in policies %}{{ loop.index }}. {{ p.title }}{% endfor %}{{ range(3)|list }}"
    assert Templates(tmp_path).check(inline(text), {"policies": None}) == []


@pytest.mark.parametrize("escape", [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ input.__class__.__init__.__globals__ }}",
    "{{ cycler.__init__.__globals__.os.system('id') }}",
    "{{ ().__class__.__base__.__subclasses__() }}",
])
def test_sandbox_refuses_python_internals(tmp_path, escape):
    t = Templates(tmp_path)
    with pytest.raises(ItemError) as err:
        t.render(inline(escape), {"input": {"prompt": "x"}})
    assert "unsafe" in str(err.value) or "undefined" in str(err.value)


def test_lists_are_immutable_in_templates(tmp_path):
    with pytest.raises(ItemError):
        Templates(tmp_path).render(inline("{{ xs.append(1) }}"), {"xs": []})


def test_strict_undefined_at_render(tmp_path):
    with pytest.raises(ItemError) as err:
        Templates(tmp_path).render(inline("{{ input.missing }}"), {"input": {}})
    assert "missing" in str(err.value)


def test_templates_resolve_in_recipe_folder_then_shared(tmp_path):
    (tmp_path / "mine.j2").write_text("mine {{ x }}")
    t = Templates(tmp_path)
    assert t.render(TemplateRef(LOC, name="mine.j2"), {"x": 1}) == "mine 1"
    assert t.path_of("intents.j2").parent.name == "templates"   # the shared folder


def test_paths_cannot_leave_the_template_folders(tmp_path):
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir()
    (tmp_path / "secret.txt").write_text("secret")
    os.symlink(tmp_path / "secret.txt", recipe_dir / "link.j2")
    t = Templates(recipe_dir)
    for name in ("../secret.txt", "link.j2", "/etc/passwd"):
        problems = t.check(TemplateRef(LOC, name=name), {})
        assert problems and "not found" in problems[0].message, name


def test_syntax_errors_point_into_the_template_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.j2").write_text("line one\n{% if x %}\nno end\n")
    problems = Templates(tmp_path).check(TemplateRef(LOC, name="bad.j2"), {"x": None})
    assert str(problems[0].loc).startswith("bad.j2:")
    assert "template syntax" in problems[0].message


def test_whole_expression_keeps_native_type(tmp_path):
    t = Templates(tmp_path)
    assert t.evaluate("{{ xs }}", {"xs": [1, 2]}, "f") == [1, 2]
    assert t.evaluate("n={{ xs|length }}", {"xs": [1, 2]}, "f") == "n=2"


def test_allow_root_lets_a_recipe_read_outside_its_folder(tmp_path):
    from engine.errors import RecipeError
    from engine.loader import load_workflow
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "rows.jsonl").write_text('{"id": 1, "prompt": "hi"}\n')
    (shared / "p.j2").write_text("{{ input.prompt }}")
    recipe_dir = tmp_path / "recipe"
    recipe_dir.mkdir()
    recipe = recipe_dir / "r.yaml"
    recipe.write_text("version: 1\nname: x\nmodels: {m: {provider: mock}}\n"
                      "input: {path: ../shared/rows.jsonl}\n"
                      "stages: [{id: a, kind: generate, model: m, prompt: p.j2}]\n")
    with pytest.raises(RecipeError) as err:
        load_workflow(recipe)
    assert [p.message for p in err.value.problems] == [
        "input file '../shared/rows.jsonl' is outside the recipe's folder",
        "template 'p.j2' not found"]
    assert load_workflow(recipe, allow_roots=(str(shared),)).input.path == shared / "rows.jsonl"


def test_a_cache_dir_may_not_go_to_an_allowed_root(tmp_path):
    from engine.errors import RecipeError
    from engine.loader import load_workflow
    shared = tmp_path / "shared"
    shared.mkdir()
    recipe = tmp_path / "recipe" / "r.yaml"
    recipe.parent.mkdir()
    recipe.write_text("version: 1\nname: x\nmodels: {m: {provider: mock}}\n"
                      "stages: [{id: a, kind: generate, model: m, prompt_text: hi}]\n"
                      "cache: {dir: ../shared/cache}\n")
    with pytest.raises(RecipeError) as err:
        load_workflow(recipe, allow_roots=(str(shared),))
    assert "cache dir '../shared/cache' is outside the recipe's folder" in str(err.value)
