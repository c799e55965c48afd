"""The registry of site kinds: everything Stratoflow knows about a kind, declared once.

A kind's package calls :func:`register_kind` with a :class:`SiteKind`: its catalogue
schema (which is also its backend's config), the ``module:Class`` of its Compute (None for
a kind that only stores or moves data), its Storage per URL scheme, its waits, and the
entry fields that would be secrets.
Targets are import strings, so registering costs no client-library import; the class is
loaded when a site of that kind is first used.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from stratoflow.sites.schema import SiteSchema

# Secrets belong in the Airflow Connection a site names (conn_id), never in sites.yaml:
# the catalogue is a plain file in the repository and in every worker's image.
COMMON_SECRET_FIELDS = ("password", "token", "secret", "secret_key", "access_token")


@dataclass(frozen=True)
class SiteKind:
    name: str
    #: For users' messages: what a site of this kind is ("an S3-compatible object store").
    description: str
    #: The entry's fields, rules and defaults; None: the kind takes no fields.
    schema: type[SiteSchema] | None = None
    #: ``module:Class`` of its Compute; None: it runs no jobs (a storage or transfer service).
    compute: str | None = None
    #: URL scheme -> ``module:Class`` of the Storage that serves it at sites of this kind.
    storage: Mapping[str, str] = field(default_factory=dict)
    #: Wait name -> ``module:Class`` of a :class:`stratoflow.sites.waits.Waiter`.
    waiters: Mapping[str, str] = field(default_factory=dict)
    #: Entry fields refused with "put it in the Airflow Connection", besides the common ones.
    secret_fields: tuple[str, ...] = ()
    #: Its Compute creates, attaches and deletes block volumes (TOSCA BlockStorage).
    block_storage: bool = False

    @property
    def runs_jobs(self) -> bool:
        return self.compute is not None

    def refused_fields(self) -> tuple[str, ...]:
        return COMMON_SECRET_FIELDS + self.secret_fields


_KINDS: dict[str, SiteKind] = {}


def register_kind(kind: SiteKind) -> None:
    """Declare (or redeclare) a kind; its waits become known to the triggerer too."""
    _KINDS[kind.name] = kind


def kinds() -> Mapping[str, SiteKind]:
    """Every registered kind, by name (read-only)."""
    return MappingProxyType(_KINDS)


def kinds_serving(scheme: str) -> dict[str, str]:
    """``{kind name: Storage target}`` of the kinds that serve URL ``scheme``."""
    return {k.name: k.storage[scheme] for k in _KINDS.values() if scheme in k.storage}


def schemes() -> set[str]:
    return {s for k in _KINDS.values() for s in k.storage}


def load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)
