"""FlameQL: Pyroscope's query language, ``app.cpu{env="prod",region=~"us.*"}`` (sans-I/O).

Grammar (whitespace allowed around every token)::

    query    := app_name [ "{" [ matcher { "," matcher } [ "," ] ] "}" ]
    app_name := [A-Za-z0-9_.-]+
    matcher  := key op value          key := [A-Za-z0-9_.]+   (``__name__`` is reserved)
    op       := "=" | "!=" | "=~" | "!~"
    value    := "..." | '...' (Go escapes: \\a \\b \\f \\n \\r \\t \\v \\\\ \\' \\" \\xHH \\ooo \\uHHHH
                \\UHHHHHHHH) | `raw`

Regular expressions are fully anchored (``=~"us.*"`` matches ``us-east`` but not ``eu-us``) and follow
Go RE2 as far as Python's ``re`` can: constructs RE2 rejects (backreferences, lookarounds, atomic
groups, possessive quantifiers, conditionals, ``\\Z``, Python-only flags) are rejected here too; ``\\d``,
``\\w``, ``\\s`` and ``\\b`` are ASCII as in RE2; ``$`` means end of text unless ``(?m)`` is set; ``\\z``,
``(?<name>…)`` and POSIX classes ``[[:alpha:]]`` are translated. A tag missing from the series counts
as the empty string (Prometheus and Pyroscope do the same), so ``env!="prod"`` matches a series
without ``env`` and ``env=~".*"`` matches every series.

Any error raises :class:`QueryError` (a ``ValueError``, i.e. HTTP 400) with a short message.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = ["OPERATORS", "Matcher", "Query", "QueryError", "compile_regex", "parse"]

OPERATORS = ("=", "!=", "=~", "!~")

_APP_RE = re.compile(r"[A-Za-z0-9_.\-]+")
_KEY_RE = re.compile(r"[A-Za-z0-9_.]+")
_WS = " \t\r\n"


class QueryError(ValueError):
    """A FlameQL query that does not parse or whose regular expression is invalid."""


# --- regular expressions ------------------------------------------------------------------------

_POSIX = {
    "alnum": "0-9A-Za-z",
    "alpha": "A-Za-z",
    "ascii": "\\x00-\\x7f",
    "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": "\\t\\n\\v\\f\\r ",
    "upper": "A-Z",
    "word": "0-9A-Za-z_",
    "xdigit": "0-9A-Fa-f",
}
_FLAGS_RE = re.compile(r"\(\?([A-Za-z]*)(?:-([A-Za-z]*))?([:)])")
_GROUP_NAME_RE = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")
_REPEAT_RE = re.compile(r"\{(\d+)(,(\d*))?\}")


def _translate(pattern: str) -> str:
    """Check ``pattern`` against RE2's syntax and rewrite it for Python's ``re``."""
    out: list[str] = []
    multiline = re.search(r"\(\?[a-zA-Z]*m[a-zA-Z]*[:)]", pattern) is not None
    i, n = 0, len(pattern)
    in_class = False
    class_start = 0
    prev_quant = 0  # 1 after a quantifier, 2 after a lazy one
    while i < n:
        c = pattern[i]
        quant = 0
        if c == "\\":
            if i + 1 >= n:
                raise QueryError("regex: trailing backslash")
            d = pattern[i + 1]
            if not in_class and d in "123456789":
                raise QueryError("regex: backreferences are not supported (RE2)")
            if d in "gZN":
                raise QueryError(f"regex: \\{d} is not supported (RE2)")
            if d == "z":
                out.append("\\Z")
            elif d in "pP":
                raise QueryError("regex: Unicode classes \\p are not supported")
            else:
                out.append(pattern[i : i + 2])
            i += 2
        elif in_class:
            if c == "[" and pattern.startswith("[:", i):
                end = pattern.find(":]", i + 2)
                if end < 0:
                    raise QueryError("regex: unterminated POSIX class")
                name = pattern[i + 2 : end]
                neg = name.startswith("^")
                cls = _POSIX.get(name[1:] if neg else name)
                if cls is None:
                    raise QueryError(f"regex: unknown POSIX class [:{name}:]")
                if neg:
                    raise QueryError("regex: negated POSIX classes are not supported")
                out.append(cls)
                i = end + 2
            elif c == "]" and i > class_start:
                in_class = False
                out.append(c)
                i += 1
            else:
                if c in "[&~|":
                    out.append("\\" + c)  # literal in RE2; Python warns about future set syntax
                else:
                    out.append(c)
                i += 1
        elif c == "[":
            in_class = True
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":  # a leading ']' is literal
                out.append(pattern[i:j] + "\\]")
                i = j + 1
            else:
                out.append(pattern[i:j])
                i = j
            class_start = i
        elif c == "(" and pattern.startswith("(?", i):
            m = _GROUP_NAME_RE.match(pattern, i)
            f = _FLAGS_RE.match(pattern, i)
            if m:
                out.append(f"(?P<{m.group(1)}>")
                i = m.end()
            elif f and (f.group(1) or f.group(2) is not None):
                flags = f.group(1) + (f.group(2) or "")
                bad = set(flags) - set("ims")
                if bad:
                    raise QueryError(f"regex: flag {''.join(sorted(bad))!r} is not supported")
                if f.group(3) == ")" and i != 0:
                    raise QueryError("regex: inline flags are only supported at the start")
                out.append(f.group(0))
                i = f.end()
            elif pattern.startswith("(?:", i):
                out.append("(?:")
                i += 3
            else:
                nxt = pattern[i + 2 : i + 4]
                if nxt[:1] in ("=", "!") or nxt in ("<=", "<!"):
                    raise QueryError("regex: lookarounds are not supported (RE2)")
                if nxt.startswith("P="):
                    raise QueryError("regex: backreferences are not supported (RE2)")
                if nxt[:1] == ">":
                    raise QueryError("regex: atomic groups are not supported (RE2)")
                if nxt[:1] == "(":
                    raise QueryError("regex: conditionals are not supported (RE2)")
                raise QueryError(f"regex: unsupported group syntax {pattern[i : i + 4]!r}")
        elif c in "*+?" or (c == "{" and _REPEAT_RE.match(pattern, i)):
            m2 = _REPEAT_RE.match(pattern, i) if c == "{" else None
            if c == "?" and prev_quant == 1:
                out.append(c)  # lazy modifier
                quant = 2
                i += 1
            elif c == "+" and prev_quant == 1:
                raise QueryError("regex: possessive quantifiers are not supported (RE2)")
            elif prev_quant:
                raise QueryError("regex: invalid nested repetition")
            elif m2 is not None:
                if int(m2.group(1)) > 1000 or (m2.group(3) and int(m2.group(3)) > 1000):
                    raise QueryError("regex: repeat count above 1000")
                out.append(m2.group(0))
                quant = 1
                i = m2.end()
            else:
                out.append(c)
                quant = 1
                i += 1
        elif c == "{":
            out.append("\\{")
            i += 1
        elif c == "$" and not multiline:
            out.append("\\Z")
            i += 1
        else:
            out.append(c)
            i += 1
        prev_quant = quant
    if in_class:
        raise QueryError("regex: missing closing ]")
    return "".join(out)


def compile_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2-style pattern for full (anchored) matching with ``fullmatch``."""
    translated = _translate(pattern)
    try:
        return re.compile(translated, re.ASCII)
    except re.error as e:
        raise QueryError(f"regex: {e.msg}") from None
    except (RecursionError, OverflowError):
        raise QueryError("regex: too complex") from None


