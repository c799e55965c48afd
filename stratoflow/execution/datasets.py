"""Registering data in the replica catalogue: from a campaign's stage-out, a transfer's
destinations, or the CLI. Each file's URL names its endpoint (the catalogue endpoint whose
base URL holds it)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from stratoflow.errors import Issue, TemplateError
from stratoflow.lifecycle.model import NewFile, Registration, check_dataset_name, check_new_file
from stratoflow.sites.endpoints import StorageEndpoint, endpoint_for_url, load_endpoints


def synced_endpoints(store: Any) -> dict[str, StorageEndpoint]:
    """The catalogue's endpoints, recorded in the store (whose replicas name them)."""
    endpoints = load_endpoints()
    store.sync_endpoints(
        {"name": e.name, "site": e.site, "url": e.url, "attributes": e.attributes}
        for e in endpoints.values()
    )
    return endpoints


def register_files(
    store: Any,
    dataset: str,
    new_files: Sequence[NewFile],
    *,
    source: str,
    meta: Mapping[str, Any] | None = None,
    verified: bool = True,
    endpoint: str | None = None,
    endpoints: dict[str, StorageEndpoint] | None = None,
) -> list[Registration]:
    """Register ``new_files`` as dataset ``dataset``, one registration per endpoint their
    URLs fall in (or at ``endpoint``). Every fault is reported before anything is written.
    ``endpoints``: the caller's ``synced_endpoints`` (read and recorded here otherwise)."""
    check_dataset_name(dataset, "dataset")
    endpoints = synced_endpoints(store) if endpoints is None else endpoints
    issues: list[Issue] = []
    if endpoint is not None and endpoint not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none: add endpoints to the site catalogue"
        issues.append(Issue("endpoint", f"unknown storage endpoint {endpoint!r} (known: {known})"))
    by_endpoint: dict[str, list[NewFile]] = defaultdict(list)
    names: set[str] = set()
    for i, f in enumerate(new_files):
        at = f"files[{i}]"
        issues += check_new_file(f, at)
        if f.name in names:
            issues.append(Issue(f"{at}.name", f"{f.name!r} is named twice"))
        names.add(f.name)
        owner = endpoint_for_url(f.url, endpoints)
        if owner is None or (endpoint is not None and owner.name != endpoint):
            where = f"endpoint {endpoint!r}" if endpoint else "any storage endpoint"
            issues.append(Issue(f"{at}.url", f"{f.url} is not under {where} of the site catalogue"))
            continue
        by_endpoint[owner.name].append(f)
    if not new_files:
        issues.append(Issue("files", "a dataset needs at least one file"))
    if issues:
        raise TemplateError(issues)
    return [
        store.register_dataset(
            dataset, group, endpoint=name, source=source, meta=meta, verified=verified
        )
        for name, group in sorted(by_endpoint.items())
    ]


def register_staged(
    store: Any,
    dataset: str,
    staged: Sequence[Mapping[str, Any]],
    *,
    source: str,
    meta: Mapping[str, Any],
) -> list[str] | None:
    """Register a run's verified copies (``StagedFile`` dicts) as ``dataset`` when a storage
    endpoint holds them; return the policies that select it, whose Assets the caller
    announces. None: no endpoint holds them, nothing registered."""
    from stratoflow.execution.policies import load_policy_set
    from stratoflow.execution.staging import url_basename

    endpoints = synced_endpoints(store)
    if not staged or endpoint_for_url(str(staged[0]["url"]), endpoints) is None:
        return None
    files = [
        NewFile(url_basename(s["url"]), s["url"], s["size"], s.get("adler32"), s.get("sha256"))
        for s in staged
    ]
    register_files(store, dataset, files, source=source, meta=meta, endpoints=endpoints)
    selecting = load_policy_set().policies.values()
    return sorted(p.name for p in selecting if p.datasets.matches(dataset, meta))
