"""Storage expressions (Rucio's grammar): what they select, and clear errors for the rest.

The properties are checked with hypothesis against a reference evaluator written the
plain way (left to right over the whole expression), over random endpoint catalogues."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stratoflow.errors import TemplateError
from stratoflow.lifecycle.expression import Endpoint, parse, select

ENDPOINTS = {
    "CERN-DISK": Endpoint("CERN-DISK", {"tier": 0, "country": "CH", "type": "DISK", "cost": 1}),
    "CNAF-DISK": Endpoint("CNAF-DISK", {"tier": 1, "country": "IT", "type": "DISK", "cost": 3}),
    "CNAF-TAPE": Endpoint("CNAF-TAPE", {"tier": 1, "country": "IT", "type": "TAPE", "cost": 0.5}),
    "DESY-DISK": Endpoint("DESY-DISK", {"tier": 2, "country": "DE", "type": "DISK", "fast": True}),
}


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("tier=1&country=IT", {"CNAF-DISK", "CNAF-TAPE"}),
        ("type=DISK", {"CERN-DISK", "CNAF-DISK", "DESY-DISK"}),
        ("*\\type=TAPE", {"CERN-DISK", "CNAF-DISK", "DESY-DISK"}),
        ("country=IT|country=DE", {"CNAF-DISK", "CNAF-TAPE", "DESY-DISK"}),
        ("cost<1", {"CNAF-TAPE"}),
        ("cost>2", {"CNAF-DISK"}),  # DESY has no cost: never matches a comparison
        ("CERN-DISK", {"CERN-DISK"}),  # a name
        ("fast", {"DESY-DISK"}),  # an attribute that is true
        # Left to right, one precedence, as Rucio: (a|b)&c, not a|(b&c).
        ("country=CH|country=IT&type=TAPE", {"CNAF-TAPE"}),
        ("country=CH|(country=IT&type=TAPE)", {"CERN-DISK", "CNAF-TAPE"}),
        ("(tier=0|tier=1)\\type=TAPE", {"CERN-DISK", "CNAF-DISK"}),
    ],
)
def test_what_an_expression_selects(expression, expected):
    assert select(expression, ENDPOINTS) == expected


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("tier=9", "matches no endpoint (endpoints: CERN-DISK, CNAF-DISK, CNAF-TAPE, DESY-DISK)"),
        (
            "tier=1&",
            "expected a term at position 8",
        ),
        (
            "tier=1&=",
            "expected a term (key=value, key<number, key>number, a name or *) at position 8",
        ),
        ("(tier=1", "expected ')' at position 8"),
        ("tier=1)", "unexpected ')' at position 7"),
        ("tier==1", "expected an operator at position 5"),
        ("tier=1 & country=IT", "expected an operator at position 7"),
        ("", "expected a storage expression, got ''"),
        ("(" * 60 + "a" + ")" * 60, "parentheses nested too deep"),
        ("a|" * 600 + "a", "longer than 1000 characters"),
    ],
)
def test_bad_expressions_name_the_field_and_the_position(expression, message):
    with pytest.raises(TemplateError) as err:
        select(expression, ENDPOINTS, path="policies.keep_two.storage")
    (issue,) = err.value.issues
    assert issue.path == "policies.keep_two.storage"
    assert message in issue.message


# -- properties -------------------------------------------------------------------------

KEYS = ("tier", "country", "type")
VALUES = ("0", "1", "IT", "DISK")
primitives = st.one_of(
    st.just("*"),
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.sampled_from(VALUES)),
)


def expressions(depth: int = 3) -> st.SearchStrategy[str]:
    """Random expressions: primitives joined by operators, some parenthesised."""
    operand = (
        primitives
        if depth == 0
        else st.one_of(primitives, expressions(depth - 1).map(lambda e: f"({e})"))
    )
    return st.builds(
        lambda first, rest: first + "".join(op + term for op, term in rest),
        operand,
        st.lists(st.tuples(st.sampled_from("&|\\"), operand), max_size=4),
    )


catalogues = st.dictionaries(
    st.from_regex(r"[A-Z]{2,5}", fullmatch=True),
    st.fixed_dictionaries({k: st.sampled_from(VALUES) for k in KEYS}),
    max_size=8,
).map(lambda d: {name: Endpoint(name, attrs) for name, attrs in d.items()})


def reference(expression: str, endpoints: dict[str, Endpoint]) -> set[str]:
    """The plain reading: split at the top level, fold left to right."""
    terms, ops, depth, start = [], [], 0, 0
    for i, ch in enumerate(expression):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in "&|\\":
            terms.append(expression[start:i])
            ops.append(ch)
            start = i + 1
    terms.append(expression[start:])

    def term(t: str) -> set[str]:
        if t.startswith("("):
            return reference(t[1:-1], endpoints)
        if t == "*":
            return set(endpoints)
        key, value = t.split("=")
        return {n for n, e in endpoints.items() if str(e.attributes.get(key)) == value}

    result = term(terms[0])
    for op, t in zip(ops, terms[1:], strict=True):
        other = term(t)
        result = result & other if op == "&" else result | other if op == "|" else result - other
    return result


@settings(max_examples=500)
@given(expressions(), catalogues)
def test_parsing_agrees_with_the_plain_reading(expression, endpoints):
    assert parse(expression).select(endpoints) == reference(expression, endpoints)


@settings(max_examples=300)
@given(expressions(), catalogues)
def test_a_selection_is_always_among_the_endpoints_and_complement_removes(expression, endpoints):
    chosen = parse(expression).select(endpoints)
    assert chosen <= set(endpoints)
    assert parse(f"*\\({expression})").select(endpoints) == set(endpoints) - chosen
