"""Site entries of kind ``onedata``: validation (the kind runs no jobs, only stores)."""

from __future__ import annotations

from typing import Any

from stratoflow.errors import Issue
from stratoflow.sites.files import validate_roots

FIELDS = {
    "name": "site name",
    "kind": "onedata",
    "conn_id": "Airflow connection id: host = provider URL, password = access token (required)",
    "allowed_roots": "local directories uploads may read from",
    "writable_roots": "local directories downloads may write to",
}


def validate_entry(path: str, entry: dict[str, Any]) -> list[Issue]:
    issues = [
        Issue(f"{path}.{k}", f"unknown field; expected one of {', '.join(sorted(FIELDS))}")
        for k in entry
        if k not in FIELDS
    ]
    if not isinstance(entry.get("conn_id"), str) or not entry["conn_id"]:
        issues.append(Issue(f"{path}.conn_id", f"required: {FIELDS['conn_id']}"))
    issues += validate_roots(path, entry)
    return issues
