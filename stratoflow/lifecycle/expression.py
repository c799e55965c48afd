"""Storage expressions: which endpoints a rule may put copies on, in Rucio's grammar.

    tier=1&country=IT        endpoints whose attribute tier is 1 and country is IT
    type=DISK|type=TAPE      either
    *\\type=TAPE              every endpoint except the TAPE ones
    (tier=1|tier=2)&cost<10  parentheses group; < and > compare numbers
    CERN-DISK                an endpoint by name (or an attribute set to true)

As in Rucio, ``&`` (intersection), ``|`` (union) and ``\\`` (complement) have the same
precedence and apply left to right: ``a|b&c`` is ``(a|b)&c``. Parentheses group. An
expression that selects no endpoint is an error, like a malformed one; each error names
the field and the position.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from stratoflow.errors import Issue, TemplateError

MAX_LENGTH = 1000  # a policy's expression is a line, not a document
# Rucio's attribute keys and values: letters, digits, '.', '_', '-'.
_WORD = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PRIMITIVE = re.compile(rf"\*|(?P<key>{_WORD})(?:(?P<op>[=<>])(?P<value>{_WORD}))?")
OPERATORS = {"&": "intersection", "|": "union", "\\": "complement"}


@dataclass(frozen=True)
class Endpoint:
    """A storage endpoint as expressions see it: its name and its attributes."""

    name: str
    attributes: Mapping[str, Any]

    def matches(self, key: str, op: str, value: str | None) -> bool:
        if op == "" and key == self.name:
            return True
        have = self.attributes.get(key)
        if have is None:
            return False
        if op == "":
            return have is True or str(have).lower() == "true"
        if op == "=":
            return _text(have) == value
        try:  # < and >: numbers only; an attribute that is not a number never matches
            number, bound = float(have), float(value or "")
        except (TypeError, ValueError):
            return False
        return number < bound if op == "<" else number > bound


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Expression:
    """A parsed expression: a tree of primitives and left-to-right set operations."""

    text: str
    tree: Any  # ("all",) | ("attr", key, op, value) | (operator, left, right)

    def select(self, endpoints: Mapping[str, Endpoint]) -> set[str]:
        """The names of the endpoints it selects (possibly none)."""
        return _evaluate(self.tree, endpoints)


def _evaluate(node: Any, endpoints: Mapping[str, Endpoint]) -> set[str]:
    kind = node[0]
    if kind == "all":
        return set(endpoints)
    if kind == "attr":
        _, key, op, value = node
        return {name for name, e in endpoints.items() if e.matches(key, op, value)}
    left, right = _evaluate(node[1], endpoints), _evaluate(node[2], endpoints)
    if kind == "&":
        return left & right
    if kind == "|":
        return left | right
    return left - right


def parse(text: Any, path: str = "storage") -> Expression:
    """Parse ``text``; a ``TemplateError`` names ``path`` and the position of the fault."""
    if not isinstance(text, str) or not text.strip():
        raise TemplateError(Issue(path, f"expected a storage expression, got {text!r}"))
    if len(text) > MAX_LENGTH:
        raise TemplateError(Issue(path, f"longer than {MAX_LENGTH} characters"))
    parser = _Parser(text, path)
    tree = parser.sequence(depth=0)
    if parser.pos != len(text):
        parser.fail("unexpected ')'" if text[parser.pos] == ")" else "expected an operator")
    return Expression(text, tree)


def select(text: Any, endpoints: Mapping[str, Endpoint], path: str = "storage") -> set[str]:
    """The endpoints ``text`` selects; an expression that selects none is an error."""
    chosen = parse(text, path).select(endpoints)
    if not chosen:
        known = ", ".join(sorted(endpoints)) or "none"
        raise TemplateError(
            Issue(path, f"storage expression {text!r} matches no endpoint (endpoints: {known})")
        )
    return chosen


class _Parser:
    """sequence := operand (operator operand)*; operand := primitive | '(' sequence ')'."""

    def __init__(self, text: str, path: str):
        self.text, self.path, self.pos = text, path, 0

    def fail(self, why: str) -> NoReturn:
        raise TemplateError(Issue(self.path, f"{why} at position {self.pos + 1} of {self.text!r}"))

    def sequence(self, depth: int) -> Any:
        if depth > 50:
            self.fail("parentheses nested too deep")
        tree = self.operand(depth)
        while self.pos < len(self.text) and self.text[self.pos] in OPERATORS:
            op = self.text[self.pos]
            self.pos += 1
            tree = (op, tree, self.operand(depth))
        return tree

    def operand(self, depth: int) -> Any:
        if self.pos >= len(self.text):
            self.fail("expected a term")
        if self.text[self.pos] == "(":
            self.pos += 1
            tree = self.sequence(depth + 1)
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                self.fail("expected ')'")
            self.pos += 1
            return tree
        match = _PRIMITIVE.match(self.text, self.pos)
        if match is None or match.end() == self.pos:
            self.fail("expected a term (key=value, key<number, key>number, a name or *)")
        self.pos = match.end()
        if match.group() == "*":
            return ("all",)
        return ("attr", match["key"], match["op"] or "", match["value"])
