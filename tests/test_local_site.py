"""The local site with real processes, a real store and a real filesystem."""

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from stratoflow.errors import ChecksumMismatch, SiteError, StagingError
from stratoflow.sites.base import HostRequest, JobSpec
from stratoflow.sites.checksums import file_checksums
from stratoflow.sites.local import LocalCompute, LocalStorage
from stratoflow.sites.local import runner as runner_module
from stratoflow.sites.local.runner import visible
from stratoflow.sites.sandbox import read_json
from stratoflow.store import Store

GIB = 1 << 30
MIB = 1 << 20


@pytest.fixture
def store(tmp_path):
    return Store.open("sqlite:///" + str(tmp_path / "s.db"))


@pytest.fixture
def site(tmp_path):
    return LocalCompute(
        "local",
        {"cores": 4, "memory": 8 * GIB, "workdir": str(tmp_path / "site"), "kill_grace_s": 1},
    )


@pytest.fixture
def alloc(site, store):
    a = site.provision("dep1", [HostRequest("workers", count=1, num_cpus=2, mem_bytes=GIB)], store)
    yield a
    site.teardown("dep1", store, a)


def wait(site, alloc, handle, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        st = site.job_status(alloc, handle)
        if st.done:
            return st
        time.sleep(0.05)
    raise AssertionError(f"{handle} still running after {timeout} s")


def py(code: str) -> list[str]:
    return ["python", "-c", code]


def attempts(alloc, step, index=0):
    return sorted(p.name for p in (Path(alloc.workdir) / "jobs" / step / str(index)).glob("a*"))


def test_job_runs_and_commits_outputs(site, alloc, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SECRET", "postgres://user:pw@db")  # must not leak
    code = (
        "import os, sys\n"
        "out = sys.argv[1]\n"
        "assert out == os.environ['STRATOFLOW_OUTDIR']\n"
        "open(os.path.join(out, 'result.txt'), 'w').write(open('artifacts/hello.txt').read())\n"
        "print('python', sys.executable)\n"
        "print('inputs', os.environ['STRATOFLOW_INPUTS'])\n"
        "print('cwd', os.getcwd())\n"
        "print('secret', os.environ.get('AIRFLOW_CONN_SECRET'))\n"
        "print('custom', os.environ['MY_VAR'])\n"
    )
    job = JobSpec(
        "fill",
        0,
        py(code) + ["{outdir}"],
        inputs=["/a", "/b"],
        env={"MY_VAR": "42"},
        artifacts={"hello.txt": b"hello"},
    )
    handle = site.start_job(alloc, job)
    st = wait(site, alloc, handle)
    log = list(site.job_log(alloc, handle))
    assert st.state == "succeeded", (st, log)
    assert st.exit_code == 0 and st.core_seconds > 0
    final = Path(alloc.workdir) / "outputs" / "fill" / "0"
    assert st.outdir == str(final)
    assert (final / "result.txt").read_text() == "hello"
    assert f"python {Path(sys.executable).parent}" in "\n".join(log)
    assert f"inputs /a{os.pathsep}/b" in log
    assert f"cwd {alloc.workdir}" in log
    assert "secret None" in log and "custom 42" in log
    assert not list(Path(alloc.workdir).glob("jobs/fill/0/*/out.tmp"))
    status = read_json(Path(alloc.workdir) / "jobs/fill/0/attempt-1/status.json")
    assert status["exit_code"] == 0 and status["ended"] >= status["started"]


def test_nonzero_exit_reports_log_tail_and_commits_nothing(site, alloc):
    handle = site.start_job(alloc, JobSpec("bad", 3, "echo line1; echo boom >&2; exit 3"))
    st = wait(site, alloc, handle)
    assert st.state == "failed" and st.exit_code == 3
    assert st.reason.startswith("exit code 3:") and "line1" in st.reason and "boom" in st.reason
    assert not (Path(alloc.workdir) / "outputs" / "bad" / "3").exists()
    assert not list(Path(alloc.workdir).glob("jobs/bad/3/*/out.tmp"))


def test_sigkill_mid_run_then_retry_commits_exactly_once(site, alloc, tmp_path):
    marker = tmp_path / "killed-once"
    code = (
        "import os, sys, pathlib\n"
        "out = pathlib.Path(os.environ['STRATOFLOW_OUTDIR'])\n"
        "(out / 'part-1').write_text('first half')\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    os.kill(os.getpid(), 9)\n"
        "(out / 'part-2').write_text('second half')\n"
    )
    job = JobSpec("analyse", 1, py(code))
    first = site.start_job(alloc, job)
    st = wait(site, alloc, first)
    final = Path(alloc.workdir) / "outputs" / "analyse" / "1"
    assert st.state == "failed" and st.reason == "killed by SIGKILL"
    assert not final.exists()

    second = site.start_job(alloc, job)
    assert second != first
    st = wait(site, alloc, second)
    assert st.state == "succeeded"
    assert sorted(p.name for p in final.iterdir()) == ["part-1", "part-2"]

    # Once committed, starting the job again runs nothing and reports success.
    third = site.start_job(alloc, job)
    assert third == second and site.job_status(alloc, third).state == "succeeded"
    assert attempts(alloc, "analyse", 1) == ["attempt-1", "attempt-2"]


def test_timeout_escalates_to_sigkill(site, alloc):
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(60)"
    t0 = time.time()
    handle = site.start_job(alloc, JobSpec("slow", 0, py(code), timeout_s=0.5))
    st = wait(site, alloc, handle)
    assert st.state == "failed" and st.reason == "timed out after 0.5 s"
    assert time.time() - t0 < 8  # 0.5 s + 1 s grace + start-up, not 60 s
    assert not (Path(alloc.workdir) / "outputs" / "slow").exists()


def test_memory_limit_stops_a_greedy_job(site, alloc):
    code = "x = []\nwhile True:\n    x.append(b'x' * (64 << 20))"  # touches every page
    handle = site.start_job(alloc, JobSpec("greedy", 0, py(code), mem_bytes=256 * MIB))
    st = wait(site, alloc, handle)
    assert st.state == "failed"
    assert "memory limit 256 MiB exceeded" in st.reason


def test_memory_limit_leaves_room_for_numpy_and_matplotlib(site, alloc):
    # The honest floor: the scientific stack maps far more than it touches.
    code = (
        "import numpy, matplotlib\nmatplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
        "a = numpy.ones(10_000_000)\nplt.plot(a[:100]); print(a.sum())"
    )
    handle = site.start_job(alloc, JobSpec("sci", 0, py(code), mem_bytes=256 * MIB))
    st = wait(site, alloc, handle, timeout=30)
    assert st.state == "succeeded", st.reason


def test_running_job_is_adopted_then_cancelled(site, alloc):
    job = JobSpec("wait", 0, py("import time\ntime.sleep(60)"))
    first = site.start_job(alloc, job)
    assert site.job_status(alloc, first).state == "running"
    assert site.start_job(alloc, job) == first
    assert attempts(alloc, "wait") == ["attempt-1"]
    site.cancel_job(alloc, first)
    st = wait(site, alloc, first, timeout=5)
    assert st.state == "failed" and st.reason == "cancelled"
    assert not (Path(alloc.workdir) / "outputs" / "wait").exists()


def test_lost_runner_is_reported_and_its_job_killed(site, alloc):
    handle = site.start_job(alloc, JobSpec("lost", 0, py("import time\ntime.sleep(60)")))
    attempt = Path(alloc.workdir) / "jobs/lost/0/attempt-1"
    deadline = time.time() + 10
    while not (attempt / "job.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    runner, job = read_json(attempt / "runner.json"), read_json(attempt / "job.json")
    os.kill(runner["pid"], signal.SIGKILL)
    time.sleep(0.2)
    st = wait(site, alloc, handle)
    assert st.state == "failed" and st.reason.startswith("runner lost")
    time.sleep(0.2)
    assert not visible(job)
    # A new start runs a fresh attempt rather than adopting the dead one.
    assert site.start_job(alloc, JobSpec("lost", 0, py("pass"))).endswith("attempt-2")


# A Celery worker in a container of its own: the job is started in another PID namespace,
# which this process (a triggerer, another worker) cannot see in /proc.
IN_NAMESPACE = """
import json, sys, time
from stratoflow.sites.base import Allocation, JobSpec
from stratoflow.sites.local import LocalCompute
config, alloc, job = (json.loads(a) for a in sys.argv[1:])
site = LocalCompute("local", config)
print(site.start_job(Allocation(**alloc), JobSpec(**job)), flush=True)
time.sleep(600)  # the namespace's PID 1: its processes live as long as it does
"""


def start_in_another_namespace(site, alloc, job: dict):
    import json
    import shutil
    import subprocess

    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare(1) for a PID namespace")
    proc = subprocess.Popen(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child", sys.executable, "-c"]
        + [IN_NAMESPACE, json.dumps(site.config), json.dumps(alloc.to_dict()), json.dumps(job)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    handle = proc.stdout.readline().strip()
    assert handle, "the job did not start in its namespace"
    return proc, handle


def test_a_job_in_another_pid_namespace_is_followed_cancelled_and_lost(site, alloc, monkeypatch):
    quick = {"step": "ns", "index": 0, "command": py("import time\ntime.sleep(2)")}
    proc, handle = start_in_another_namespace(site, alloc, quick)
    try:
        job = read_json(Path(alloc.workdir) / "jobs/ns/0/attempt-1/runner.json")
        assert not visible(job)  # its pid means nothing here: the heartbeat tells
        assert site.job_status(alloc, handle).state == "running"
        assert site.start_job(alloc, JobSpec("ns", 0, quick["command"])) == handle  # adopted
        assert wait(site, alloc, handle, timeout=30).state == "succeeded"

        slow = {"step": "slow", "index": 0, "command": py("import time\ntime.sleep(60)")}
        other, cancelled = start_in_another_namespace(site, alloc, slow)
        try:
            site.cancel_job(alloc, cancelled)  # only the marker reaches it
            assert wait(site, alloc, cancelled, timeout=10).reason == "cancelled"
        finally:
            os.killpg(other.pid, signal.SIGKILL)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)

    # A worker whose container dies takes its jobs with it: once the heartbeat is older
    # than the lease, the attempt is lost and a retry starts afresh.
    monkeypatch.setattr(runner_module, "LEASE_S", 2.0)
    dying = {"step": "dying", "index": 0, "command": py("import time\ntime.sleep(60)")}
    ns, lost = start_in_another_namespace(site, alloc, dying)
    assert site.job_status(alloc, lost).state == "running"
    os.killpg(ns.pid, signal.SIGKILL)
    ns.wait(timeout=10)
    st = wait(site, alloc, lost, timeout=10)
    assert st.state == "failed" and st.reason.startswith("runner lost")
    assert site.start_job(alloc, JobSpec("dying", 0, py("pass"))).endswith("attempt-2")


def test_capacity_is_shared_between_deployments(site, store, tmp_path):
    two = [HostRequest("workers", count=2, num_cpus=2, mem_bytes=GIB)]
    a = site.provision("dep-a", two, store)
    assert a.cores == 4 and Path(a.workdir).is_dir()
    # Provisioning again adopts: same sandbox, reservation not doubled.
    assert site.provision("dep-a", two, store).workdir == a.workdir
    assert store.reserved("local")["cores"] == 4

    with pytest.raises(SiteError, match="local: insufficient capacity"):
        site.provision("dep-b", [HostRequest("workers", num_cpus=1)], store)
    assert not site.sandbox("dep-b").exists()
    assert all(r.state == "deleted" for r in store.resources("dep-b", include_deleted=True))

    with pytest.raises(SiteError, match="can never fit"):
        site.provision("dep-c", [HostRequest("workers", count=5, num_cpus=1)], store)
    assert not site.sandbox("dep-c").exists() and store.resources("dep-c") == []

    site.teardown("dep-a", store, a)
    b = site.provision("dep-b", [HostRequest("workers", num_cpus=1)], store)  # retry works
    assert [r.state for r in store.resources("dep-b")] == ["created"]
    site.teardown("dep-b", store, b)
    assert store.reserved("local")["cores"] == 0


def test_teardown_kills_jobs_removes_everything_and_is_idempotent(site, store):
    a = site.provision("dep-t", [HostRequest("workers", num_cpus=1)], store)
    handle = site.start_job(a, JobSpec("long", 0, py("import time\ntime.sleep(60)")))
    attempt = Path(a.workdir) / "jobs/long/0/attempt-1"
    deadline = time.time() + 10
    while not (attempt / "job.json").exists() and time.time() < deadline:
        time.sleep(0.05)
    job, runner = read_json(attempt / "job.json"), read_json(attempt / "runner.json")
    assert handle and visible(job)

    site.teardown("dep-t", store, a)
    time.sleep(0.2)
    assert not visible(job) and not visible(runner)
    assert not Path(a.workdir).exists()
    assert store.resources("dep-t") == []
    assert store.reserved("local")["cores"] == 0
    site.teardown("dep-t", store, a)
    site.teardown("dep-t", store)
    site.teardown("never-provisioned", store)
    with pytest.raises(SiteError, match="is gone"):  # no job may recreate the sandbox
        site.start_job(a, JobSpec("late", 0, "true"))
    assert not Path(a.workdir).exists()


def test_unsafe_names_are_refused(site, store, alloc):
    with pytest.raises(SiteError, match="invalid deployment id"):
        site.provision("../evil", [], store)
    with pytest.raises(SiteError, match="invalid step"):
        site.start_job(alloc, JobSpec("../x", 0, "true"))
    with pytest.raises(SiteError, match="malformed job handle"):
        site.job_status(alloc, "../../x/0/attempt-1")


# ---- staging ---------------------------------------------------------------------------


@pytest.fixture
def storage(tmp_path):
    (tmp_path / "data").mkdir()
    return LocalStorage(
        "local",
        {
            "workdir": str(tmp_path / "site"),
            "allowed_roots": [str(tmp_path / "data")],
            "writable_roots": [str(tmp_path / "dest")],
        },
    )


def test_copy_verifies_and_is_idempotent(storage, tmp_path):
    src = tmp_path / "data" / "in.bin"
    src.write_bytes(os.urandom(3 * MIB + 17))
    size, adler, sha = file_checksums(src)
    dest = tmp_path / "dest" / "sub" / "in.bin"
    staged = storage.copy(
        src.as_uri(), str(dest), adler32="ADLER32:" + adler.upper(), sha256=sha, size=size
    )
    assert (staged.size, staged.adler32, staged.sha256) == (size, adler, sha)
    assert staged.url == dest.as_uri() and dest.read_bytes() == src.read_bytes()
    # A retried copy finds a verified file in place and returns it.
    again = storage.copy(str(src), dest.as_uri(), adler32=adler)
    assert again == staged
    # A different file in the way is an error unless overwrite is asked for.
    dest.write_bytes(b"other")
    with pytest.raises(StagingError, match="exists and does not match"):
        storage.copy(str(src), str(dest), sha256=sha)
    storage.copy(str(src), str(dest), sha256=sha, overwrite=True)
    assert dest.read_bytes() == src.read_bytes()
    assert not list(dest.parent.glob("*.part-*"))


def test_corrupted_source_leaves_nothing_at_dest(storage, tmp_path):
    src = tmp_path / "data" / "in.bin"
    src.write_bytes(os.urandom(MIB))
    size, adler, sha = file_checksums(src)
    raw = bytearray(src.read_bytes())
    raw[1234] ^= 0x01  # one flipped bit
    src.write_bytes(bytes(raw))
    dest = tmp_path / "dest" / "in.bin"
    with pytest.raises(ChecksumMismatch, match="adler32 expected") as e:
        storage.copy(str(src), str(dest), adler32=adler, sha256=sha, size=size)
    assert str(src) in str(e.value)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_sources_outside_allowed_roots_are_refused(storage, tmp_path):
    dest = str(tmp_path / "dest" / "x")
    with pytest.raises(StagingError, match="/etc/passwd: outside the directories"):
        storage.copy("/etc/passwd", dest)
    with pytest.raises(StagingError, match="outside the directories"):
        storage.copy("file:///etc/passwd", dest)
    link = tmp_path / "data" / "innocent"
    link.symlink_to("/etc/passwd")  # a link inside a root still points outside it
    with pytest.raises(StagingError, match="outside the directories"):
        storage.copy(str(link), dest)
    with pytest.raises(StagingError, match=r"\.\./\.\./etc/passwd: outside"):
        storage.copy(str(tmp_path / "data" / "../../etc/passwd"), dest)
    src = tmp_path / "data" / "ok"
    src.write_text("ok")
    with pytest.raises(StagingError, match="may write to"):
        storage.copy(str(src), str(tmp_path / "elsewhere" / "x"))
    with pytest.raises(StagingError, match="file:// URLs only"):
        storage.copy("http://example.org/x", dest)
    with pytest.raises(StagingError, match="must be absolute"):
        storage.copy("relative/path", dest)
    assert not (tmp_path / "dest").exists()


def test_storage_reads_back_checksums_and_deletes_within_its_roots(tmp_path):
    from stratoflow.errors import StagingRefused

    root = tmp_path / "endpoint"
    root.mkdir()
    storage = LocalStorage(
        "local",
        {
            "workdir": str(tmp_path / "work"),
            "allowed_roots": [str(root)],
            "writable_roots": [str(root)],
        },
    )
    f = root / "ds" / "a.csv"
    f.parent.mkdir()
    f.write_bytes(b"x" * 1000)
    found = storage.checksums(f.as_uri())
    assert (found.size, found.adler32, found.sha256) == file_checksums(f)
    with pytest.raises(FileNotFoundError):
        storage.checksums((root / "ds" / "gone.csv").as_uri())
    with pytest.raises(StagingRefused):
        storage.checksums("/etc/passwd")
    with pytest.raises(StagingRefused):
        storage.delete((tmp_path / "outside").as_uri())
    storage.delete(f.as_uri())
    storage.delete(f.as_uri())  # gone already is not an error
    assert not f.exists()
