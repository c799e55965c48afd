"""Malformed and hostile templates: each fails cleanly, fast, offline, and writes nothing.

Every case names the TOSCA path (or the YAML fault) its error must mention, so a regression
that still raises but points the user at the wrong place is caught too.
"""

from __future__ import annotations

import builtins
import io
import os
import socket
import time
from pathlib import Path

import pytest

from stratoflow.errors import TemplateError
from stratoflow.tosca import load_topology, load_topology_text

HOSTILE = Path(__file__).parent / "templates" / "hostile"
MAX_CPU_SECONDS = 1.0

# (file, inputs, text the error must contain)
CASES: list[tuple[str, dict | None, str]] = [
    ("import_http.yaml", None, "imports[0]: import 'http://example.com/evil-types.yaml' refused"),
    ("import_https_unknown.yaml", None, "imports[0]: import 'https://evil.example.org"),
    ("import_file_url.yaml", None, "imports[0]: import 'file:///etc/passwd' refused"),
    ("import_parent.yaml", None, "imports[0]: import '../../etc/passwd' refused"),
    ("import_absolute.yaml", None, "imports[0]: import '/etc/passwd' refused: absolute"),
    ("import_data_url.yaml", None, "imports[0]: import 'data:"),
    ("import_ftp.yaml", None, "imports[0]: import 'ftp://"),
    ("import_repository.yaml", None, "imports[0]: imports from a repository"),
    ("import_cycle.yaml", None, "import cycle"),
    ("unknown_node_type.yaml", None, "topology_template.node_templates.x.type: unknown node type"),
    ("unknown_property.yaml", None, "node_templates.worker.properties.colour: unknown property"),
    (
        "missing_required_property.yaml",
        None,
        "node_templates.job.properties.command: required property missing",
    ),
    (
        "ill_typed_num_cpus.yaml",
        None,
        "topology_template.node_templates.worker.capabilities.host.properties.num_cpus: "
        "expected integer, got 'many'",
    ),
    ("constraint_violation.yaml", None, "node_templates.worker.properties.count: 0 must be at"),
    ("valid_values_violation.yaml", None, "copy.properties.verify_checksum: 'sometimes' is not"),
    ("requirement_unknown_node.yaml", None, "job.requirements[0].host: unknown target node"),
    ("requirement_cycle.yaml", None, "requirements[0].dependency: requirement cycle"),
    ("host_not_compute.yaml", None, "node_templates.job.requirements[0].host: target 'data'"),
    ("job_without_host.yaml", None, "node_templates.job.requirements: requirement 'host'"),
    ("unknown_requirement_name.yaml", None, "job.requirements[1].gpu: stratoflow.nodes.Job has no"),
    ("unknown_capability.yaml", None, "node_templates.worker.capabilities.gpu:"),
    ("get_input_undeclared.yaml", None, "job.properties.num_cpus: get_input of undeclared input"),
    ("get_input_type_mismatch.yaml", None, "job.properties.num_cpus: input 'cpus' is of type"),
    ("outputs_unknown_node.yaml", None, "outputs.ip.value: get_attribute of unknown node 'ghost'"),
    (
        "outputs_unknown_attribute.yaml",
        None,
        "outputs.ip.value: node 'server' (tosca.nodes.Compute) has no property or attribute "
        "'floating_address'",
    ),
    (
        "scalable_out_of_range.yaml",
        None,
        "server.capabilities.scalable.properties.default_instances: 5 is above max_instances (3)",
    ),
    ("wrong_input_type.yaml", {"n": "x"}, "topology_template.inputs.n: expected integer, got 'x'"),
    ("wrong_input_type.yaml", {"n": [1]}, "topology_template.inputs.n: expected integer"),
    ("missing_required_input.yaml", {}, "topology_template.inputs.n: required input not given"),
    ("unknown_input_name.yaml", {"bogus": "1"}, "inputs.bogus: unknown input"),
    ("input_constraint_violation.yaml", {"n": "9"}, "topology_template.inputs.n: 9 is not in"),
    ("not_mapping_list.yaml", None, "must be a YAML mapping, got a list"),
    ("not_mapping_scalar.yaml", None, "must be a YAML mapping, got a str"),
    ("empty.yaml", None, "must be a YAML mapping, got an empty document"),
    ("version_2_0.yaml", None, "tosca_definitions_version: unsupported version"),
    ("version_missing.yaml", None, "tosca_definitions_version: missing"),
    ("python_tag.yaml", None, "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system'"),
    ("custom_tag.yaml", None, "YAML tag '!include' is not allowed"),
    ("duplicate_keys.yaml", None, "duplicate key 'worker'"),
    ("invalid_syntax.yaml", None, "invalid YAML"),
    ("bad_checksum.yaml", None, "data.properties.files[0].adler32: 'not-hex!' does not match"),
    ("artifact_escape.yaml", None, "job.artifacts.secrets.file: '../../../../etc/passwd'"),
    ("artifact_url.yaml", None, "job.artifacts.script.file: 'https://evil"),
    ("recursive_alias.yaml", None, "recursive alias *a"),
    ("multi_document.yaml", None, "only one YAML document"),
    ("redefine_library_type.yaml", None, "node_types.stratoflow.nodes.Job: redefines"),
    ("unknown_derived_from.yaml", None, "node_types.my.nodes.Thing.derived_from: unknown type"),
    ("unknown_data_type.yaml", None, "node_types.my.nodes.Thing.properties.spec.type: unknown"),
    ("unknown_policy_type.yaml", None, "policies.where.type: unknown policy type"),
    ("policy_unknown_target.yaml", None, "policies.where.targets: unknown node or group 'ghost'"),
    ("redos_pattern.yaml", None, "t.properties.name: cannot apply constraint pattern"),
    ("huge_integer.yaml", None, "invalid YAML value"),
    ("unknown_top_level_key.yaml", None, "node_templatez: unknown top-level key"),
    ("node_not_mapping.yaml", None, "node_templates.worker: a node template must be a mapping"),
    ("scalar_bad_unit.yaml", None, "host.properties.mem_size: expected scalar-unit.size"),
    ("non_utf8.yaml", None, "is not UTF-8 text"),
]


