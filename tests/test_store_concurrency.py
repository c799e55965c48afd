"""Eight spawned processes racing on one store, as LocalExecutor task processes do.

One batch of processes runs every scenario in turn on every backend (a barrier lines them
up before each), because starting a Python process that imports SQLAlchemy costs about a
second: a batch per scenario or backend would make this suite slow.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import traceback
from typing import Any

import pytest
from conftest import STORE_BACKENDS, fresh_store_url

N = 8
CAPACITY_CORES = 4
EVENTS_PER_WORKER = 10
ADMISSION_ROUNDS = 15
QUEUE_CORES = 3  # the queued site's capacity; N deployments of 1 core race for it


def _scenarios(url: str, i: int, sync: Any) -> dict[str, Any]:
    from stratoflow.store import Store

    out: dict[str, Any] = {}
    sync()  # everyone is imported and ready: the first open of a fresh database races
    store = Store.open(url)
    out["migrated"] = store.migrated

    sync()
    store.save_plan("f" * 64, "race", "sf_race", {"steps": []}, "t")
    dep = store.get_or_create_deployment("dag-race", "run-1", "f" * 64, {"who": i})
    out["deployment"] = dep.id

    sync()
    rec = store.intend_resource(dep.id, "local", "sandbox", "node", 0, data={"who": i})
    out["resource"] = (rec.id, rec.key)

    sync()
    out["granted"] = store.reserve("local", f"dep-{i}", 1, 1 << 20, CAPACITY_CORES, 1 << 40)

    out["admission"] = _admission_rounds(store, i, sync)

    sync()
    for n in range(EVENTS_PER_WORKER):
        store.record_step_event(dep.id, f"step-{i}", "retry", str(n), try_number=n + 1)
        store.add_usage(dep.id, "local", f"step-{i}", core_seconds=0.5, bytes_moved=10)
    store.close()
    return out


def _admission_rounds(store: Any, i: int, sync: Any) -> list[dict[str, Any]]:
    """Each round all N join one site's queue at once and race to admit themselves; the
    ones left waiting try again, QUEUE_CORES passes in all. Worker 0 then records what
    the site holds."""
    from stratoflow.admission import Admitted, SiteRoom

    rooms = {"q": SiteRoom("q", float(QUEUE_CORES), 1 << 40)}
    rounds = []
    for n in range(ADMISSION_ROUNDS):
        me = f"r{n}-w{i}"
        sync()
        store.enqueue(
            me,
            owner=f"o{i % 3}",
            priority=0,
            candidates=["q"],
            cores=1,
            mem_bytes=1,
            timeout_s=60,
        )
        sync()
        # While room is left, a pass in which everyone still waiting tries admits at least
        # one (the order only changes on an admission), so QUEUE_CORES passes fill the site.
        verdict = None
        for _ in range(QUEUE_CORES):
            if not isinstance(verdict, Admitted):
                verdict = store.try_admit(me, rooms)
            sync()
        held = store.reserved("q") if i == 0 else None
        sync()
        store.release("q", me)
        store.leave_queue(me, "round over")
        rounds.append({"admitted": isinstance(verdict, Admitted), "held": held})
    return rounds


def _worker(urls: dict[str, str], i: int, barrier: Any, results: Any) -> None:
    outs: dict[str, Any] = {}
    try:
        import stratoflow.store  # noqa: F401 - import before the first barrier, not in the race

        for backend, url in urls.items():
            outs[backend] = _scenarios(url, i, lambda: barrier.wait(timeout=120))
    except Exception:
        outs["error"] = traceback.format_exc()
        barrier.abort()  # release the others rather than let them wait for the timeout
    results.put((i, outs))


def _run_workers(urls: dict[str, str]) -> dict[int, dict[str, Any]]:
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(N)
    results = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(urls, i, barrier, results)) for i in range(N)]
    for p in procs:
        p.start()
    outs: dict[int, dict[str, Any]] = {}
    try:
        for _ in range(N):
            i, out = results.get(timeout=180)
            outs[i] = out
    except queue.Empty:
        pytest.fail(f"only {len(outs)} of {N} workers reported")
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [o["error"] for o in outs.values() if "error" in o]
    assert not errors, "\n\n".join(errors)
    return outs


@pytest.fixture(scope="module")
def _races(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One batch of workers for all backends (spawning them is the slow part)."""
    from stratoflow.store import Store

    # Only the backends that selected tests need (e.g. under -m "not postgres").
    wanted = {
        item.callspec.params.get("race")
        for item in request.session.items
        if item.module is request.module and hasattr(item, "callspec")
    }
    urls: dict[str, str] = {}
    unavailable: dict[str, BaseException] = {}
    for backend in ("sqlite", "postgres"):
        if backend not in wanted:
            continue
        try:
            urls[backend] = fresh_store_url(request, backend, tmp_path_factory.mktemp(backend))
        except (pytest.skip.Exception, pytest.fail.Exception) as e:
            unavailable[backend] = e  # raised again by that backend's tests only
    if not urls:
        yield {}, unavailable
        return
    outs = _run_workers(urls)
    stores = {b: Store.open(url) for b, url in urls.items()}
    yield {b: ({i: o[b] for i, o in outs.items()}, stores[b]) for b in urls}, unavailable
    for s in stores.values():
        s.close()


