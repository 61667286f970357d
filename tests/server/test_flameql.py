from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyro_core.server.flameql import Matcher, Query, QueryError, compile_regex, parse


@pytest.mark.parametrize(
    ("text", "app", "matchers"),
    [
        ("app.cpu", "app.cpu", []),
        ("  app.cpu  ", "app.cpu", []),
        ("app.cpu{}", "app.cpu", []),
        ("my-app_1.alloc_objects{ }", "my-app_1.alloc_objects", []),
        ('app.cpu{env="prod"}', "app.cpu", [("env", "=", "prod")]),
        ('app.cpu{env="prod",region=~"us.*"}', "app.cpu", [("env", "=", "prod"), ("region", "=~", "us.*")]),
        (
            'app.cpu { env != "prod" , region !~ "eu.*" , }',
            "app.cpu",
            [("env", "!=", "prod"), ("region", "!~", "eu.*")],
        ),
        ("app{k='v'}", "app", [("k", "=", "v")]),
        ("app{k=`a\\d+`}", "app", [("k", "=", "a\\d+")]),
        (
            'app{k="a\\"b\\\\c\\n\\t\\x41\\u00e9\\U0001F600\\101"}',
            "app",
            [("k", "=", 'a"b\\c\n\tAé\U0001f600A')],
        ),
        (
            'app{otel.scope.name="x",a="1",a!="2"}',
            "app",
            [("otel.scope.name", "=", "x"), ("a", "=", "1"), ("a", "!=", "2")],
        ),
        ('app{k=""}', "app", [("k", "=", "")]),
        ('app{k="é ü"}', "app", [("k", "=", "é ü")]),
    ],
)
def test_valid(text: str, app: str, matchers: list[tuple[str, str, str]]) -> None:
    q = parse(text)
    assert q.app_name == app
    assert [(m.key, m.op, m.value) for m in q.matchers] == matchers
    assert parse(str(q)) == q  # normalized form re-parses to the same query


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "application name is required"),
        ("   ", "application name is required"),
        ('{env="prod"}', "application name is required"),
        ("app cpu", "unexpected"),
        ("app/cpu", "unexpected"),
        ("ap$p", "unexpected"),
        ("app{", "missing closing"),
        ('app{env="prod"', "missing closing"),
        ('app{env="prod" region="x"}', "expected ','"),
        ('app{env="prod"}x', "unexpected"),
        ('app{env="prod"}}', "unexpected"),
        ("app{env=prod}", "quoted value"),
        ("app{env}", "operator"),
        ('app{env=="x"}', "quoted value"),
        ('app{env<>"x"}', "operator"),
        ('app{="x"}', "tag name"),
        ("app{,}", "tag name"),
        ('app{e-nv="x"}', "operator"),
        ('app{__name__="x"}', "reserved"),
        ('app{env="prod}', "unterminated"),
        ("app{env='prod}", "unterminated"),
        ("app{env=`prod}", "unterminated"),
        ('app{env="a\\qb"}', "invalid escape"),
        ('app{env="\\x4"}', "invalid escape"),
        ('app{env="\\uD800"}', "invalid code point"),
        ('app{env="\\400"}', "octal"),
        ("app{env='\\\"'}", "invalid escape"),
        ('app{env="a\nb"}', "unterminated"),
        ('app{env=~"(a"}', "regex"),
        ('app{env=~"(a)\\\\1"}', "backreferences"),
        ('app{env=~"(?P<x>a)(?P=x)"}', "backreferences"),
        ('app{env=~"(?=a)a"}', "lookarounds"),
        ('app{env!~"(?!a)b"}', "lookarounds"),
        ('app{env=~"(?<=a)b"}', "lookarounds"),
        ('app{env=~"(?<!a)b"}', "lookarounds"),
        ('app{env=~"(?>a)"}', "atomic"),
        ('app{env=~"(a)?(?(1)b)"}', "conditionals"),
        ('app{env=~"a++"}', "possessive"),
        ('app{env=~"a{2}+"}', "possessive"),
        ('app{env=~"a**"}', "nested repetition"),
        ('app{env=~"(?x)a b"}', "flag"),
        ('app{env=~"a\\\\Z"}', "not supported"),
        ('app{env=~"\\\\pL"}', "not supported"),
        ('app{env=~"[a"}', "closing ]"),
        ('app{env=~"a{1001}"}', "1000"),
        ('app{env=~"[[:nope:]]"}', "POSIX"),
    ],
)
def test_invalid(text: str, message: str) -> None:
    with pytest.raises(QueryError) as ei:
        parse(text)
    assert message in str(ei.value)
    assert isinstance(ei.value, ValueError)
    assert len(str(ei.value)) < 120


