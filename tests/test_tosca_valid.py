"""Valid templates load into the expected Topology; inputs bind and coerce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stratoflow.errors import TemplateError
from stratoflow.tosca import load_topology, load_topology_text, parse_cli_inputs
from stratoflow.tosca.scalars import parse_duration, parse_size

TEMPLATES = Path(__file__).parent / "templates"


@pytest.fixture(scope="module")
def campaign():
    return load_topology(TEMPLATES / "campaign_valid.yaml")


def test_campaign_topology(campaign):
    assert campaign.name == "higgs-campaign"
    assert campaign.tosca_version == "tosca_simple_yaml_1_3"
    assert set(campaign.nodes) == {"events", "workers", "fit", "merge", "campaign"}
    workers = campaign.nodes["workers"]
    assert workers.is_a("tosca.nodes.Compute") and workers.is_a("stratoflow.nodes.Compute")
    assert workers.properties == {"count": 2, "num_gpus": 0, "public_endpoint": False}
    assert workers.capabilities["host"]["num_cpus"] == {"get_input": "num_cpus"}
    assert workers.capabilities["os"]["version"] == "22.04"
    fit = campaign.nodes["fit"]
    assert fit.requirement("host") == "workers"
    assert fit.requirements[0].relationship == "tosca.relationships.HostedOn"
    assert fit.properties["command"][-1] == "{inputs}"
    assert fit.properties["timeout"] == "30 m" and fit.properties["retries"] == 3
    assert fit.artifacts["fit_script"].content.startswith(b'"""Fit')
    assert fit.artifacts["fit_script"].file == "artifacts/fit.py"


def test_defaults_and_string_command(campaign):
    merge = campaign.nodes["merge"]
    # A string command is split like a shell would, without a shell.
    assert merge.properties["command"] == [
        "python3",
        "{artifacts}/merge.py",
        "--out",
        "{outdir}",
        "{inputs}",
    ]
    assert merge.properties["mem_size"] == "1 GB"
    assert merge.properties["num_cpus"] == 1
    assert merge.properties["retries"] == 2
    assert merge.properties["environment"] == {}
    assert merge.artifacts["merge_script"].type == "tosca.artifacts.File"


def test_campaign_links_and_policy(campaign):
    c = campaign.nodes["campaign"]
    assert [(r.name, r.node) for r in c.requirements] == [
        ("dataset", "events"),
        ("job", "fit"),
        ("merge", "merge"),
    ]
    assert campaign.nodes_of("stratoflow.nodes.Job") == [
        campaign.nodes["fit"],
        campaign.nodes["merge"],
    ]
    (policy,) = campaign.policies
    assert policy.name == "placement"
    assert policy.properties["kinds"] == ["local", "openstack"]
    assert policy.type == "stratoflow.policies.Placement"
    assert "tosca.policies.Placement" in policy.type_chain
    assert policy.targets == ("workers",)
    assert policy.properties["sites"] == {"get_input": "sites"}
    assert campaign.outputs["results"]["value"] == {"get_property": ["campaign", "output_location"]}
    files = campaign.nodes["events"].properties["files"]
    assert files[0] == {"url": "data/events-000.csv", "adler32": "0a1b2c3d", "size": 1048576}


def test_inputs_defaults_and_cli_coercion(campaign):
    assert campaign.bound_inputs == {
        "num_cpus": 2,
        "mem_size": "4 GB",
        "chunk_size": 2,
        "output_location": "file:///tmp/stratoflow/results",
        "sites": ["local"],
    }
    cli = parse_cli_inputs(["num_cpus=8", "sites=[cern, desy]", "mem_size=512 MiB"])
    t = load_topology(TEMPLATES / "campaign_valid.yaml", cli)
    assert t.bound_inputs["num_cpus"] == 8
    assert t.bound_inputs["sites"] == ["cern", "desy"]
    assert t.bound_inputs["mem_size"] == "512 MiB"
    typed = load_topology(TEMPLATES / "campaign_valid.yaml", {"num_cpus": 4, "sites": ["a"]})
    assert typed.bound_inputs["num_cpus"] == 4


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        ({"num_cpus": "many"}, "topology_template.inputs.num_cpus: expected integer, got 'many'"),
        ({"num_cpus": "65"}, "topology_template.inputs.num_cpus: 65 is not in range"),
        ({"num_cpus": True}, "topology_template.inputs.num_cpus: expected integer, got True"),
        ({"sites": "[1, 2]"}, "topology_template.inputs.sites[0]: expected string, got 1"),
        ({"mem_size": "lots"}, "topology_template.inputs.mem_size: expected scalar-unit.size"),
        ({"nope": "1"}, "inputs.nope: unknown input"),
    ],
)
def test_bad_inputs(inputs, expected):
    with pytest.raises(TemplateError) as info:
        load_topology(TEMPLATES / "campaign_valid.yaml", inputs)
    assert expected in str(info.value)


