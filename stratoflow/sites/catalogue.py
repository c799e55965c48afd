"""The site catalogue (``include/sites.yaml``): its sites, validated against the kinds
registered in :mod:`stratoflow.sites.kinds`, and the backend that serves each of them."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from stratoflow.config import include_dir
from stratoflow.errors import Issue, SiteError, TemplateError
from stratoflow.retry import RENAMED_KEYS, renamed_key_issues
from stratoflow.sites.base import Compute, Storage
from stratoflow.sites.kinds import SiteKind, kinds, kinds_serving, load, schemes

NAME = re.compile(r"^[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?$")
MAX_CATALOGUE_BYTES = 1 << 20


@dataclass(frozen=True)
class SiteConfig:
    name: str
    kind: str
    config: dict[str, Any] = field(default_factory=dict)  # every field except name and kind


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
    registered = kinds()
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
        if kind not in registered:
            issues.append(
                Issue(
                    f"{path}.kind",
                    f"unknown site kind {kind!r}; expected one of {', '.join(sorted(registered))}",
                )
            )
            continue
        site_kind = registered[str(kind)]
        entry, secret_issues = _without_refused(path, site_kind, entry)
        issues += secret_issues
        issues += site_kind.schema.issues(path, entry) if site_kind.schema else []
        if not issues and isinstance(name, str):
            config = {k: v for k, v in entry.items() if k not in ("name", "kind")}
            sites[name] = SiteConfig(name, site_kind.name, config)
    if issues:
        raise TemplateError(issues)
    return sites


def _without_refused(
    path: str, kind: SiteKind, entry: dict[str, Any]
) -> tuple[dict[str, Any], list[Issue]]:
    """Refuse secret-looking fields and old retry keys with the fix, before the kind's own
    validator sees them (it would only call them unknown)."""
    refused = [k for k in entry if k in kind.refused_fields()]
    issues = [
        Issue(
            f"{path}.{k}",
            "secrets do not belong in the site catalogue; put it in the Airflow Connection"
            " the site names with conn_id",
        )
        for k in refused
    ]
    issues += renamed_key_issues(path, entry)
    dropped = set(refused) | set(RENAMED_KEYS)
    return {k: v for k, v in entry.items() if k not in dropped}, issues


def load_catalogue(path: str | os.PathLike[str] | None = None) -> dict[str, SiteConfig]:
    """Read and validate the site catalogue (default: $STRATOFLOW_SITES or include/sites.yaml)."""
    doc, source = read_catalogue(path)
    return parse_catalogue(doc, source)


def read_catalogue(path: str | os.PathLike[str] | None = None) -> tuple[Any, str]:
    """The catalogue file's YAML document, not yet validated, and where it was read."""
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
    return doc, str(p)


def kind_of(site: SiteConfig) -> SiteKind:
    kind = kinds().get(site.kind)
    if kind is None:
        raise TemplateError(Issue("kind", f"unknown site kind {site.kind!r}"))
    return kind


def runs_jobs(site: SiteConfig) -> bool:
    return kind_of(site).runs_jobs


def compute_for(site: SiteConfig) -> Compute:
    kind = kind_of(site)
    if kind.compute is None:
        raise SiteError(
            f"site {site.name!r} is {kind.description} (kind {kind.name}); it cannot provision"
            " hosts or run jobs. Place the deployment on a compute site and stage data"
            " through this one."
        )
    return load(kind.compute)(site.name, dict(site.config))


def storage_for(url: str, catalogue: dict[str, SiteConfig]) -> Storage:
    """The storage backend for ``url``, configured from the first catalogue site whose kind
    serves the URL's scheme (callers put the deployment's own site first)."""
    scheme = urlparse(url).scheme.lower()
    serving = kinds_serving(scheme)
    if not serving:
        raise TemplateError(
            Issue(
                "",
                f"{url}: no storage backend for scheme {scheme!r}; "
                f"known: {', '.join(sorted(s for s in schemes() if s))}",
            )
        )
    for site in catalogue.values():
        if site.kind in serving:
            return load(serving[site.kind])(site.name, dict(site.config))
    raise TemplateError(
        Issue("", f"{url}: no site of kind {' or '.join(serving)} in the site catalogue")
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


def compute_sites() -> list[str]:
    """The names of the default catalogue's sites that run jobs (the reaper's sites)."""
    return sorted(name for name, site in catalogue().items() if runs_jobs(site))


def _register_builtin_kinds() -> None:
    """Every kind shipped with Stratoflow. Registration stores import strings only; no
    client library (openstacksdk, kubernetes, boto3, fts3) is imported until a site of that
    kind is used."""
    from stratoflow.sites import ec2, fts3, kubernetes, local, onedata, openstack, s3

    for backend in (local, openstack, kubernetes, ec2, s3, fts3, onedata):
        backend.register()


_register_builtin_kinds()
