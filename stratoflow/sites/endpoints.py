"""Storage endpoints: where the lifecycle policies keep replicas (the site catalogue's
``endpoints`` list).

An endpoint is a base URL at a catalogue site whose kind serves the URL's scheme, and the
attributes storage expressions select on (``type``, ``tier``, ``country``, ``cost``...).
A file of a dataset lives at ``<url>/<dataset name>/<file name>`` there.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from stratoflow.config import expand
from stratoflow.errors import Issue, TemplateError
from stratoflow.sites.catalogue import (
    SiteConfig,
    kind_of,
    parse_catalogue,
    read_catalogue,
    storage_for,
)

# The words of a storage expression (lifecycle/expression.py): an endpoint's name and its
# attributes must be writable in one, or no rule could ever select them.
WORD = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
STORAGE_TYPES = ("DISK", "TAPE")
_FIELDS = ("name", "site", "url", "attributes")


@dataclass(frozen=True)
class StorageEndpoint:
    name: str
    site: str
    url: str  # the base URL, placeholders expanded, without a trailing '/'
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return str(self.attributes["type"])


def parse_endpoints(
    doc: Any, sites: dict[str, SiteConfig], path: str = "endpoints"
) -> dict[str, StorageEndpoint]:
    """Validate the catalogue's ``endpoints`` list (absent: none); every fault at once."""
    if doc is None:
        return {}
    if not isinstance(doc, list):
        raise TemplateError(Issue(path, "expected a list of storage endpoints"))
    issues: list[Issue] = []
    found: dict[str, StorageEndpoint] = {}
    for i, entry in enumerate(doc):
        at = f"{path}[{i}]"
        if not isinstance(entry, dict):
            issues.append(Issue(at, "expected a mapping with name, site, url and attributes"))
            continue
        before = len(issues)
        issues += [
            Issue(f"{at}.{k}", f"unknown field; expected one of {', '.join(_FIELDS)}")
            for k in entry
            if k not in _FIELDS
        ]
        name = entry.get("name")
        if not isinstance(name, str) or not WORD.match(name):
            issues.append(
                Issue(
                    f"{at}.name", f"expected a name of letters, digits, '.', '_', '-', got {name!r}"
                )
            )
        elif name in found or name in sites:
            issues.append(Issue(f"{at}.name", f"{name!r} already names a site or an endpoint"))
        site = entry.get("site")
        if site not in sites:
            issues.append(
                Issue(
                    f"{at}.site",
                    f"expected a site of the catalogue ({', '.join(sites)}), got {site!r}",
                )
            )
        url = _url(entry.get("url"), f"{at}.url", issues)
        if url and site in sites:
            scheme = urlsplit(url).scheme
            if scheme not in kind_of(sites[site]).storage:
                issues.append(
                    Issue(
                        f"{at}.url",
                        f"site {site!r} (kind {sites[site].kind}) serves no {scheme}:// URLs",
                    )
                )
            else:
                fault = storage_for(url, {str(site): sites[site]}).endpoint_fault(url)
                if fault:
                    issues.append(Issue(f"{at}.url", fault))
        attributes = _attributes(entry.get("attributes"), f"{at}.attributes", issues)
        if len(issues) == before:
            found[str(name)] = StorageEndpoint(str(name), str(site), url, attributes)
    if issues:
        raise TemplateError(issues)
    return found


def _url(value: Any, at: str, issues: list[Issue]) -> str:
    if not isinstance(value, str) or not value.strip():
        issues.append(Issue(at, f"expected a base URL or an absolute path, got {value!r}"))
        return ""
    text = expand(value).rstrip("/")
    if os.path.isabs(text):
        text = "file://" + text
    parts = urlsplit(text)
    if not parts.scheme or parts.query or parts.fragment or ".." in parts.path.split("/"):
        issues.append(
            Issue(at, f"expected a base URL (scheme://...) without '..', '?' or '#', got {value!r}")
        )
        return ""
    return text


def _attributes(value: Any, at: str, issues: list[Issue]) -> dict[str, Any]:
    if not isinstance(value, dict):
        issues.append(Issue(at, "expected a mapping with at least type: DISK or TAPE"))
        return {}
    out: dict[str, Any] = {}
    for key, v in value.items():
        if not isinstance(key, str) or not WORD.match(key):
            issues.append(
                Issue(f"{at}.{key}", "an attribute name is letters, digits, '.', '_', '-'")
            )
        elif isinstance(v, bool | int | float) or (isinstance(v, str) and WORD.match(v)):
            out[key] = v
        else:
            issues.append(
                Issue(
                    f"{at}.{key}",
                    "expected a number, true/false or a word (letters, digits, '.', '_',"
                    f" '-'), got {v!r}",
                )
            )
    if value.get("type") not in STORAGE_TYPES:
        issues.append(Issue(f"{at}.type", f"expected DISK or TAPE, got {value.get('type')!r}"))
    return out


def load_endpoints(path: str | os.PathLike[str] | None = None) -> dict[str, StorageEndpoint]:
    """The storage endpoints of the site catalogue (default: the one sites are read from)."""
    doc, source = read_catalogue(path)
    sites = parse_catalogue(doc, source)
    try:
        return parse_endpoints(doc.get("endpoints"), sites)
    except TemplateError as e:
        raise TemplateError([Issue(i.path, f"{source}: {i.message}") for i in e.issues]) from e


def endpoint_for_url(url: str, endpoints: dict[str, StorageEndpoint]) -> StorageEndpoint | None:
    """The endpoint whose base URL holds ``url`` (the deepest, when bases nest)."""
    text = "file://" + url if os.path.isabs(url) else url
    if ".." in urlsplit(text).path.split("/"):
        return None  # it could climb out of the base it seems to be under
    holding = [e for e in endpoints.values() if text.startswith(e.url + "/")]
    return max(holding, key=lambda e: len(e.url), default=None)