@pytest.mark.parametrize(
    "name",
    ["normative_compute_1_0.yaml", "normative_software_1_3.yaml", "normative_webapp_1_2.yaml"],
)
def test_normative_templates(name):
    t = load_topology(TEMPLATES / name)
    assert t.nodes
    for node in t.nodes.values():
        assert node.type_chain[-1] == "tosca.nodes.Root"


def test_normative_short_type_names_and_requirements():
    t = load_topology(TEMPLATES / "normative_software_1_3.yaml")
    assert t.nodes["server"].type == "tosca.nodes.Compute"
    assert t.nodes["app"].requirement("host") == "server"
    assert t.nodes["server"].requirement("local_storage") == "volume"
    assert t.nodes["volume"].properties["size"] == {"get_input": "storage_size"}


def test_required_input_without_value_only_checked_when_binding():
    t = load_topology(TEMPLATES / "normative_webapp_1_2.yaml")  # compile time: no run inputs
    assert t.bound_inputs == {}
    with pytest.raises(TemplateError, match="inputs.db_password: required input not given"):
        load_topology(TEMPLATES / "normative_webapp_1_2.yaml", {})
    with pytest.raises(TemplateError, match="db_password: length 3 violates min_length 8"):
        load_topology(TEMPLATES / "normative_webapp_1_2.yaml", {"db_password": "abc"})


def test_relative_imports_and_template_types(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "types.yaml").write_text(
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "data_types:\n  my.datatypes.Port:\n    derived_from: integer\n"
        "    constraints: [{in_range: [1, 65535]}]\n"
        "node_types:\n  my.nodes.Service:\n    derived_from: tosca.nodes.SoftwareComponent\n"
        "    properties:\n      port: {type: my.datatypes.Port, default: 8080}\n"
    )
    text = (
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "imports:\n  - lib/types.yaml\n  - {file: stratoflow-types}\n"
        "  - https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml\n"
        "topology_template:\n  node_templates:\n"
        "    vm: {type: tosca.nodes.Compute}\n"
        "    svc:\n      type: my.nodes.Service\n      requirements: [{host: vm}]\n"
    )
    t = load_topology_text(text, tmp_path, name_hint="svc")
    assert t.name == "svc"
    assert t.nodes["svc"].properties["port"] == 8080
    assert t.nodes["svc"].is_a("tosca.nodes.SoftwareComponent")
    bad = text.replace("requirements", "properties: {port: 70000}\n      requirements")
    with pytest.raises(TemplateError, match=r"svc\.properties\.port: 70000 is not in range"):
        load_topology_text(bad, tmp_path)


def test_parse_cli_inputs():
    assert parse_cli_inputs(["a=1", "b=x=y", "c="]) == {"a": "1", "b": "x=y", "c": ""}
    with pytest.raises(TemplateError, match="inputs.novalue: malformed input 'novalue'"):
        parse_cli_inputs(["ok=1", "novalue"])


def test_scalars():
    assert parse_size("2 GB") == 2_000_000_000
    assert parse_size("512 MiB") == 512 * 1024**2
    assert parse_size("1 GiB") == 1024**3
    assert parse_size("1.5 kB") == 1500
    assert parse_size("10 KiB") == 10240
    assert parse_size(42) == 42
    assert parse_duration("30 s") == 30
    assert parse_duration("10 m") == 600
    assert parse_duration("1 h") == 3600
    assert parse_duration("1 d") == 86400
    assert parse_duration(5) == 5.0 and parse_duration("2.5") == 2.5
    for bad in ("many", "2 XB", "", "-1 GB", True, None):
        with pytest.raises(ValueError):
            parse_size(bad)
    for bad in ("soon", "10 parsecs", -1, float("nan")):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_import_is_cheap():
    code = "import sys, stratoflow.tosca; assert 'toscaparser' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_toscaparser_findings_are_translated(tmp_path):
    # Our checks do not look inside interfaces; tosca-parser does, and its finding is kept.
    text = (
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "topology_template:\n  node_templates:\n    vm:\n      type: tosca.nodes.Compute\n"
        "      interfaces:\n        Standard:\n          explode: x.sh\n"
    )
    with pytest.raises(TemplateError) as info:
        load_topology_text(text, tmp_path)
    (issue,) = info.value.issues
    assert issue.path == "topology_template.node_templates.vm"
    assert "tosca-parser" in issue.message and "explode" in issue.message


def test_yaml_details(tmp_path):
    text = (
        "tosca_definitions_version: tosca_simple_yaml_1_3\n"
        "metadata: {created: 2024-05-01, <<: {template_name: merged}}\n"
        "base: &base {type: stratoflow.nodes.Compute}\n"
    )
    with pytest.raises(TemplateError, match="base: unknown top-level key"):
        load_topology_text(text + "topology_template: {node_templates: {w: *base}}\n", tmp_path)
    t = load_topology_text(
        text.replace("base:", "dsl_definitions:\n  base:").replace("&base", "\n    &base")
        + "topology_template: {node_templates: {w: *base}}\n",
        tmp_path,
    )
    assert t.name == "merged"  # merge keys work; timestamps stay strings
    assert t.nodes["w"].type == "stratoflow.nodes.Compute"
