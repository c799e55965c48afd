"""Sending INDIGO's callbacks: a deployment that reaches a final state is POSTed, as its
``DeploymentResource`` JSON, to the callback URL it was created with.

The store queues each one in the same transaction as the final state
(stratoflow.store.callbacks); a thread of the API server claims the due ones and POSTs
them. A 2xx ends it; anything else (an error answer, no answer within 10 s) is tried again
after 2, 4, 8... s (at most 10 minutes apart), and given up after 8 attempts, with the
last error kept. Claimed rows are leased for longer than it takes to POST them all, so
several API server processes never POST the same callback at once. (INDIGO tries once
and only logs a failure.)
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

POLL_S = 1.0
TIMEOUT_S = 10.0
# Claimed together, then POSTed one after another: the lease outlasts them all, so that no
# other server process takes one of them back while this one is still on its way to it.
CLAIM = 5
LEASE_S = CLAIM * TIMEOUT_S + 60
MAX_ATTEMPTS = 8
FIRST_RETRY_S, MAX_RETRY_S = 2.0, 600.0


def retry_in(attempts_before: int) -> float | None:
    """Seconds until the next try after a failed one; None: give up."""
    if attempts_before + 1 >= MAX_ATTEMPTS:
        return None
    return min(FIRST_RETRY_S * 2**attempts_before, MAX_RETRY_S)


def payload(store: Any, callback: dict[str, Any]) -> dict[str, Any] | None:
    """The deployment as ``GET /orchestrator/deployments/{id}`` shows it, in the final
    state the callback announces (it may have moved on since)."""
    from stratoflow.api.airflow import airflow_base_url
    from stratoflow.api.indigo.views import URL_PREFIX, deployment_resource

    deployment = store.get_deployment(callback["deployment_id"])
    if deployment is None:
        return None
    url = f"{airflow_base_url()}{URL_PREFIX}/deployments/{deployment.id}"
    return {**deployment_resource(deployment, url), "status": callback["status"]}


def send_due() -> int:
    """POST every due callback once; how many were tried."""
    import httpx

    from stratoflow.store import Store
    from stratoflow.tls import tls_context

    with Store.open() as store:
        due = store.claim_callbacks(limit=CLAIM, lease_s=LEASE_S)
        for callback in due:
            body = payload(store, callback)
            try:
                if body is None:
                    raise ValueError("the deployment is gone")
                r = httpx.post(callback["url"], json=body, timeout=TIMEOUT_S, verify=tls_context())
                if not r.is_success:
                    raise ValueError(f"HTTP {r.status_code}: {r.text[:200]}")
            except (httpx.HTTPError, ValueError) as exc:
                later = retry_in(callback["attempts"])
                store.callback_failed(callback["id"], str(exc) or type(exc).__name__, later)
                log.warning(
                    "callback of deployment %s (%s) to %s failed: %s; %s",
                    callback["deployment_id"],
                    callback["status"],
                    callback["url"],
                    exc,
                    f"again in {later:.0f} s" if later is not None else "given up",
                )
                continue
            store.callback_delivered(callback["id"])
    return len(due)


class CallbackSender:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = False

    def ensure_running(self) -> None:
        with self._lock:
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._loop, name="callback-sender", daemon=True).start()

    def _loop(self) -> None:
        while True:
            try:
                sent = send_due()
            except Exception:  # the store is away for a moment: try again later
                log.exception("sending callbacks failed")
                sent = 0
            if not sent:
                time.sleep(POLL_S)


#: The API server's one sender (per process).
sender = CallbackSender()


def background_work() -> None:
    """FastAPI dependency of both apps: the API server's background threads (run
    starters, the callback sender) start with its first request, and from then on the
    store's schema is checked at its first open only."""
    from stratoflow.api.starter import starter
    from stratoflow.store.migrate import check_schema_once

    check_schema_once()
    starter.ensure_running()
    sender.ensure_running()
