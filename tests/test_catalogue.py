import pytest
import yaml

from stratoflow.config import include_dir
from stratoflow.errors import TemplateError
from stratoflow.sites.catalogue import compute_for, load_catalogue, storage_for
from stratoflow.sites.local import LocalCompute, LocalStorage


def write(tmp_path, doc):
    p = tmp_path / "sites.yaml"
    p.write_text(yaml.safe_dump(doc))
    return p


def test_shipped_catalogue_loads():
    cat = load_catalogue(include_dir() / "sites.yaml")
    assert list(cat) == ["local"]
    compute = compute_for(cat["local"])
    assert isinstance(compute, LocalCompute) and compute.kind == "local"
    assert compute.cfg.cores >= 1 and compute.cfg.memory > 0
    assert include_dir().resolve() in compute.cfg.allowed_roots


def test_default_path_from_env(tmp_path, monkeypatch):
    p = write(tmp_path, {"sites": [{"name": "mine", "kind": "local", "cores": 3}]})
    monkeypatch.setenv("STRATOFLOW_SITES", str(p))
    cat = load_catalogue()
    assert compute_for(cat["mine"]).cfg.cores == 3


def test_placeholders_and_workdir_default(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATOFLOW_HOME", str(tmp_path / "home"))
    p = write(
        tmp_path,
        {
            "sites": [
                {"name": "local", "kind": "local", "allowed_roots": ["{include}", "{home}/data"]}
            ]
        },
    )
    compute = compute_for(load_catalogue(p)["local"])
    assert compute.cfg.workdir == (tmp_path / "home" / "sites" / "local").resolve()
    assert (tmp_path / "home" / "data").resolve() in compute.cfg.allowed_roots


def test_errors_name_the_field(tmp_path):
    p = write(
        tmp_path,
        {
            "sites": [
                {"name": "a", "kind": "foo"},
                {"name": "b", "kind": "local", "cores": "many", "allowed_roots": "/data"},
                {"name": "b", "kind": "local"},
                {"name": "Bad Name", "kind": "local", "colour": "red"},
                "just a string",
            ]
        },
    )
    with pytest.raises(TemplateError) as e:
        load_catalogue(p)
    msg = str(e.value)
    expected = "ec2, fts3, kubernetes, local, onedata, openstack, s3"
    assert f"sites[0].kind: unknown site kind 'foo'; expected one of {expected}" in msg
    assert "sites[1].cores: expected a positive integer or 'auto'" in msg
    assert "sites[1].allowed_roots: expected a list" in msg
    assert "sites[2].name: duplicate site name 'b'" in msg
    assert "sites[3].name:" in msg and "sites[3].colour: unknown field" in msg
    assert "sites[4]: expected a mapping" in msg


def test_not_a_catalogue(tmp_path):
    p = tmp_path / "sites.yaml"
    p.write_text("- just\n- a list\n")
    with pytest.raises(TemplateError, match="'sites' list"):
        load_catalogue(p)
    with pytest.raises(TemplateError, match="cannot read site catalogue"):
        load_catalogue(tmp_path / "missing.yaml")


def test_storage_registry(tmp_path):
    cat = load_catalogue(write(tmp_path, {"sites": [{"name": "local", "kind": "local"}]}))
    assert isinstance(storage_for("file:///tmp/x", cat), LocalStorage)
    assert isinstance(storage_for("/tmp/x", cat), LocalStorage)
    with pytest.raises(TemplateError, match="no storage backend for scheme 'gopher'"):
        storage_for("gopher://example.org/x", cat)
    with pytest.raises(TemplateError, match="no site of kind local or kubernetes"):
        storage_for("file:///tmp/x", {})


def test_a_secret_in_the_catalogue_is_refused_with_where_it_belongs(tmp_path):
    p = write(
        tmp_path,
        {
            "sites": [
                {
                    "name": "os",
                    "kind": "openstack",
                    "conn_id": "c",
                    "image": "i",
                    "password": "hunter2-pw",
                },
                {"name": "aws", "kind": "s3", "conn_id": "c", "aws_secret_access_key": "wJalr-key"},
            ]
        },
    )
    with pytest.raises(TemplateError) as e:
        load_catalogue(p)
    lines = str(e.value).splitlines()
    assert lines == [
        "sites[0].password: secrets do not belong in the site catalogue; put it in the"
        " Airflow Connection the site names with conn_id",
        "sites[1].aws_secret_access_key: secrets do not belong in the site catalogue; put it"
        " in the Airflow Connection the site names with conn_id",
    ]
    assert "hunter2-pw" not in str(e.value) and "wJalr-key" not in str(e.value)


def test_storage_services_run_no_jobs(tmp_path, monkeypatch):
    from stratoflow.errors import SiteError
    from stratoflow.execution.placement import site_offers
    from stratoflow.sites import catalogue

    p = write(
        tmp_path,
        {
            "sites": [
                {"name": "local", "kind": "local", "cores": 2},
                {"name": "store", "kind": "s3", "conn_id": "c"},
                {"name": "od", "kind": "onedata", "conn_id": "c"},
            ]
        },
    )
    monkeypatch.setenv("STRATOFLOW_SITES", str(p))
    catalogue.catalogue.cache_clear()
    try:
        assert catalogue.compute_sites() == ["local"]  # the reaper's sites
        offers = site_offers()
        assert not offers["store"].runs_jobs and offers["local"].runs_jobs
        with pytest.raises(SiteError, match="'od' is a OneData space provider .* cannot"):
            catalogue.compute_for_site("od")
    finally:
        catalogue.catalogue.cache_clear()


def test_old_retry_keys_name_their_new_name(tmp_path):
    p = write(
        tmp_path,
        {
            "sites": [
                {"name": "os", "kind": "openstack", "conn_id": "c", "image": "i", "api_retries": 3},
                {"name": "k", "kind": "kubernetes", "conn_id": "c", "api_backoff_s": 0.1},
            ]
        },
    )
    with pytest.raises(TemplateError) as e:
        load_catalogue(p)
    assert str(e.value).splitlines() == [
        "sites[0].api_retries: renamed to retry_attempts (same meaning)",
        "sites[1].api_backoff_s: renamed to retry_backoff_s (same meaning)",
    ]
