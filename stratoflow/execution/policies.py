"""The lifecycle policies in force: the policy files, checked against the site
catalogue's storage endpoints (an expression that selects none is an error)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from stratoflow.config import include_dir
from stratoflow.errors import Issue, TemplateError
from stratoflow.lifecycle.expression import Endpoint
from stratoflow.lifecycle.policy import Policy, load_policies
from stratoflow.sites.endpoints import StorageEndpoint, load_endpoints


def policies_dir() -> Path:
    """``$STRATOFLOW_POLICIES`` or the repository's ``include/policies/lifecycle``."""
    env = os.environ.get("STRATOFLOW_POLICIES")
    return Path(env).expanduser() if env else include_dir() / "policies" / "lifecycle"


@dataclass(frozen=True)
class PolicySet:
    policies: dict[str, Policy]
    endpoints: dict[str, StorageEndpoint]

    @property
    def selectable(self) -> dict[str, Endpoint]:
        """The endpoints as storage expressions see them."""
        return {n: Endpoint(n, e.attributes) for n, e in self.endpoints.items()}

    @property
    def bases(self) -> dict[str, str]:
        return {n: e.url for n, e in self.endpoints.items()}

    def get(self, name: str) -> Policy:
        if name not in self.policies:
            known = ", ".join(sorted(self.policies)) or "none"
            raise TemplateError(Issue("policy", f"no policy named {name!r} (known: {known})"))
        return self.policies[name]


def load_policy_set() -> PolicySet:
    endpoints = load_endpoints()
    selectable = {n: Endpoint(n, e.attributes) for n, e in endpoints.items()}
    return PolicySet(load_policies(policies_dir(), selectable), endpoints)
