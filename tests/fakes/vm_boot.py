"""What a fake cloud does when one of its VMs boots: run the user data's Stratoflow agent.

A real VM runs cloud-init, which writes ``/etc/stratoflow/agent.json`` and starts
``stratoflow-agent`` from the image. Here each VM is a directory and a process: the agent
configuration is taken from the user data's ``write_files`` exactly as cloud-init would
write it, with two deviations a single test host forces: the workdir moves under the VM's
directory, and the agent listens on the VM's own loopback address (every 127.x.y.z is
local on Linux, so each VM keeps a distinct address and the real port).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import yaml

AGENT_CONFIG = "/etc/stratoflow/agent.json"
# Booters made one after another in one process (one per test module on an xdist worker)
# must not reuse each other's addresses: an agent still stopping could answer the next.
_BOOTERS = itertools.count()
_NETS = 234  # second octets 16..249
DEFAULT_AGENT_PORT = 8765


def _second_octet(seed: int) -> int:
    """A second octet no other booter alive in this test run uses.

    xdist workers run at once: each takes every n-th octet from a start shared by the
    run (its test-run id), so two workers never share one. A worker's booters take
    that worker's octets in turn; one wraps onto an octet only after 234 / n booters,
    long stopped by then. Outside xdist the process id seeds the start.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker.removeprefix("gw") or 0)
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID") or str(os.getpid())
    start = random.Random(f"{seed}-{run}").randrange(_NETS)
    return 16 + (start + index + count * next(_BOOTERS)) % _NETS


def _port_free(address: str, port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((address, port))
        except OSError:
            return False
    return True


class VmBooter:
    def __init__(self, seed: int = 0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="fake-vms-"))
        self._net = _second_octet(seed)
        self._seq = 0
        self._procs: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def next_address(self) -> str:
        """A loopback address no live agent listens on (one left by a killed run would
        refuse our agent's bind, and the boot would wait for an agent that exited)."""
        with self._lock:
            while True:
                self._seq += 1
                address = f"127.{self._net}.{self._seq // 250}.{self._seq % 250 + 1}"
                if _port_free(address, DEFAULT_AGENT_PORT):
                    return address

    def boot(self, vm_id: str, address: str, user_data: str) -> bool:
        """Start the VM's agent if its user data configures one; True if it did."""
        try:
            doc = yaml.safe_load(user_data) if user_data.startswith("#cloud-config") else None
        except yaml.YAMLError:
            return False
        files = (doc or {}).get("write_files") or []
        content = next((f.get("content") for f in files if f.get("path") == AGENT_CONFIG), None)
        if not content:
            return False
        config = json.loads(content)
        vm = self.root / vm_id
        vm.mkdir(parents=True, exist_ok=True)
        port = str(config.get("listen", "0.0.0.0:8765")).rpartition(":")[2]
        config |= {"workdir": str(vm / "srv"), "listen": f"{address}:{port}"}
        (vm / "agent.json").write_text(json.dumps(config))
        env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin"}
        with open(vm / "agent.log", "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "stratoflow.agent", "--config", str(vm / "agent.json")],
                cwd=vm,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with self._lock:
            self._procs[vm_id] = proc
        return True

    def destroy(self, vm_id: str) -> None:
        """The VM is gone: its processes (agent and jobs) and its disk."""
        with self._lock:
            proc = self._procs.pop(vm_id, None)
        if proc is not None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        shutil.rmtree(self.root / vm_id, ignore_errors=True)

    def running(self) -> list[str]:
        with self._lock:
            return [v for v, p in self._procs.items() if p.poll() is None]

    def stop(self) -> None:
        for vm_id in list(self._procs):
            self.destroy(vm_id)
        shutil.rmtree(self.root, ignore_errors=True)
