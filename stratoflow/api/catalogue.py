"""What the API offers: the template catalogue (compiled, cached) and the site catalogue."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# A catalogue entry is a plain file name; this pattern alone already refuses separators.
TEMPLATE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}\.ya?ml$")
# Capacity fields a site may declare. Only these are shown: the rest of a site's
# configuration may hold endpoints, credentials or paths that are not the caller's business.
CAPACITY_KEYS = ("cores", "memory", "gpus", "max_instances")


class BadTemplateName(ValueError):
    """The requested template is not a catalogue file name."""


def catalogue_dir() -> Path:
    from stratoflow.registration import catalogue_dir as _dir

    return _dir()


def catalogue_files() -> dict[str, Path]:
    """name -> path of every catalogue template (regular files only)."""
    directory = catalogue_dir()
    return {
        p.name: p
        for p in sorted(directory.glob("*.yaml"))
        if p.is_file() and p.resolve().parent == directory.resolve()
    }


def resolve_template(name: str) -> Path:
    """The catalogue file called ``name``. Only names listed in the catalogue directory are
    accepted, so no path (``../../etc/passwd``, absolute, symlinked out) can be reached."""
    if (
        not isinstance(name, str)
        or "/" in name
        or "\\" in name
        or ".." in name
        or not TEMPLATE_NAME.match(name)
    ):
        raise BadTemplateName(
            f"{name!r} is not a catalogue template name (a plain file name such as "
            "'dimuon_campaign.yaml'; see GET /templates)"
        )
    path = catalogue_files().get(name)
    if path is None:
        raise BadTemplateName(f"no template {name!r} in the catalogue (see GET /templates)")
    return path


_cache: dict[str, tuple[tuple[int, int], dict[str, Any]]] = {}
_cache_lock = threading.Lock()


def _describe(path: Path) -> dict[str, Any]:
    from stratoflow.errors import TemplateError
    from stratoflow.registration import compile_template

    try:
        _topology, plan = compile_template(str(path))
    except TemplateError as exc:
        # A broken catalogue entry is listed with its faults rather than hidden.
        return {
            "name": path.name,
            "dag_id": None,
            "description": None,
            "inputs": {},
            "errors": [{"loc": i.path, "msg": i.message} for i in exc.issues],
        }
    return {
        "name": path.name,
        "dag_id": plan["dag_id"],
        "description": plan.get("description"),
        "inputs": plan.get("inputs", {}),
    }


def list_templates() -> list[dict[str, Any]]:
    """Every catalogue template, compiled once per (mtime, size) of its file."""
    out = []
    files = catalogue_files()
    for name, path in files.items():
        try:
            st = path.stat()
        except OSError:
            continue
        stamp = (st.st_mtime_ns, st.st_size)
        with _cache_lock:
            hit = _cache.get(name)
        if hit is None or hit[0] != stamp:
            hit = (stamp, _describe(path))
            with _cache_lock:
                _cache[name] = hit
        out.append(hit[1])
    with _cache_lock:  # forget templates that were removed from the catalogue
        for gone in set(_cache) - set(files):
            del _cache[gone]
    return out


def _capacity(site: Any) -> dict[str, Any]:
    """What the broker will use: the site's declared capacity ("auto" resolved), or
    nothing for a storage service. Never configuration beyond that."""
    from stratoflow.sites.catalogue import compute_for, runs_jobs

    if not runs_jobs(site):
        return {}
    cap = {k: site.config[k] for k in CAPACITY_KEYS if k in site.config}
    declared = compute_for(site).capacity()
    for key, value in (("cores", declared.cores), ("memory", declared.mem_bytes)):
        if value is not None:
            cap[key] = value
    return cap


def list_sites() -> list[dict[str, Any]]:
    """The site catalogue: name, kind and capacity of each site, nothing else."""
    from stratoflow.sites.catalogue import load_catalogue

    return [
        {"name": s.name, "kind": s.kind, "capacity": _capacity(s)}
        for s in load_catalogue().values()
    ]
