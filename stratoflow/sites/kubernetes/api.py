"""Calls to the Kubernetes API with retries, and its errors as ``SiteError``s.

Why retry here and not in urllib3: a create whose reply was lost must be sent again *and*
the 409 AlreadyExists it then gets must be read as "my earlier try worked". Only the
caller knows which object it meant to create, so the retry loop hands 409s back to it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from stratoflow.errors import SiteError
from stratoflow.retry import retrying
from stratoflow.sites.kubernetes.config import KubernetesConfig

log = logging.getLogger(__name__)

# Worth another try: the server was overloaded or restarting, or etcd timed out.
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


class KubeError(SiteError):
    """An API call failed; ``status`` is the HTTP status (0 when no reply arrived)."""

    def __init__(self, message: str, status: int = 0, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


def _status_of(e: Any) -> tuple[int, str, str]:
    """(code, reason, message) from an ApiException's ``Status`` body, never its headers."""
    code = int(getattr(e, "status", 0) or 0)
    reason, message = str(getattr(e, "reason", "") or ""), ""
    try:
        body = json.loads(getattr(e, "body", None) or "{}")
        reason = body.get("reason") or reason
        message = body.get("message") or ""
    except (ValueError, TypeError, AttributeError):
        pass
    return code, reason, message


class KubeApi:
    """The few CoreV1 operations the site needs, each retried and translated."""

    def __init__(self, site: str, conn_id: str, api_client: Any, cfg: KubernetesConfig):
        from kubernetes import client

        self.site = site
        self.conn_id = conn_id
        self.cfg = cfg
        self.core = client.CoreV1Api(api_client)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        import urllib3
        from kubernetes.client.exceptions import ApiException

        def transient(e: Exception) -> bool:
            if isinstance(e, ApiException):
                return _status_of(e)[0] in RETRY_STATUS
            return isinstance(e, urllib3.exceptions.HTTPError)  # refused, reset, lost reply

        def note(e: Exception, attempt: int) -> None:
            if isinstance(e, ApiException):
                code, reason, _ = _status_of(e)
                cause = f"{code} {reason}"
            else:
                cause = type(e).__name__
            log.info("kubernetes %s: %s: %s; retrying", self.site, what, cause)

        try:
            return retrying(
                lambda: fn(*args, _request_timeout=self.cfg.request_timeout_s, **kwargs),
                attempts=self.cfg.retry_attempts,
                backoff_s=self.cfg.retry_backoff_s,
                transient=transient,
                on_retry=note,
            )
        except ApiException as e:
            raise self._error(what, *_status_of(e)) from None
        except urllib3.exceptions.HTTPError as e:
            raise KubeError(
                f"kubernetes site {self.site!r}: {what}: no reply from the API server"
                f" after {self.cfg.retry_attempts} tries ({type(e).__name__})"
            ) from None

    def _error(self, what: str, code: int, reason: str, message: str) -> KubeError:
        where = f"kubernetes site {self.site!r}: {what}"
        if code == 401:
            text = (
                f"{where}: authentication failed (401 Unauthorized): the API server rejected"
                f" the bearer token of Airflow connection {self.conn_id!r}"
            )
        elif code == 403 and "exceeded quota" in message:
            text = f"{where}: quota exhausted (403 Forbidden): {message}"
        else:
            text = f"{where}: {code} {reason}: {message}".rstrip(": ")
        return KubeError(text, code, reason)

    # ---- namespaces --------------------------------------------------------------------

    def read_namespace(self, name: str) -> Any | None:
        try:
            return self.call(f"read namespace {name}", self.core.read_namespace, name)
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def create_namespace(self, name: str, labels: dict, annotations: dict) -> Any | None:
        """The created namespace, or None if it already exists (AlreadyExists)."""
        body = {"metadata": {"name": name, "labels": labels, "annotations": annotations}}
        try:
            return self.call(f"create namespace {name}", self.core.create_namespace, body)
        except KubeError as e:
            if e.status == 409:
                return None
            raise

    def delete_namespace(self, name: str) -> bool:
        """Ask for deletion; False if it was already gone. Already terminating is fine."""
        try:
            self.call(f"delete namespace {name}", self.core.delete_namespace, name)
        except KubeError as e:
            if e.status == 404:
                return False
            if e.status != 409:  # 409: "the system is ensuring all content is removed"
                raise
        return True

    def wait_namespace_gone(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        interval = 0.05  # a small namespace goes in well under a second; a big one in minutes
        while True:
            if self.read_namespace(name) is None:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))
            interval = min(interval * 1.5, 2.0)

    def list_namespaces(self, selector: str) -> list[Any]:
        return self.call("list namespaces", self.core.list_namespace, label_selector=selector).items

    # ---- pods --------------------------------------------------------------------------

    def read_pod(self, namespace: str, name: str) -> Any | None:
        try:
            return self.call(
                f"read pod {namespace}/{name}", self.core.read_namespaced_pod, name, namespace
            )
        except KubeError as e:
            if e.status == 404:
                return None
            raise

    def create_pod(self, namespace: str, body: dict) -> bool:
        """True if created now; False if it already existed (a lost reply, or a retry)."""
        name = body["metadata"]["name"]
        try:
            self.call(
                f"create pod {namespace}/{name}", self.core.create_namespaced_pod, namespace, body
            )
            return True
        except KubeError as e:
            if e.status == 409:
                return False
            raise

    def delete_pod(self, namespace: str, name: str, grace_s: float) -> None:
        try:
            self.call(
                f"delete pod {namespace}/{name}",
                self.core.delete_namespaced_pod,
                name,
                namespace,
                grace_period_seconds=int(grace_s),
            )
        except KubeError as e:
            if e.status != 404:
                raise

    def pod_log(self, namespace: str, name: str, tail_lines: int | None = None) -> str:
        """The container's output; empty if it has not started (400) or is gone (404)."""
        kwargs: dict[str, Any] = {"tail_lines": tail_lines} if tail_lines else {}
        try:
            # The raw body, decoded here: some client versions turn the log's bytes into
            # their repr ("b'...'") when they deserialize it.
            response = self.call(
                f"read log of pod {namespace}/{name}",
                self.core.read_namespaced_pod_log,
                name,
                namespace,
                _preload_content=False,
                **kwargs,
            )
        except KubeError as e:
            if e.status in (400, 404):
                return ""
            raise
        return bytes(response.data or b"").decode("utf-8", "replace")
