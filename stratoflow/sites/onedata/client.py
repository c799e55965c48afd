"""A small client for the Oneprovider REST API v3 (httpx): files, QoS, transfers.

onedatafilerestclient covers file I/O only and needs a Onezone to find the provider;
Stratoflow talks to one provider and also needs QoS and transfers, so it speaks the
documented REST API itself. Every call retries 5xx and connection errors; the calls it
retries are safe to repeat (reads, deletes, and creates that fail on EEXIST).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from stratoflow.errors import StagingError
from stratoflow.retry import call_with_retries
from stratoflow.tls import tls_context

API = "/api/v3/oneprovider"


class OnedataError(StagingError):
    def __init__(self, message: str, status: int = 0, errno: str = ""):
        super().__init__(message)
        self.status, self.errno = status, errno


class OnedataClient:
    def __init__(
        self,
        host: str,
        token: str,
        *,
        verify: Any = True,
        timeout: float = 60.0,
        attempts: int = 4,
        backoff_s: float = 0.5,
    ) -> None:
        self.host, self.attempts, self.backoff_s = host.rstrip("/"), max(1, attempts), backoff_s
        self._http = httpx.Client(
            base_url=self.host + API,
            headers={"X-Auth-Token": token},
            verify=tls_context() if verify is True else verify,
            timeout=timeout,
        )

    def close(self) -> None:
        self._http.close()

    def _call(self, what: str, fn: Callable[[], httpx.Response], ok: tuple[int, ...]) -> Any:
        return call_with_retries(
            what,
            fn,
            ok,
            attempts=self.attempts,
            backoff_s=self.backoff_s,
            detail=lambda r: _error(r)[0],
            refuse=lambda r, message: OnedataError(
                f"onedata {what}: {r.status_code} {message}", r.status_code, _error(r)[1]
            ),
            give_up=lambda last, _status: OnedataError(
                f"onedata {what}: failed {self.attempts} times: {last}"
            ),
        )

    # ---- files ------------------------------------------------------------------------

    def file_id(self, path: str) -> str | None:
        """``space/dir/name`` -> file id; None if there is no such file."""
        try:
            r = self._call(
                f"lookup {path}",
                lambda: self._http.post(f"/lookup-file-id/{quote(path.strip('/'))}"),
                (200,),
            )
        except OnedataError as e:
            if e.errno == "enoent" or e.status == 404:
                return None
            raise
        return r.json()["fileId"]

    def attributes(self, file_id: str) -> dict[str, Any]:
        return self._call("attributes", lambda: self._http.get(f"/data/{file_id}"), (200,)).json()

    def create(self, parent_id: str, rel: str, content: bytes) -> str:
        url = f"/data/{parent_id}/path/{quote(rel.strip('/'))}"
        params = {"type": "REG", "create_parents": "true"}
        r = self._call(
            f"create {rel}", lambda: self._http.put(url, params=params, content=content), (201,)
        )
        return r.json()["fileId"]

    def download(self, file_id: str, dest: Path) -> None:
        """Stream the file's content into ``dest`` (rewritten from the start on a retry)."""

        def fetch() -> httpx.Response:
            with self._http.stream("GET", f"/data/{file_id}/content") as r:
                if r.status_code == 200:
                    with open(dest, "wb") as out:
                        for block in r.iter_bytes():
                            out.write(block)
                else:
                    r.read()
                return r

        self._call("read", fetch, (200,))

    def delete(self, file_id: str) -> None:
        try:
            self._call("delete", lambda: self._http.delete(f"/data/{file_id}"), (204,))
        except OnedataError as e:
            if e.errno != "enoent":
                raise

    def children(self, file_id: str) -> list[dict[str, Any]]:
        r = self._call("list", lambda: self._http.get(f"/data/{file_id}/children"), (200,))
        return list(r.json().get("children") or [])

    # ---- QoS and transfers --------------------------------------------------------------

    def add_qos(self, file_id: str, expression: str, replicas: int) -> str:
        body = {"expression": expression, "replicasNum": int(replicas), "fileId": file_id}
        r = self._call(
            f"QoS {expression!r}", lambda: self._http.post("/qos_requirements", json=body), (201,)
        )
        return r.json()["qosRequirementId"]

    def qos(self, requirement_id: str) -> dict[str, Any]:
        return self._call(
            "QoS status", lambda: self._http.get(f"/qos_requirements/{requirement_id}"), (200,)
        ).json()

    def start_transfer(self, file_id: str, kind: str = "replication", provider: str = "") -> str:
        body = {"type": kind, "dataSourceType": "file", "fileId": file_id}
        if provider:
            body["replicatingProviderId"] = provider
        r = self._call(f"{kind} transfer", lambda: self._http.post("/transfers", json=body), (201,))
        return r.json()["transferId"]

    def transfer(self, transfer_id: str) -> dict[str, Any]:
        return self._call(
            "transfer status", lambda: self._http.get(f"/transfers/{transfer_id}"), (200,)
        ).json()


def _error(r: httpx.Response) -> tuple[str, str]:
    try:
        err = r.json().get("error") or {}
        return str(err.get("description") or err), str((err.get("details") or {}).get("errno", ""))
    except ValueError:
        return r.text[:300], ""
