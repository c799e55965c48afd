"""An import-linter contract type: operators and triggers name no concrete backend.

The forbidden modules come from the kind registry (the packages that implement each
registered kind's Compute, Storage and waits) and from ``stratoflow.hooks`` (every hook but
the generic credentials bridge), so a new kind is its package plus one registry line and
this contract covers it with no edit. Only ``lint-imports`` loads this module
(``contract_types`` in pyproject.toml).
"""

from __future__ import annotations

import pkgutil
from typing import Any

from importlinter.contracts.forbidden import ForbiddenContract

# Hooks every layer above the sites may use: it only bridges Airflow Connections.
GENERIC_HOOKS = {"stratoflow.hooks.credentials"}


def backend_modules() -> list[str]:
    """Every module a generic operator or trigger must not import."""
    import stratoflow.hooks
    from stratoflow.sites.catalogue import kinds

    packages = set()
    for kind in kinds().values():
        targets = [kind.compute or "", *kind.storage.values(), *kind.waiters.values()]
        for target in filter(None, targets):
            module = target.partition(":")[0]
            packages.add(".".join(module.split(".")[:3]))  # stratoflow.sites.<package>
    hooks = {f"stratoflow.hooks.{m.name}" for m in pkgutil.iter_modules(stratoflow.hooks.__path__)}
    return sorted(packages | (hooks - GENERIC_HOOKS))


class BackendsForbiddenContract(ForbiddenContract):
    """A forbidden contract whose forbidden modules are :func:`backend_modules`."""

    type_name = "backends_forbidden"

    def __init__(
        self, name: str, session_options: dict[str, Any], contract_options: dict[str, Any]
    ) -> None:
        options = {**contract_options, "forbidden_modules": backend_modules()}
        super().__init__(name, session_options, options)
