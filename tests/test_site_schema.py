"""Every kind's catalogue entry is one declarative schema: the shared field types mean one
rule per idea in every kind, and each fault is reported at its ``sites[i].field``."""

from __future__ import annotations

import typing

import pytest

from stratoflow.errors import TemplateError
from stratoflow.sites import fields
from stratoflow.sites.catalogue import parse_catalogue
from stratoflow.sites.kinds import kinds

# The least entry each kind accepts; a new kind adds one line here.
MINIMAL = {
    "local": {},
    "kubernetes": {"conn_id": "c"},
    "openstack": {"conn_id": "c", "image": "i"},
    "ec2": {
        "conn_id": "c",
        "image_id": "ami-1",
        "instance_types": [{"name": "t3.small", "cpus": 2, "mem": "2 GiB"}],
    },
    "s3": {"conn_id": "c"},
    "fts3": {"conn_id": "c"},
    "onedata": {"conn_id": "c"},
}

# A rule, then values it must accept and refuse with its one wording.
RULES = {
    fields.Timeout: ([0.5, 3], [0, -1, "5", True], "expected a number of seconds > 0"),
    fields.Interval: ([0, 0.5], [-1, "1", False], "expected a number of seconds >= 0"),
    fields.Count: ([1, 7], [0, 1.5, "2", True], "expected an integer >= 1"),
}


def typed_fields(rule: typing.Any) -> list[tuple[str, str]]:
    """(kind, field) of every field declared with ``rule`` (alone or optional)."""
    found = []
    for name, kind in sorted(kinds().items()):
        hints = typing.get_type_hints(kind.schema, include_extras=True)
        for field, hint in hints.items():
            if hint == rule or rule in typing.get_args(hint):
                found.append((name, field))
    return found


def test_every_kind_has_a_schema_and_a_minimal_entry():
    assert set(MINIMAL) == set(kinds())
    assert all(kind.schema is not None for kind in kinds().values())
    parse_catalogue({"sites": [{"name": n, "kind": n, **e} for n, e in MINIMAL.items()]})


@pytest.mark.parametrize("rule", list(RULES), ids=["timeout", "interval", "count"])
def test_one_rule_per_idea_in_every_kind(rule):
    good, bad, wording = RULES[rule]
    targets = typed_fields(rule)
    assert len({kind for kind, _ in targets}) >= 3, targets  # the rule is really shared
    sites = [
        {"name": f"s{i}", "kind": kind, **MINIMAL[kind], field: value}
        for i, (kind, field) in enumerate((k, f) for k, f in targets for _ in good)
        for value in [good[i % len(good)]]
    ]
    parse_catalogue({"sites": sites})
    for value in bad:
        entries = [
            {"name": f"s{i}", "kind": k, **MINIMAL[k], f: value} for i, (k, f) in enumerate(targets)
        ]
        with pytest.raises(TemplateError) as err:
            parse_catalogue({"sites": entries})
        assert str(err.value).splitlines() == [
            f"sites[{i}].{f}: {wording}, got {value!r}" for i, (_, f) in enumerate(targets)
        ]


def test_an_empty_value_means_the_default_and_a_required_one_says_what_it_is():
    sites = parse_catalogue(
        {"sites": [{"name": "l", "kind": "local", "cores": None, "writable_roots": None}]}
    )
    assert sites["l"].config == {"cores": None, "writable_roots": None}
    with pytest.raises(TemplateError) as err:
        parse_catalogue({"sites": [{"name": "os", "kind": "openstack", "conn_id": None}]})
    assert str(err.value).splitlines() == [
        "sites[0].conn_id: required: Airflow connection id holding the Keystone credentials",
        "sites[0].image: required: VM image name or id",
    ]


def test_a_nested_fault_names_its_index_and_lists_what_is_known():
    entry = {**MINIMAL["ec2"], "instance_types": [{"name": "a", "cpus": 1, "mem": 1, "gpu": 1}]}
    with pytest.raises(TemplateError) as err:
        parse_catalogue({"sites": [{"name": "e", "kind": "ec2", **entry}]})
    assert str(err.value) == (
        "sites[0].instance_types[0].gpu: unknown field; expected one of cpus, gpus, mem, name"
    )
    with pytest.raises(TemplateError) as err:
        parse_catalogue({"sites": [{"name": "l", "kind": "local", "allowed_roots": ["/a", "b"]}]})
    assert (
        str(err.value) == "sites[0].allowed_roots[1]: expected an absolute directory path, got 'b'"
    )


def test_a_backend_built_from_a_bad_config_names_the_field():
    from stratoflow.sites.local import LocalCompute

    with pytest.raises(
        TemplateError, match=r"site x\.cores: expected a positive integer or 'auto'"
    ):
        LocalCompute("x", {"cores": 0})
    assert LocalCompute("x", {"cores": "auto", "memory": 1 << 30}).cfg.memory == 1 << 30