def _snapshot(*dirs: Path) -> set[tuple[str, int, float]]:
    out = set()
    for d in dirs:
        for root, subdirs, files in os.walk(d):
            for f in files + subdirs:
                p = os.path.join(root, f)
                st = os.lstat(p)
                out.add((p, st.st_size, st.st_mtime))
    return out


@pytest.fixture
def offline(monkeypatch):
    """Any network use during the test fails loudly."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


@pytest.fixture
def no_writes(monkeypatch):
    """Opening any file for writing fails (installed after the test's own setup wrote)."""
    real_open, real_os_open = builtins.open, os.open

    def guarded_open(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wax+"):
            raise AssertionError(f"file opened for writing: {file!r}")
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            raise AssertionError(f"file opened for writing: {path!r}")
        return real_os_open(path, flags, *args, **kwargs)

    def install():
        monkeypatch.setattr(builtins, "open", guarded_open)
        monkeypatch.setattr(io, "open", guarded_open)
        monkeypatch.setattr(os, "open", guarded_os_open)

    return install


def _expect_error(call, expected: str, *watched: Path, guard=None) -> TemplateError:
    before = _snapshot(*watched)
    if guard is not None:
        guard()
    start = time.process_time()
    with pytest.raises(TemplateError) as info:
        call()
    cpu = time.process_time() - start
    assert cpu < MAX_CPU_SECONDS, f"took {cpu:.2f}s of CPU"
    assert _snapshot(*watched) == before, "files were created or changed"
    assert expected in str(info.value), f"{expected!r} not in:\n{info.value}"
    return info.value


@pytest.mark.parametrize(("name", "inputs", "expected"), CASES, ids=[c[0] for c in CASES])
def test_hostile_template(name, inputs, expected, offline, no_writes, tmp_path):
    _expect_error(
        lambda: load_topology(HOSTILE / name, inputs), expected, HOSTILE, tmp_path, guard=no_writes
    )


def test_at_least_thirty_distinct_files():
    assert len({c[0] for c in CASES}) >= 30
    on_disk = {p.name for p in HOSTILE.glob("*.yaml")}
    assert on_disk == {c[0] for c in CASES}, "every fixture is in the table and vice versa"


# -- generated: too large to commit, or needing a symlink --------------------------------------

HEAD = "tosca_definitions_version: tosca_simple_yaml_1_3\n"


def _billion_laughs() -> str:
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, 12):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    return HEAD + "metadata:\n" + "\n".join("  " + line for line in lines) + "\n"


def _make_huge(path: Path) -> None:
    with open(path, "wb") as fh:  # sparse: 50 MB without writing 50 MB
        fh.write(HEAD.encode())
        fh.truncate(50 * 1024 * 1024)


GENERATED = [
    ("alias_bomb", lambda p: p.write_text(_billion_laughs()), "more than 100000 YAML nodes"),
    ("huge_file", _make_huge, "over 1048576"),
    ("deep_nesting", lambda p: p.write_text(HEAD + "x: " + "[" * 10_000), "nesting deeper than 64"),
    (
        "deep_mappings",
        lambda p: p.write_text(HEAD + "".join(f"{' ' * i}k:\n" for i in range(600))),
        "nesting deeper than 64",
    ),
]


@pytest.mark.parametrize(("name", "make", "expected"), GENERATED, ids=[g[0] for g in GENERATED])
def test_generated_hostile(name, make, expected, offline, no_writes, tmp_path):
    path = tmp_path / f"{name}.yaml"
    make(path)
    _expect_error(lambda: load_topology(path), expected, tmp_path, guard=no_writes)


def test_huge_text_rejected_before_parsing(offline, tmp_path):
    text = HEAD + "description: " + "x" * (2 * 1024 * 1024)
    _expect_error(lambda: load_topology_text(text, tmp_path), "larger than", tmp_path)


def _symlink_case(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    inside = tmp_path / "tpl"
    outside.mkdir()
    inside.mkdir()
    (outside / "types.yaml").write_text("node_types: {}\n")
    (inside / "types.yaml").symlink_to(outside / "types.yaml")
    (inside / "script.sh").symlink_to(outside / "types.yaml")
    tpl = inside / "t.yaml"
    tpl.write_text(
        HEAD
        + "imports: [types.yaml]\n"
        + "topology_template:\n  node_templates:\n"
        + "    w: {type: stratoflow.nodes.Compute}\n"
        + "    j:\n      type: stratoflow.nodes.Job\n      properties: {command: [sh]}\n"
        + "      requirements: [{host: w}]\n      artifacts: {s: script.sh}\n"
    )
    return tpl


def test_symlinks_escaping_the_directory(offline, no_writes, tmp_path):
    tpl = _symlink_case(tmp_path)
    err = _expect_error(
        lambda: load_topology(tpl),
        "imports[0]: import 'types.yaml' refused",
        tmp_path,
        guard=no_writes,
    )
    assert "node_templates.j.artifacts.s.file: 'script.sh' resolves outside" in str(err)


def test_all_issues_reported_at_once(offline, tmp_path):
    tpl = tmp_path / "t.yaml"
    tpl.write_text(
        HEAD
        + "topology_template:\n  node_templates:\n"
        + "    w:\n      type: stratoflow.nodes.Compute\n"
        + "      properties: {count: 0, colour: red}\n"
        + "      capabilities: {host: {properties: {num_cpus: many}}}\n"
        + "    x: {type: no.such.Type}\n"
    )
    err = _expect_error(lambda: load_topology(tpl), "colour", tmp_path)
    paths = {i.path for i in err.issues}
    assert {
        "topology_template.node_templates.w.properties.count",
        "topology_template.node_templates.w.properties.colour",
        "topology_template.node_templates.w.capabilities.host.properties.num_cpus",
        "topology_template.node_templates.x.type",
    } <= paths