@pytest.fixture(params=STORE_BACKENDS)
def race(request: pytest.FixtureRequest, _races):
    races, unavailable = _races
    if request.param in unavailable:
        raise unavailable[request.param]
    return races[request.param]


def test_first_open_migrates_once(race):
    outs, store = race
    assert sorted(o["migrated"] for o in outs.values()) == [False] * (N - 1) + [True]
    from sqlalchemy import text

    from stratoflow.store.migrate import HEAD_REVISION
    from stratoflow.store.schema import VERSION_TABLE

    with store.engine.connect() as conn:
        rows = conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    assert [r[0] for r in rows] == [HEAD_REVISION]


def test_one_deployment_per_run(race):
    outs, store = race
    ids = {o["deployment"] for o in outs.values()}
    assert len(ids) == 1
    assert [d.id for d in store.list_deployments()] == list(ids)
    assert len(store.list_plans()) == 1


def test_one_resource_per_key(race):
    outs, store = race
    assert len({o["resource"] for o in outs.values()}) == 1
    (dep_id,) = {o["deployment"] for o in outs.values()}
    assert len(store.resources(dep_id, include_deleted=True)) == 1


def test_reservations_never_exceed_capacity(race):
    outs, store = race
    granted = [i for i, o in outs.items() if o["granted"]]
    assert len(granted) == CAPACITY_CORES
    assert store.reserved("local") == {
        "cores": float(CAPACITY_CORES),
        "mem_bytes": CAPACITY_CORES << 20,
        "deployments": CAPACITY_CORES,
    }


def test_concurrent_appends_all_land(race):
    outs, store = race
    (dep_id,) = {o["deployment"] for o in outs.values()}
    events = store.step_events(dep_id)
    assert len(events) == N * EVENTS_PER_WORKER
    for i in range(N):  # each writer's own events keep their order
        mine = [int(e["message"]) for e in events if e["step"] == f"step-{i}"]
        assert mine == list(range(EVENTS_PER_WORKER))
    assert store.usage_totals(dep_id) == {
        "core_seconds": 0.5 * N * EVENTS_PER_WORKER,
        "bytes_moved": 10 * N * EVENTS_PER_WORKER,
    }


def test_admission_never_overcommits_a_site(race):
    outs, store = race
    for n in range(ADMISSION_ROUNDS):
        admitted = [i for i, o in outs.items() if o["admission"][n]["admitted"]]
        held = outs[0]["admission"][n]["held"]
        # The site is filled, never beyond, and what it holds is exactly who was admitted.
        assert len(admitted) == min(N, QUEUE_CORES), (n, admitted)
        assert held["cores"] == len(admitted) == held["deployments"], (n, held)
    assert store.reserved("q")["deployments"] == 0