# --- the query ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    key: str
    op: str
    value: str
    _test: Callable[[str], bool] = field(repr=False, compare=False)

    @classmethod
    def make(cls, key: str, op: str, value: str) -> Matcher:
        test: Callable[[str], bool]
        if op == "=":
            test = value.__eq__
        elif op == "!=":
            test = value.__ne__
        elif op in ("=~", "!~"):
            rx = compile_regex(value)
            if op == "=~":

                def test(v: str) -> bool:
                    return rx.fullmatch(v) is not None

            else:

                def test(v: str) -> bool:
                    return rx.fullmatch(v) is None

        else:
            raise QueryError(f"unknown operator {op!r}")
        return cls(key, op, value, test)

    def matches(self, tags: Mapping[str, str]) -> bool:
        return self._test(tags.get(self.key, ""))

    def __str__(self) -> str:
        return f"{self.key}{self.op}{_quote(self.value)}"


def _quote(value: str) -> str:
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@dataclass(frozen=True)
class Query:
    app_name: str
    matchers: tuple[Matcher, ...] = ()

    def matches(self, tags: Mapping[str, str]) -> bool:
        """True when every matcher holds for ``tags`` (the app name is not checked here)."""
        return all(m.matches(tags) for m in self.matchers)

    def __str__(self) -> str:
        if not self.matchers:
            return self.app_name
        return self.app_name + "{" + ",".join(str(m) for m in self.matchers) + "}"


