"""The replica catalogue: storage endpoints from the site catalogue, dataset registration
in the store (SQLite and PostgreSQL), and `stratoflow dataset` as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
import yaml

from stratoflow.errors import TemplateError
from stratoflow.lifecycle.model import NewFile, ReplicaState
from stratoflow.sites.catalogue import parse_catalogue
from stratoflow.sites.endpoints import endpoint_for_url, parse_endpoints
from stratoflow.store import StoreError

SITES = {
    "sites": [
        {
            "name": "local",
            "kind": "local",
            "cores": 2,
            "memory": 1 << 30,
            "allowed_roots": ["/"],
            "writable_roots": ["/"],
        }
    ]
}


def endpoints(*entries):
    return parse_endpoints(list(entries), parse_catalogue(SITES))


def test_endpoints_expand_their_url_and_keep_their_attributes(tmp_path):
    found = endpoints(
        {
            "name": "disk",
            "site": "local",
            "url": f"{tmp_path}/disk/",
            "attributes": {"type": "DISK", "tier": 1},
        }
    )
    assert found["disk"].url == f"file://{tmp_path}/disk"
    assert found["disk"].attributes == {"type": "DISK", "tier": 1}
    assert endpoint_for_url(f"{tmp_path}/disk/ds/f", found).name == "disk"
    assert endpoint_for_url(f"file://{tmp_path}/disk/../etc/passwd", found) is None
    assert endpoint_for_url(f"file://{tmp_path}/diskette/f", found) is None


def test_the_deepest_endpoint_holds_a_url(tmp_path):
    found = endpoints(
        {"name": "outer", "site": "local", "url": str(tmp_path), "attributes": {"type": "DISK"}},
        {"name": "inner", "site": "local", "url": f"{tmp_path}/in", "attributes": {"type": "TAPE"}},
    )
    assert endpoint_for_url(f"{tmp_path}/in/x", found).name == "inner"
    assert endpoint_for_url(f"{tmp_path}/x", found).name == "outer"


@pytest.mark.parametrize(
    ("entry", "path", "words"),
    [
        (
            {"name": "a b", "site": "local", "url": "/x", "attributes": {"type": "DISK"}},
            "endpoints[0].name",
            "letters",
        ),
        (
            {"name": "local", "site": "local", "url": "/x", "attributes": {"type": "DISK"}},
            "endpoints[0].name",
            "already names",
        ),
        (
            {"name": "e", "site": "nowhere", "url": "/x", "attributes": {"type": "DISK"}},
            "endpoints[0].site",
            "nowhere",
        ),
        (
            {"name": "e", "site": "local", "url": "s3://bucket", "attributes": {"type": "DISK"}},
            "endpoints[0].url",
            "serves no s3://",
        ),
        (
            {"name": "e", "site": "local", "url": "relative", "attributes": {"type": "DISK"}},
            "endpoints[0].url",
            "base URL",
        ),
        (
            {"name": "e", "site": "local", "url": "/x/../etc", "attributes": {"type": "DISK"}},
            "endpoints[0].url",
            "..",
        ),
        (
            {"name": "e", "site": "local", "url": "/x", "attributes": {"tier": 1}},
            "endpoints[0].attributes.type",
            "DISK or TAPE",
        ),
        (
            {
                "name": "e",
                "site": "local",
                "url": "/x",
                "attributes": {"type": "DISK", "cc": "a b"},
            },
            "endpoints[0].attributes.cc",
            "a word",
        ),
        (
            {
                "name": "e",
                "site": "local",
                "url": "/x",
                "attributes": {"type": "DISK"},
                "token": "s",
            },
            "endpoints[0].token",
            "unknown field",
        ),
        ("disk", "endpoints[0]", "mapping"),
    ],
)
def test_bad_endpoints_are_named_by_their_path(entry, path, words):
    with pytest.raises(TemplateError) as err:
        endpoints(entry)
    assert any(i.path == path and words in i.message for i in err.value.issues), err.value


def test_an_endpoint_its_site_may_not_write_to_is_refused_with_the_roots_named(tmp_path):
    sites = {"sites": [{**SITES["sites"][0], "writable_roots": [str(tmp_path / "w")]}]}
    entry = {"name": "e", "site": "local", "url": "/srv/data", "attributes": {"type": "DISK"}}
    with pytest.raises(TemplateError) as err:
        parse_endpoints([entry], parse_catalogue(sites))
    (issue,) = err.value.issues
    assert issue.path == "endpoints[0].url"
    assert "may write to (writable_roots:" in issue.message and "read from" not in issue.message
    inside = {**entry, "url": str(tmp_path / "w" / "disk")}
    assert parse_endpoints([inside], parse_catalogue(sites))["e"].site == "local"


def test_the_shipped_catalogue_declares_disk_and_tape_endpoints(monkeypatch):
    from stratoflow.sites.endpoints import load_endpoints

    monkeypatch.delenv("STRATOFLOW_SITES", raising=False)

    found = load_endpoints()
    assert {e.type for e in found.values()} == {"DISK", "TAPE"}
    assert "local-results" in found


def _file(name: str, size: int = 3, adler32: str = "0000000a") -> NewFile:
    return NewFile(name, f"file:///data/{name}", size, adler32)


def test_registration_is_idempotent_and_adds_only_what_is_new(store):
    first = store.register_dataset("run/1", [_file("a"), _file("b")], endpoint="disk", source="t")
    assert (first.created, first.files_added, first.replicas_added) == (True, 2, 2)
    again = store.register_dataset("run/1", [_file("a"), _file("b")], endpoint="disk", source="t")
    assert (again.created, again.files_added, again.replicas_added) == (False, 0, 0)
    more = store.register_dataset("run/1", [_file("b"), _file("c")], endpoint="disk", source="t")
    assert (more.files_added, more.replicas_added) == (1, 1)
    other = store.register_dataset(
        "run/1", [_file("a")], endpoint="tape", source="t", verified=False
    )
    assert (other.files_added, other.replicas_added) == (0, 1)

    ds = store.dataset("run/1")
    assert [f.name for f in store.dataset_files(ds.id)] == ["a", "b", "c"]
    reps = store.dataset_replicas(ds.id)
    assert len(reps) == 4 and {r.state for r in reps} == {ReplicaState.AVAILABLE}
    assert [r.verified_at is None for r in reps if r.endpoint == "tape"] == [True]
    [row] = store.datasets("run/%")
    assert (row["files"], row["bytes"]) == (3, 9)


def test_a_file_registered_again_with_other_content_is_refused_and_nothing_written(store):
    store.register_dataset("d", [_file("a")], endpoint="disk", source="t")
    with pytest.raises(StoreError, match="a: registered with size 3"):
        store.register_dataset(
            "d", [_file("new"), _file("a", adler32="0000000b")], endpoint="disk", source="t"
        )
    assert [f.name for f in store.dataset_files(store.dataset("d").id)] == ["a"]


def test_endpoints_sync_into_the_store(store):
    store.sync_endpoints(
        [{"name": "disk", "site": "local", "url": "file:///d", "attributes": {"type": "DISK"}}]
    )
    store.sync_endpoints(
        [{"name": "disk", "site": "local", "url": "file:///d2", "attributes": {"type": "DISK"}}]
    )
    [row] = store.storage_endpoints()
    assert row["url"] == "file:///d2"


# -- the CLI ---------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "sf"
    (home / "results" / "x").mkdir(parents=True)
    return home


def cli(home: Path, *args: str, **extra_env: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home.parent / "airflow"),
        "STRATOFLOW_HOME": str(home),
    }
    # The shipped site catalogue and policies (a session fixture may point elsewhere).
    for name in ("STRATOFLOW_STORE_URL", "STRATOFLOW_SITES", "STRATOFLOW_POLICIES"):
        env.pop(name, None)
    env.update(extra_env)
    env["STRATOFLOW_EMBEDDED_DB"] = "sqlite"
    return subprocess.run(
        [sys.executable, "-m", "stratoflow.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_dataset_register_list_show(home):
    for name in ("a.txt", "b.txt"):
        (home / "results" / "x" / name).write_text(name)
    files = [str(home / "results" / "x" / n) for n in ("a.txt", "b.txt")]
    done = cli(home, "dataset", "register", "demo/x", *files, "--meta", "kind=test")
    assert done.returncode == 0, done.stderr
    assert "2 new file(s), 2 new replica(s)" in done.stdout
    again = cli(home, "dataset", "register", "demo/x", *files)
    assert again.returncode == 0 and "nothing new" in again.stdout

    listed = json.loads(cli(home, "dataset", "list", "--json").stdout)
    assert [(d["name"], d["files"], d["meta"]) for d in listed] == [("demo/x", 2, {"kind": "test"})]
    shown = json.loads(cli(home, "dataset", "show", "demo/x", "--json").stdout)
    [rep] = shown["files"][0]["replicas"]
    assert (rep["endpoint"], rep["state"]) == ("local-results", "AVAILABLE")
    assert rep["verified_at"] is not None
    assert shown["files"][0]["adler32"] == f"{zlib.adler32(b'a.txt'):08x}"


def test_dataset_register_refuses_bad_input_naming_the_field(home, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    cases = [
        (["../up", str(outside)], "name:"),
        (["d", str(outside)], "files[0].url:"),
        (["d", str(tmp_path / "missing")], "files[0]:"),
        (["d"], "files:"),
        (["d", str(outside), "--endpoint", "nowhere"], "endpoint: unknown storage endpoint"),
        (["d", str(outside), "--meta", "novalue"], "meta[0]"),
    ]
    for args, expected in cases:
        done = cli(home, "dataset", "register", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert expected in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        yaml.safe_dump([{"url": f"file://{home}/results/f", "size": -1, "adler32": "xyz"}])
    )
    done = cli(home, "dataset", "register", "d", "--manifest", str(manifest))
    assert done.returncode == 2
    assert "files[0].size" in done.stderr and "files[0].adler32" in done.stderr
    assert json.loads(cli(home, "dataset", "list", "--json").stdout) == []


def test_a_manifest_registers_unverified_replicas(home, tmp_path):
    manifest = tmp_path / "m.json"
    manifest.write_text(
        json.dumps(
            [{"name": "f1", "url": f"file://{home}/results/x/f1", "size": 5, "adler32": "062c0215"}]
        )
    )
    done = cli(home, "dataset", "register", "m", "--manifest", str(manifest))
    assert done.returncode == 0, done.stderr
    shown = json.loads(cli(home, "dataset", "show", "m", "--json").stdout)
    assert shown["files"][0]["replicas"][0]["verified_at"] is None


def test_dataset_show_of_an_unknown_name_exits_2(home):
    done = cli(home, "dataset", "show", "nope")
    assert done.returncode == 2 and "no dataset named 'nope'" in done.stderr


def test_policy_list_and_the_dry_run_of_a_policy(home):
    (home / "results" / "x" / "h.json").write_text("{}")
    done = cli(
        home, "dataset", "register", "dimuon_campaign/r1", str(home / "results" / "x" / "h.json")
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(cli(home, "policy", "list", "--json").stdout)
    assert "dimuon-results" in {p["name"] for p in listed}
    plan = cli(home, "policy", "plan", "dimuon-results", "--json")
    assert plan.returncode == 0, plan.stderr
    [dataset] = json.loads(plan.stdout)["datasets"]
    copies = [a for a in dataset["actions"] if a["kind"] == "copy"]
    assert [(a["file"], a["endpoint"]) for a in copies] == [("h.json", "local-disk")]
    assert copies[0]["reason"] == "2 storage copies wanted on type=DISK, 1 held"
    # A dry run changes nothing: the same plan again, and no rule was made.
    assert json.loads(cli(home, "policy", "plan", "dimuon-results", "--json").stdout)[
        "datasets"
    ] == [dataset]
    unknown = cli(home, "policy", "plan", "nope")
    assert unknown.returncode == 2 and "no policy named 'nope'" in unknown.stderr


def test_an_invalid_policy_file_is_reported_by_path(home, tmp_path):
    policies = tmp_path / "policies"
    policies.mkdir()
    (policies / "bad.yaml").write_text(
        yaml.safe_dump({"policies": {"keep": {"datasets": {}, "copies": 0, "storage": "type=SSD"}}})
    )
    done = cli(home, "policy", "list", STRATOFLOW_POLICIES=str(policies))
    assert done.returncode == 2
    assert "bad.yaml: policies.keep.copies: expected an integer from 1 to 100, got 0" in done.stderr
    assert (
        "bad.yaml: policies.keep.storage: storage expression 'type=SSD' matches no" in done.stderr
    )
    assert "Traceback" not in done.stderr


def test_rule_list_show_lock_unlock(home):
    from stratoflow.store import Store

    (home / "results" / "x" / "h.json").write_text("{}")
    done = cli(home, "dataset", "register", "exp/r1", str(home / "results" / "x" / "h.json"))
    assert done.returncode == 0, done.stderr
    with Store.open(f"sqlite:///{home / 'store.db'}") as store:
        rule = store.ensure_rule(
            "keep",
            store.dataset("exp/r1").id,
            copies=2,
            expression="type=DISK",
            lifetime_s=None,
            expires_at=None,
        )
    [listed] = json.loads(cli(home, "rule", "list", "--json").stdout)
    assert (listed["id"], listed["dataset"], listed["state"], listed["locked"]) == (
        rule.id,
        "exp/r1",
        "OK",
        False,
    )
    locked = cli(home, "rule", "lock", str(rule.id))
    assert locked.returncode == 0 and "neither expires" in locked.stdout
    shown = json.loads(cli(home, "rule", "show", str(rule.id)).stdout)
    assert shown["locked"] is True
    assert [(r["file"], r["endpoint"]) for r in shown["replicas"]] == [("h.json", "local-results")]
    assert cli(home, "rule", "unlock", str(rule.id)).returncode == 0
    unknown = cli(home, "rule", "show", "999")
    assert unknown.returncode == 2 and "no rule with id 999" in unknown.stderr
