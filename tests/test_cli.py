"""The `stratoflow` command line as a user runs it: exit codes, messages, no side effects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HOSTILE = REPO / "tests" / "templates" / "hostile"
DEMO = REPO / "include" / "templates" / "dimuon_campaign.yaml"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


def run(home: Path, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "AIRFLOW_HOME": str(home), "STRATOFLOW_HOME": str(home / "sf")}
    env.pop("STRATOFLOW_STORE_URL", None)
    # No database server in these homes: the store is a SQLite file (tests that need the
    # embedded PostgreSQL pass STRATOFLOW_EMBEDDED_DB themselves).
    env.setdefault("STRATOFLOW_EMBEDDED_DB", "sqlite")
    env.update(kw.pop("env", {}))
    return subprocess.run(
        [sys.executable, "-m", "stratoflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        **kw,
    )


def test_validate_demo_exits_0(home):
    done = run(home, "validate", str(DEMO))
    assert done.returncode == 0, done.stderr
    assert "valid" in done.stdout


@pytest.mark.parametrize(
    ("name", "inputs", "expected"),
    [
        (
            "ill_typed_num_cpus.yaml",
            [],
            "topology_template.node_templates.worker.capabilities.host.properties.num_cpus: "
            "expected integer, got 'many'",
        ),
        ("import_http.yaml", [], "imports[0]:"),
        ("import_file_url.yaml", [], "imports[0]:"),
        ("import_parent.yaml", [], "imports[0]:"),
        (
            "unknown_node_type.yaml",
            [],
            "topology_template.node_templates.x.type: unknown node type",
        ),
        ("requirement_cycle.yaml", [], "requirement cycle"),
        (
            "wrong_input_type.yaml",
            ["-i", "n=x"],
            "topology_template.inputs.n: expected integer, got 'x'",
        ),
        ("python_tag.yaml", [], "tag"),
        ("version_2_0.yaml", [], "tosca_definitions_version"),
        ("not_mapping_list.yaml", [], "mapping"),
    ],
)
def test_invalid_templates_exit_2_naming_the_field_and_create_nothing(home, name, inputs, expected):
    done = run(home, "validate", str(HOSTILE / name), *inputs)
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stderr
    assert "Traceback" not in done.stderr
    for line in done.stderr.strip().splitlines():  # one fault per line, path first
        assert ": " in line
    assert not home.exists(), "validation must not create anything"


def test_missing_required_input_on_validate_exits_2(home):
    done = run(home, "validate", str(HOSTILE / "missing_required_input.yaml"))
    assert done.returncode == 2
    assert "topology_template.inputs." in done.stderr and "required input not given" in done.stderr


def test_bad_input_pair_exits_2(home):
    done = run(home, "validate", str(DEMO), "-i", "chunk_size")
    assert done.returncode == 2 and "chunk_size" in done.stderr
    done = run(home, "validate", str(DEMO), "-i", "chunk_size=0")
    assert done.returncode == 2
    assert "topology_template.inputs.chunk_size" in done.stderr


def test_compile_prints_a_stable_content_hashed_plan(home):
    first = run(home, "compile", str(DEMO))
    second = run(home, "compile", str(DEMO), "-i", "chunk_size=2")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    plan, again = json.loads(first.stdout), json.loads(second.stdout)
    assert plan["hash"] == again["hash"], "inputs are bound per run, not compiled in"
    assert plan["dag_id"].startswith("dimuon_campaign_")
    kinds = [s["kind"] for s in plan["steps"]]
    assert kinds == [
        "broker",
        "provision",
        "stage_in",
        "job",
        "job",
        "stage_out",
        "teardown",
        "report",
    ]
    assert not home.exists()


def test_validate_and_compile_do_not_import_airflow():
    code = (
        "import sys; from stratoflow.cli import main\n"
        f"assert main(['validate', {str(DEMO)!r}]) == 0\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['compile', {str(DEMO)!r}]) == 0\n"
        "assert not [m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["validate"],
        ["compile"],
        ["register"],
        ["submit"],
        ["status"],
        ["list"],
        ["up"],
        ["down"],
        ["demo"],
    ],
)
def test_help_at_every_level(home, command):
    done = run(home, *command, "--help")
    assert done.returncode == 0
    assert "usage: stratoflow" in done.stdout


def test_status_of_unknown_deployment_exits_2(home):
    done = run(home, "status", "no-such-id")
    assert done.returncode == 2 and "not found" in done.stderr


def test_store_commands_without_the_embedded_database_say_how_to_start_it(home):
    done = run(home, "list", env={"STRATOFLOW_EMBEDDED_DB": "postgres"})
    assert done.returncode == 1
    assert "cannot reach the store" in done.stderr
    assert "`stratoflow up` starts it" in done.stderr
    assert "Traceback" not in done.stderr


def test_health_without_a_running_airflow_exits_1(home):
    done = run(home, "health")
    assert done.returncode == 1
    assert "not running" in done.stdout


def test_sites_lists_the_catalogue_and_names_each_fault(home, tmp_path):
    done = run(home, "sites")
    assert done.returncode == 0, done.stderr
    assert "local" in done.stdout
    bad = tmp_path / "sites.yaml"
    bad.write_text(
        "sites:\n  - name: k\n    kind: kubernetes\n    memory: 8 GiB\n"
        "  - name: Bad!\n    kind: moon\n"
    )
    done = run(home, "sites", "--catalogue", str(bad))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "sites[0].conn_id: required: Airflow connection id: host = API URL, password ="
        " bearer token",
        "sites[0].memory: expected a positive integer, got '8 GiB'",
        "sites[1].name: expected a lowercase DNS-style name (a-z, 0-9, '-', '_'), got 'Bad!'",
        "sites[1].kind: unknown site kind 'moon'; expected one of ec2, fts3, kubernetes,"
        " local, onedata, openstack, s3",
    ]


def test_reap_of_an_unknown_site_is_a_clear_error(home):
    done = run(home, "reap", "--site", "nowhere")
    assert done.returncode == 1
    assert "site 'nowhere' is not in the site catalogue" in done.stderr
