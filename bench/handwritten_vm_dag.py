"""The hand-written Airflow DAG that bench/deployment_lifecycle.py compares Stratoflow with.

Plain ``airflow.sdk`` tasks and Stratoflow's OpenStackHook: create one server (the image,
network and smallest fitting flavor a Stratoflow site would use for one core and 1 GiB)
and wait until it is ACTIVE; delete it and wait until it is gone. No agent, no store.
The bench symlinks this file into its Airflow's dags folder and passes the connection id
and poll interval in the run's conf.
"""

from __future__ import annotations

import time

from airflow.sdk import dag, get_current_context, task

TIMEOUT_S = 300


def cloud():
    from stratoflow.hooks.openstack import OpenStackHook

    return OpenStackHook(get_current_context()["params"]["conn_id"]).get_conn()


@dag(
    dag_id="bench_handwritten_vm",
    schedule=None,
    catchup=False,
    params={"conn_id": "bench_openstack", "poll_s": 0.5},
)
def bench_handwritten_vm():
    @task
    def create_server() -> str:
        conn, context = cloud(), get_current_context()
        fits = [f for f in conn.compute.flavors(details=True) if f.vcpus >= 1 and f.ram >= 1024]
        fits = [f for f in fits if not f.extra_specs]  # no GPU flavors
        flavor = min(fits, key=lambda f: (f.vcpus, f.ram, f.disk))
        image = conn.image.find_image("ubuntu-22.04", ignore_missing=False)
        network = conn.network.find_network("private", ignore_missing=False)
        server = conn.compute.create_server(
            name="hand-" + context["run_id"].rpartition("__")[2],
            flavor_id=flavor.id,
            image_id=image.id,
            networks=[{"uuid": network.id}],
        )
        deadline = time.monotonic() + TIMEOUT_S
        while (status := conn.compute.get_server(server.id).status) != "ACTIVE":
            if status == "ERROR" or time.monotonic() > deadline:
                raise RuntimeError(f"server {server.id} is {status}")
            time.sleep(context["params"]["poll_s"])
        return server.id

    @task
    def delete_server(server_id: str) -> None:
        from openstack.exceptions import NotFoundException

        conn, poll_s = cloud(), get_current_context()["params"]["poll_s"]
        conn.compute.delete_server(server_id)
        deadline = time.monotonic() + TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                conn.compute.get_server(server_id)
            except NotFoundException:
                return
            time.sleep(poll_s)
        raise RuntimeError(f"server {server_id} still there after {TIMEOUT_S} s")

    delete_server(create_server())


bench_handwritten_vm()
