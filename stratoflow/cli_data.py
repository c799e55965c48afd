"""The CLI's replica-catalogue commands: dataset register|list|show."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import yaml

from stratoflow.errors import Issue, TemplateError

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
MAX_MANIFEST_BYTES = 16 << 20


def _meta(pairs: list[str] | None) -> dict[str, str]:
    meta: dict[str, str] = {}
    for i, pair in enumerate(pairs or []):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise TemplateError(Issue(f"meta[{i}]", f"expected KEY=VALUE, got {pair!r}"))
        meta[key.strip()] = value
    return meta


def _local_files(paths: list[str]) -> list[Any]:
    """Files on this machine: their checksums are computed here, so the replicas are
    registered verified."""
    from stratoflow.lifecycle.model import NewFile
    from stratoflow.sites.checksums import file_checksums
    from stratoflow.sites.files import url_to_path

    found, issues = [], []
    for i, given in enumerate(paths):
        try:
            path = url_to_path(given if "://" in given else os.path.abspath(given))
            size, adler32, sha256 = file_checksums(path)
        except (OSError, ValueError) as e:
            issues.append(Issue(f"files[{i}]", f"cannot read {given}: {e}"))
            continue
        found.append(NewFile(path.name, path.as_uri(), size, adler32, sha256))
    if issues:
        raise TemplateError(issues)
    return found


def _manifest(path: str) -> list[Any]:
    """Files described by a JSON or YAML list of {name, url, size, adler32, sha256}: the
    checksums are the submitter's, so the replicas are registered unverified."""
    from stratoflow.lifecycle.model import NewFile

    p = Path(path)
    try:
        if p.stat().st_size > MAX_MANIFEST_BYTES:
            raise TemplateError(Issue("manifest", f"{path} is larger than 16 MiB"))
        doc = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise TemplateError(Issue("manifest", f"cannot read {path}: {e}")) from e
    if not isinstance(doc, list):
        raise TemplateError(
            Issue("manifest", "expected a list of {name, url, size, adler32, sha256}")
        )
    fields = {"name", "url", "size", "adler32", "sha256"}
    files, issues = [], []
    for i, entry in enumerate(doc):
        at = f"manifest[{i}]"
        if not isinstance(entry, dict):
            issues.append(Issue(at, "expected a mapping"))
            continue
        issues += [Issue(f"{at}.{k}", "unknown field") for k in entry if k not in fields]
        url = entry.get("url")
        if not isinstance(url, str) or not url:
            issues.append(Issue(f"{at}.url", f"expected a URL, got {url!r}"))
            continue
        name = entry.get("name", os.path.basename(url.rstrip("/")))
        checks = {k: entry.get(k) for k in ("adler32", "sha256")}
        if any(v is not None and not isinstance(v, str) for v in checks.values()):
            issues.append(Issue(at, "checksums are strings of hex digits"))
            continue
        files.append(NewFile(str(name), url, entry.get("size"), **checks))  # type: ignore[arg-type]
    if issues:
        raise TemplateError(issues)
    return files


def cmd_dataset_register(args: argparse.Namespace) -> int:
    from stratoflow.execution.datasets import register_files
    from stratoflow.lifecycle.model import check_dataset_name
    from stratoflow.store import Store, StoreError

    check_dataset_name(args.name, "name")
    if bool(args.files) == bool(args.manifest):
        raise TemplateError(Issue("files", "give local files, or --manifest, not both"))
    new_files = _manifest(args.manifest) if args.manifest else _local_files(args.files)
    with Store.open() as store:
        try:
            done = register_files(
                store,
                args.name,
                new_files,
                source=f"cli:{args.by}",
                meta=_meta(args.meta),
                verified=not args.manifest,
                endpoint=args.endpoint,
            )
        except StoreError as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_INVALID
    for r in done:
        if not (r.created or r.files_added or r.replicas_added):
            print(f"dataset {r.dataset.name}: already registered; nothing new")
            continue
        print(
            f"dataset {r.dataset.name}: {'registered' if r.created else 'updated'};"
            f" {r.files_added} new file(s), {r.replicas_added} new replica(s)"
        )
    return EXIT_OK