def test_not_a_string() -> None:
    with pytest.raises(QueryError):
        parse(b"app")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("query", "tags", "expected"),
    [
        ("app", {}, True),
        ("app", {"env": "x"}, True),
        ('app{env="prod"}', {"env": "prod"}, True),
        ('app{env="prod"}', {"env": "production"}, False),
        ('app{env="prod"}', {}, False),
        ('app{env=""}', {}, True),  # a missing tag is the empty string
        ('app{env=""}', {"env": "x"}, False),
        ('app{env!="prod"}', {"env": "dev"}, True),
        ('app{env!="prod"}', {"env": "prod"}, False),
        ('app{env!="prod"}', {}, True),
        ('app{env!=""}', {}, False),
        ('app{region=~"us.*"}', {"region": "us-east"}, True),
        ('app{region=~"us.*"}', {"region": "eu-us"}, False),  # anchored at the start
        ('app{region=~"us"}', {"region": "us-east"}, False),  # ... and at the end
        ('app{region=~"us|eu"}', {"region": "eu"}, True),  # alternation inside the anchors
        ('app{region=~"us|eu"}', {"region": "useu"}, False),
        ('app{region=~"us.*"}', {}, False),
        ('app{region=~".*"}', {}, True),
        ('app{region=~""}', {}, True),
        ('app{region=~".+"}', {}, False),
        ('app{region!~"us.*"}', {"region": "eu-west"}, True),
        ('app{region!~"us.*"}', {"region": "us-west"}, False),
        ('app{region!~"us.*"}', {}, True),
        ('app{region!~".*"}', {}, False),
        ('app{region=~"(?i)US-.*"}', {"region": "us-east"}, True),
        ('app{v=~"a$"}', {"v": "a\n"}, False),  # RE2: $ is the end of the text
        ('app{v=~"\\\\d+"}', {"v": "٣"}, False),  # RE2: \d is ASCII
        ('app{v=~"\\\\d+"}', {"v": "123"}, True),
        ('app{v=~"[[:alpha:]]+\\\\z"}', {"v": "abc"}, True),
        ('app{v=~"(?<x>a)b"}', {"v": "ab"}, True),
        ('app{v=~"[]a]+"}', {"v": "]a"}, True),
        ('app{v=~"a{2,3}"}', {"v": "aaa"}, True),
        ('app{v=~"a{,2}"}', {"v": "a{,2}"}, True),  # not a repetition in RE2: literal
        ('app{v=~"a.c"}', {"v": "a\nc"}, False),
        ('app{v=~"(?s)a.c"}', {"v": "a\nc"}, True),
        ('app{env="prod",region=~"us.*"}', {"env": "prod", "region": "us-1"}, True),
        ('app{env="prod",region=~"us.*"}', {"env": "dev", "region": "us-1"}, False),
        ('app{a="1",a!="2"}', {"a": "1"}, True),
    ],
)
def test_matches(query: str, tags: dict[str, str], expected: bool) -> None:
    assert parse(query).matches(tags) is expected


def test_matcher_api() -> None:
    m = Matcher.make("env", "=~", "p.*")
    assert m.matches({"env": "prod"}) and not m.matches({"env": "dev"})
    assert str(m) == 'env=~"p.*"'
    with pytest.raises(QueryError):
        Matcher.make("env", "~", "x")
    assert Query("app").matches({})
    assert str(parse('app{k="a\\"b\\n"}')) == 'app{k="a\\"b\\n"}'
    assert compile_regex("x+").fullmatch("xxx")


@given(st.text(max_size=30))
def test_parse_never_crashes(text: str) -> None:
    with contextlib.suppress(QueryError):
        parse(text)


@given(st.text(max_size=20))
def test_regex_translation_never_crashes(pattern: str) -> None:
    with contextlib.suppress(QueryError):
        compile_regex(pattern)


@given(st.text(max_size=20))
def test_quoted_value_round_trip(value: str) -> None:
    q = Query("app", (Matcher.make("k", "=", value),))
    assert parse(str(q)).matchers[0].value == value