_SIMPLE_ESC = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
    "'": "'",
    '"': '"',
}


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in _WS:
            self.i += 1

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def where(self) -> str:
        return f"at position {self.i}"

    def parse(self) -> Query:
        self.ws()
        m = _APP_RE.match(self.s, self.i)
        if not m:
            if self.peek() in ("", "{"):
                raise QueryError("query: application name is required")
            raise QueryError(f"query: invalid character {self.peek()!r} in application name")
        app = m.group(0)
        self.i = m.end()
        self.ws()
        matchers: list[Matcher] = []
        if self.peek() == "{":
            self.i += 1
            self.ws()
            while self.peek() != "}":
                if not self.peek():
                    raise QueryError("query: missing closing '}'")
                matchers.append(self.matcher())
                self.ws()
                c = self.peek()
                if c == ",":
                    self.i += 1
                    self.ws()
                elif c != "}":
                    if not c:
                        raise QueryError("query: missing closing '}'")
                    raise QueryError(f"query: expected ',' or '}}' {self.where()}, got {c!r}")
            self.i += 1
            self.ws()
        if self.i < len(self.s):
            raise QueryError(f"query: unexpected {self.s[self.i]!r} {self.where()}")
        return Query(app, tuple(matchers))

    def matcher(self) -> Matcher:
        m = _KEY_RE.match(self.s, self.i)
        if not m:
            raise QueryError(f"query: expected a tag name {self.where()}, got {self.peek()!r}")
        key = m.group(0)
        if key == "__name__":
            raise QueryError("query: tag name __name__ is reserved")
        self.i = m.end()
        self.ws()
        op = ""
        for cand in ("=~", "!~", "!=", "="):
            if self.s.startswith(cand, self.i):
                op = cand
                break
        if not op:
            raise QueryError(f"query: expected an operator (= != =~ !~) after {key!r}")
        self.i += len(op)
        self.ws()
        value = self.string()
        return Matcher.make(key, op, value)

    def string(self) -> str:
        q = self.peek()
        if q not in ('"', "'", "`"):
            raise QueryError(f"query: expected a quoted value {self.where()}")
        start = self.i
        self.i += 1
        s = self.s
        if q == "`":
            end = s.find("`", self.i)
            if end < 0:
                raise QueryError("query: unterminated string")
            self.i = end + 1
            return s[start + 1 : end]
        out: list[str] = []
        while True:
            if self.i >= len(s) or s[self.i] == "\n":
                raise QueryError("query: unterminated string")
            c = s[self.i]
            if c == q:
                self.i += 1
                return "".join(out)
            if c != "\\":
                out.append(c)
                self.i += 1
                continue
            if self.i + 1 >= len(s):
                raise QueryError("query: unterminated string")
            e = s[self.i + 1]
            self.i += 2
            if e in _SIMPLE_ESC:
                if (e == "'" and q == '"') or (e == '"' and q == "'"):
                    raise QueryError(f"query: invalid escape \\{e}")
                out.append(_SIMPLE_ESC[e])
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                digits = s[self.i : self.i + width]
                if len(digits) != width or any(d not in "0123456789abcdefABCDEF" for d in digits):
                    raise QueryError(f"query: invalid escape \\{e}{digits}")
                cp = int(digits, 16)
                if cp > 0x10FFFF or 0xD800 <= cp <= 0xDFFF:
                    raise QueryError(f"query: invalid code point \\{e}{digits}")
                out.append(chr(cp))
                self.i += width
            elif e in "01234567":
                digits = s[self.i - 1 : self.i + 2]
                if len(digits) != 3 or any(d not in "01234567" for d in digits) or int(digits, 8) > 255:
                    raise QueryError(f"query: invalid octal escape \\{digits}")
                out.append(chr(int(digits, 8)))
                self.i += 2
            else:
                raise QueryError(f"query: invalid escape \\{e}")


def parse(query: str) -> Query:
    """Parse a FlameQL query; raises :class:`QueryError`."""
    if not isinstance(query, str):
        raise QueryError("query: must be a string")
    return _Parser(query).parse()
