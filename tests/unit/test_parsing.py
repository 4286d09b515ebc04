"""Reply parsing modes and schema checks."""

import pytest

from engine.parsing import ParseError, check_schema, parse_reply


@pytest.mark.parametrize("text,mode,expected", [
    ("  hello \n", "text", "hello"),
    ('{"a": [1, 2]}', "json", {"a": [1, 2]}),
    ('Sure! ```json\n{"a": 1}\n``` hope it helps', "json", {"a": 1}),
    ('noise before {"a": {"b": 2}} and after', "json", {"a": {"b": 2}}),
    ("- one\n* two\n3. three\n\n", "lines", ["one", "two", "three"]),
    ("score: 4/5", {"regex": r"score: (\d)"}, "4"),
    ("score: 4/5", {"regex": r"score: (?P<score>\d)/(?P<of>\d)"}, {"score": "4", "of": "5"}),
    ("<answer> yes </answer>", {"tag": "answer"}, "yes"),
    ("<answer>cut by length", {"tag": "answer"}, "cut by length"),
])
def test_parse_modes(text, mode, expected):
    assert parse_reply(text, mode) == expected


@pytest.mark.parametrize("text,mode", [
    ('{"a": ', "json"), ("no digits", {"regex": r"(\d)"}), ("plain", {"tag": "x"})])
def test_parse_failures(text, mode):
    with pytest.raises(ParseError):
        parse_reply(text, mode)


def test_schema_check_names_the_field():
    schema = {"type": "object", "required": ["a"], "properties": {"a": {"type": "integer"}}}
    check_schema({"a": 1}, schema)
    with pytest.raises(ParseError) as err:
        check_schema({"a": "x"}, schema)
    assert str(err.value).startswith("a: ")