def cmd_dataset_list(args: argparse.Namespace) -> int:
    from stratoflow.store import Store

    with Store.open() as store:
        rows = store.datasets(args.like)
    if args.json:
        print(json.dumps(rows, indent=2, sort_keys=True, default=str))
        return EXIT_OK
    print(f"{'DATASET':<40} {'FILES':>6} {'BYTES':>14}  SOURCE")
    for r in rows:
        print(f"{r['name']:<40} {r['files']:>6} {r['bytes']:>14}  {r['source']}")
    return EXIT_OK


def cmd_dataset_show(args: argparse.Namespace) -> int:
    from stratoflow.store import NotFound, Store

    with Store.open() as store:
        try:
            dataset = store.dataset(args.name)
        except NotFound as e:
            print(f"error: {e}", file=sys.stderr)
            return EXIT_INVALID
        files = store.dataset_files(dataset.id)
        by_file: dict[int, list[Any]] = {}
        for r in store.dataset_replicas(dataset.id):
            by_file.setdefault(r.file_id, []).append(r)
    if args.json:
        doc = {
            "name": dataset.name,
            "meta": dataset.meta,
            "source": dataset.source,
            "created_at": dataset.created_at.isoformat(),
            "files": [
                {
                    "name": f.name,
                    "size": f.size,
                    "adler32": f.adler32,
                    "sha256": f.sha256,
                    "replicas": [
                        {
                            "endpoint": r.endpoint,
                            "url": r.url,
                            "state": r.state.value,
                            "verified_at": r.verified_at.isoformat() if r.verified_at else None,
                            "tombstone": r.tombstone.isoformat() if r.tombstone else None,
                        }
                        for r in by_file.get(f.id, [])
                    ],
                }
                for f in files
            ],
        }
        print(json.dumps(doc, indent=2, sort_keys=True))
        return EXIT_OK
    print(f"dataset {dataset.name}  ({len(files)} file(s), from {dataset.source})")
    for key, value in sorted(dataset.meta.items()):
        print(f"  {key}={value}")
    for f in files:
        print(f"  {f.name}  {f.size} bytes  adler32 {f.adler32 or '-'}")
        for r in by_file.get(f.id, []):
            verified = r.verified_at.strftime("%Y-%m-%d %H:%M") if r.verified_at else "never"
            print(f"    {r.endpoint:<20} {r.state.value:<13} verified {verified}  {r.url}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    sp = sub.add_parser(
        "dataset",
        help="Register, list and show datasets in the replica catalogue.",
        description="The replica catalogue's datasets: files with checksums and their "
        "replicas on the site catalogue's storage endpoints. Exit 2 for bad input.",
    )
    verbs = sp.add_subparsers(dest="verb", required=True, metavar="VERB")
    reg = verbs.add_parser(
        "register",
        help="Register files (local ones are checksummed here) as a dataset.",
        description="Register files as a dataset. Local files (paths or file:// URLs) are "
        "read and checksummed here; others come from --manifest, a JSON or YAML list of "
        "{name, url, size, adler32, sha256}, and are verified by the next policy run. Each "
        "file must lie under a storage endpoint's URL. Registering again adds only what is "
        "new; a file registered with other checksums is refused.",
    )
    reg.add_argument("name", help="the dataset name (letters, digits, . _ : - and /)")
    reg.add_argument("files", nargs="*", help="local files to register")
    reg.add_argument("--manifest", metavar="FILE", help="a list of files to register")
    reg.add_argument("--endpoint", metavar="NAME", help="the endpoint they are at")
    reg.add_argument("--meta", action="append", metavar="KEY=VALUE", help="metadata; repeat")
    reg.add_argument("--by", default=os.environ.get("USER", "cli"), help="who registers")
    reg.set_defaults(fn=cmd_dataset_register)
    ls = verbs.add_parser("list", help="List datasets.", description="List datasets by name.")
    ls.add_argument("--like", metavar="PATTERN", help="SQL LIKE pattern on the name")
    ls.add_argument("--json", action="store_true", help="print JSON")
    ls.set_defaults(fn=cmd_dataset_list)
    show = verbs.add_parser(
        "show",
        help="Show a dataset's files and replicas.",
        description="Show a dataset's files and each replica's endpoint, state and last "
        "verification. Exit 2 for an unknown name.",
    )
    show.add_argument("name")
    show.add_argument("--json", action="store_true", help="print JSON")
    show.set_defaults(fn=cmd_dataset_show)
