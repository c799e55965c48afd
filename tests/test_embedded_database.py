"""The embedded PostgreSQL from the wheel, in a home of its own: it starts over a crash's
stale pid file, keeps its data across stop and start, and takes over the SQLite store of
a home made by an earlier version, once, or refuses with a clear message."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stratoflow.store import Store


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    from stratoflow.embedded import database

    home = tmp_path / "sf"
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "af"))
    monkeypatch.setenv("STRATOFLOW_HOME", str(home))
    monkeypatch.delenv("STRATOFLOW_STORE_URL", raising=False)
    monkeypatch.delenv("STRATOFLOW_EMBEDDED_DB", raising=False)
    try:
        yield home
    finally:
        database.stop()


def old_sqlite_store(home: Path, runs: int) -> Path:
    """A store as an earlier version left it: deployments, their events and resources."""
    path = home / "store.db"
    with Store.open(f"sqlite:///{path}") as old:
        old.save_plan("a" * 64, "demo", "demo_aaaa", {"steps": []}, "tosca: x\n")
        for i in range(runs):
            d = old.create_deployment("demo_aaaa", f"run{i}", "a" * 64, {"i": i}, owner="ann")
            old.set_status(d.id, "CREATE_COMPLETE" if i % 2 else "CREATE_FAILED", reason="r")
            old.record_step_event(d.id, "job", "retry", "boom", try_number=1)
    return path


def test_start_stop_start_keeps_the_data_and_survives_a_stale_pid_file(home):
    from stratoflow.embedded import database, start_database

    start_database()
    assert database.is_running()
    with Store.open() as store:
        assert store.dialect == "postgresql"
        store.save_plan("b" * 64, "p", "p_bbbb", {"steps": []}, "tosca: y\n")
        kept = store.create_deployment("p_bbbb", "r1", "b" * 64, {}, owner="bo").id
    assert database.stop() is True and not database.is_running()
    # What a crash leaves: a pid file naming a process that is gone.
    (home / "postgres" / "postmaster.pid").write_text("999999\n")
    start_database()
    with Store.open() as store:
        assert store.get_deployment(kept).owner == "bo"


def test_an_earlier_sqlite_store_is_copied_once(home, capsys):
    from stratoflow.embedded import legacy, start_database

    old = old_sqlite_store(home, runs=3)
    with Store.open(f"sqlite:///{old}") as s:
        before = {d.id: (d.status, d.owner, d.inputs) for d in s.list_deployments()}
        events = {d: s.step_events(d) for d in before}
    start_database()
    assert "copied 3 deployments" in capsys.readouterr().out
    assert not old.exists() and (home / f"store.db{legacy.MIGRATED_SUFFIX}").exists()
    with Store.open() as store:
        assert store.dialect == "postgresql"
        after = {d.id: (d.status, d.owner, d.inputs) for d in store.list_deployments()}
        assert after == before
        assert {d: store.step_events(d) for d in before} == events
        # The serial ids go on after the copied ones.
        new = store.create_deployment("demo_aaaa", "run-new", "a" * 64, {}, owner="ann")
        store.record_step_event(new.id, "job", "retry", "again", try_number=1)
    start_database()  # nothing left to copy
    assert "copied" not in capsys.readouterr().out


def test_an_earlier_store_is_never_merged_into_a_used_one(home):
    from stratoflow.embedded import legacy, start_database

    start_database()
    with Store.open() as store:
        store.save_plan("c" * 64, "p", "p_cccc", {"steps": []}, "tosca: z\n")
        store.create_deployment("p_cccc", "r1", "c" * 64, {}, owner="cy")
    old = old_sqlite_store(home, runs=1)
    with pytest.raises(legacy.LegacyHomeError, match="already holds deployments") as refused:
        start_database()
    assert "STRATOFLOW_EMBEDDED_DB=sqlite" in str(refused.value)
    assert old.exists()  # untouched
    with Store.open() as store:
        assert len(store.list_deployments()) == 1


def test_airflow_db_migrate_runs_only_when_the_database_may_be_behind(tmp_path: Path):
    import sqlite3
    import sys

    from stratoflow.embedded import airflow_db

    db = tmp_path / "airflow.db"
    url = f"sqlite:///{db}"
    log = tmp_path / "ran"
    # Stands in for `airflow db migrate`: records that it ran, sets the revision.
    script = (
        "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
        " c.execute('CREATE TABLE IF NOT EXISTS alembic_version (version_num TEXT)');"
        " c.execute('DELETE FROM alembic_version');"
        " c.execute(\"INSERT INTO alembic_version VALUES ('rev2')\"); c.commit();"
        " open(sys.argv[2], 'a').write('ran\\n')"
    )
    command = [sys.executable, "-c", script, str(db), str(log)]

    def runs() -> int:
        return len(log.read_text().splitlines()) if log.exists() else 0

    assert airflow_db.migrate(tmp_path, url, command, {}) is True
    assert airflow_db.migrate(tmp_path, url, command, {}) is False  # current: skipped
    assert runs() == 1
    with sqlite3.connect(db) as c:  # the database went back (restored, reset): migrate
        c.execute("UPDATE alembic_version SET version_num = 'rev1'")
    assert airflow_db.migrate(tmp_path, url, command, {}) is True
    db.unlink()  # a new database
    assert airflow_db.migrate(tmp_path, url, command, {}) is True
    assert runs() == 3

    failing = [sys.executable, "-c", "import sys; sys.exit('no server')"]
    (tmp_path / airflow_db.MARKER).unlink()
    with pytest.raises(RuntimeError, match="airflow db migrate failed .*no server"):
        airflow_db.migrate(tmp_path, url, failing, {})
