"""The site catalogue (``include/sites.yaml``) and the registries of site backends.

Backends register by *kind* (compute) and by URL *scheme* (storage) as import strings, so
adding openstack, kubernetes, ec2, s3, fts3 or onedata means one ``register_*`` line and a
validator; no caller changes, and no backend's client library is imported until used.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from stratoflow.config import include_dir
from stratoflow.errors import Issue, SiteError, TemplateError
from stratoflow.sites.base import Compute, Storage
from stratoflow.sites.files import validate_roots

NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
MAX_CATALOGUE_BYTES = 1 << 20

Validator = Callable[[str, dict[str, Any]], list[Issue]]


@dataclass(frozen=True)
class SiteConfig:
    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)  # every field except name and kind


@dataclass(frozen=True)
class _Backend:
    target: str  # "module:Class"
    validate: Validator | None = None


COMPUTE_KINDS: dict[str, _Backend] = {}
# scheme -> {site kind: "module:Class"}: one scheme may be served by several kinds, e.g.
# file:// by local sites and by kubernetes sites whose workdir is a shared filesystem.
STORAGE_SCHEMES: dict[str, dict[str, str]] = {}


def register_compute(kind: str, target: str, validate: Validator | None = None) -> None:
    COMPUTE_KINDS[kind] = _Backend(target, validate)


def register_storage(scheme: str, kind: str, target: str) -> None:
    STORAGE_SCHEMES[scheme] = {**STORAGE_SCHEMES.get(scheme, {}), kind: target}


def _load(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _positive_or_auto(path: str, value: Any) -> list[Issue]:
    if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value > 0):
        return []
    return [Issue(path, f"expected a positive integer or 'auto', got {value!r}")]


def _validate_local(path: str, entry: dict[str, Any]) -> list[Issue]:
    issues: list[Issue] = []
    known = {
        "name",
        "kind",
        "cores",
        "memory",
        "workdir",
        "allowed_roots",
        "writable_roots",
        "kill_grace_s",
        "address_space_limit",
    }
    for key in entry:
        if key not in known:
            issues.append(
                Issue(f"{path}.{key}", f"unknown field; expected one of {', '.join(sorted(known))}")
            )
    for key in ("cores", "memory"):
        if key in entry:
            issues += _positive_or_auto(f"{path}.{key}", entry[key])
    if "workdir" in entry and not isinstance(entry["workdir"], str):
        issues.append(Issue(f"{path}.workdir", "expected a path string"))
    issues += validate_roots(path, entry)
    return issues


register_compute("local", "stratoflow.sites.local:LocalCompute", _validate_local)
register_storage("file", "local", "stratoflow.sites.local:LocalStorage")
register_storage("", "local", "stratoflow.sites.local:LocalStorage")


def default_catalogue_path() -> Path:
    env = os.environ.get("STRATOFLOW_SITES")
    return Path(env).expanduser() if env else include_dir() / "sites.yaml"


def parse_catalogue(doc: Any, source: str = "sites.yaml") -> dict[str, SiteConfig]:
    """Validate a loaded catalogue document; every fault is reported at once."""
    if not isinstance(doc, dict) or not isinstance(doc.get("sites"), list):
        raise TemplateError(Issue("sites", f"{source}: expected a mapping with a 'sites' list"))
    issues: list[Issue] = []
    sites: dict[str, SiteConfig] = {}
    seen: set[str] = set()
    for i, entry in enumerate(doc["sites"]):
        path = f"sites[{i}]"
        if not isinstance(entry, dict):
            issues.append(Issue(path, "expected a mapping with at least name and kind"))
            continue
        name, kind = entry.get("name"), entry.get("kind")
        if not isinstance(name, str) or not NAME.match(name):
            issues.append(
                Issue(
                    f"{path}.name",
                    f"expected a lowercase DNS-style name (a-z, 0-9, '-', '_'), got {name!r}",
                )
            )
        elif name in seen:
            issues.append(Issue(f"{path}.name", f"duplicate site name {name!r}"))
        if isinstance(name, str):
            seen.add(name)
        if kind not in COMPUTE_KINDS:
            issues.append(
                Issue(
                    f"{path}.kind",
                    f"unknown site kind {kind!r}; expected one of "
                    f"{', '.join(sorted(COMPUTE_KINDS))}",
                )
            )
            continue
        backend = COMPUTE_KINDS[kind]
        entry_issues = backend.validate(path, entry) if backend.validate else []
        issues += entry_issues
        if not issues and isinstance(name, str):
            config = {k: v for k, v in entry.items() if k not in ("name", "kind")}
            sites[name] = SiteConfig(name, kind, config)
    if issues:
        raise TemplateError(issues)
    return sites


def load_catalogue(path: str | os.PathLike[str] | None = None) -> dict[str, SiteConfig]:
    """Read and validate the site catalogue (default: $STRATOFLOW_SITES or include/sites.yaml)."""
    p = Path(path) if path is not None else default_catalogue_path()
    try:
        text = p.read_bytes()
    except OSError as e:
        raise TemplateError(Issue("", f"cannot read site catalogue {p}: {e}")) from e
    if len(text) > MAX_CATALOGUE_BYTES:
        raise TemplateError(Issue("", f"site catalogue {p} is larger than 1 MiB"))
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise TemplateError(Issue("", f"{p}: invalid YAML: {e}")) from e
    return parse_catalogue(doc, str(p))


def compute_for(site: SiteConfig) -> Compute:
    backend = COMPUTE_KINDS.get(site.kind)
    if backend is None:
        raise TemplateError(Issue("kind", f"unknown site kind {site.kind!r}"))
    return _load(backend.target)(site.name, dict(site.config))


def storage_for(url: str, catalogue: dict[str, SiteConfig]) -> Storage:
    """The storage backend for ``url``, configured from the first catalogue site whose kind
    serves the URL's scheme (callers put the deployment's own site first)."""
    scheme = urlparse(url).scheme.lower()
    if scheme not in STORAGE_SCHEMES:
        raise TemplateError(
            Issue(
                "",
                f"{url}: no storage backend for scheme {scheme!r}; "
                f"known: {', '.join(sorted(s for s in STORAGE_SCHEMES if s))}",
            )
        )
    kinds = STORAGE_SCHEMES[scheme]
    for site in catalogue.values():
        if site.kind in kinds:
            return _load(kinds[site.kind])(site.name, dict(site.config))
    raise TemplateError(
        Issue("", f"{url}: no site of kind {' or '.join(kinds)} in the site catalogue")
    )


@lru_cache(maxsize=1)
def catalogue() -> dict[str, SiteConfig]:
    """The default catalogue, read once per process."""
    return load_catalogue()


def compute_for_site(name: str) -> Compute:
    sites = catalogue()
    if name not in sites:
        raise SiteError(f"site '{name}' is not in the site catalogue (known: {', '.join(sites)})")
    return compute_for(sites[name])


def storage_for_url(url: str, site: str | None = None) -> Storage:
    """The storage backend for ``url``, configured from ``site`` when it serves the URL's
    scheme (its roots and workdir apply), else from the first catalogue site that does."""
    sites = catalogue()
    if site in sites:
        sites = {site: sites[site], **sites}
    return storage_for(url, sites)


def _register_builtin_backends() -> None:
    """Every backend shipped with Stratoflow. Registration stores import strings only; no
    client library (openstacksdk, kubernetes, boto3, fts3) is imported until a site of that
    kind is used."""
    from stratoflow.sites import ec2, fts3, kubernetes, onedata, openstack, s3

    for backend in (openstack, kubernetes, ec2, s3, fts3, onedata):
        backend.register()


_register_builtin_backends()
