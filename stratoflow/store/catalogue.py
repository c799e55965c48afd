"""The replica catalogue's reads and writes: endpoints, datasets, files and replicas.

Registration is idempotent: registering what is known already changes nothing, so a
campaign's stage-out task may register again on retry. A file registered again with other
checksums or size is refused, never overwritten.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Row, exc, func, insert, select, update

from stratoflow.lifecycle.model import (
    Dataset,
    FileRecord,
    NewFile,
    Registration,
    Replica,
    ReplicaState,
)
from stratoflow.store.base import RACE_RETRIES, StoreBase
from stratoflow.store.models import NotFound, StoreError
from stratoflow.store.schema import datasets, files, replicas, storage_endpoints, utcnow

# Rows per statement: within SQLite's 32766 bound parameters for an IN list or a batch.
CHUNK = 5000


def chunks(items: Sequence[Any], size: int = CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _dataset(row: Row[Any]) -> Dataset:
    m = row._mapping
    return Dataset(m["id"], m["name"], dict(m["meta"] or {}), m["source"], m["created_at"])


def _file(row: Row[Any]) -> FileRecord:
    m = row._mapping
    return FileRecord(m["id"], m["dataset_id"], m["name"], m["size"], m["adler32"], m["sha256"])


def _replica(row: Row[Any]) -> Replica:
    m = row._mapping
    return Replica(
        m["id"],
        m["file_id"],
        m["endpoint"],
        m["url"],
        ReplicaState(m["state"]),
        m["verified_at"],
        m["tombstone"],
        m["reason"],
    )


class CatalogueOps(StoreBase):
    # -- endpoints ---------------------------------------------------------------------------

    def sync_endpoints(self, endpoints: Iterable[Mapping[str, Any]]) -> None:
        """Record the site catalogue's endpoints (name, site, url, attributes). An endpoint
        that left the catalogue keeps its row: its replicas still name it."""
        now = utcnow()
        wanted = {e["name"]: e for e in endpoints}
        with self._write() as conn:
            have = {r.name: r for r in conn.execute(select(storage_endpoints))}
            for name, e in wanted.items():
                values = {"site": e["site"], "url": e["url"], "attributes": dict(e["attributes"])}
                old = have.get(name)
                if old is None:
                    conn.execute(
                        insert(storage_endpoints).values(name=name, updated_at=now, **values)
                    )
                elif (old.site, old.url, old.attributes) != tuple(values.values()):
                    conn.execute(
                        update(storage_endpoints)
                        .where(storage_endpoints.c.name == name)
                        .values(updated_at=now, **values)
                    )

    def storage_endpoints(self) -> list[dict[str, Any]]:
        with self._read() as conn:
            rows = conn.execute(select(storage_endpoints).order_by(storage_endpoints.c.name))
            return [dict(r._mapping) for r in rows]

    # -- datasets ----------------------------------------------------------------------------

    def register_dataset(
        self,
        name: str,
        new_files: Sequence[NewFile],
        *,
        endpoint: str,
        source: str,
        meta: Mapping[str, Any] | None = None,
        verified: bool = True,
    ) -> Registration:
        """Add the dataset (if new), its files (if new) and their replicas at ``endpoint``
        (if new). ``verified``: the checksums were computed from the replicas just now.
        A file known with other checksums or size is a conflict: nothing is written."""
        for _ in range(RACE_RETRIES):
            try:
                with self._write() as conn:
                    return self._register(conn, name, new_files, endpoint, source, meta, verified)
            except exc.IntegrityError:
                continue  # a concurrent registration of the same names won; read its rows
        raise StoreError(f"could not register dataset {name!r}: concurrent registrations")

    def _register(
        self,
        conn: Connection,
        name: str,
        new_files: Sequence[NewFile],
        endpoint: str,
        source: str,
        meta: Mapping[str, Any] | None,
        verified: bool,
    ) -> Registration:
        now = utcnow()
        row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        created = row is None
        if row is None:
            conn.execute(
                insert(datasets).values(
                    name=name, meta=dict(meta or {}), source=source, created_at=now
                )
            )
            row = conn.execute(select(datasets).where(datasets.c.name == name)).one()
        elif meta and dict(row.meta or {}) != {**(row.meta or {}), **meta}:
            conn.execute(
                update(datasets).where(datasets.c.id == row.id).values(meta={**row.meta, **meta})
            )
            row = conn.execute(select(datasets).where(datasets.c.id == row.id)).one()
        dataset = _dataset(row)
        known = self._files_named(conn, dataset.id, [f.name for f in new_files])
        conflicts = [
            f"{f.name}: registered with size {k.size}, adler32 {k.adler32}, sha256 {k.sha256};"
            f" now size {f.size}, adler32 {f.adler32}, sha256 {f.sha256}"
            for f in new_files
            if (k := known.get(f.name)) is not None and not _same_content(k, f)
        ]
        if conflicts:
            raise StoreError(
                f"dataset {name!r}: {len(conflicts)} file(s) differ from their registration"
                f" (a new version needs a new dataset name): " + "; ".join(conflicts[:5])
            )
        added = [f for f in new_files if f.name not in known]
        for part in chunks(added):
            conn.execute(
                insert(files),
                [
                    {
                        "dataset_id": dataset.id,
                        "name": f.name,
                        "size": f.size,
                        "adler32": f.adler32,
                        "sha256": f.sha256,
                        "created_at": now,
                    }
                    for f in part
                ],
            )
        if added:
            known = self._files_named(conn, dataset.id, [f.name for f in new_files])
        ids = [known[f.name].id for f in new_files]
        at_endpoint: set[int] = set()
        for part in chunks(ids):
            at_endpoint.update(
                conn.execute(
                    select(replicas.c.file_id).where(
                        replicas.c.endpoint == endpoint, replicas.c.file_id.in_(part)
                    )
                ).scalars()
            )
        rows = [
            {
                "file_id": known[f.name].id,
                "endpoint": endpoint,
                "url": f.url,
                "state": ReplicaState.AVAILABLE.value,
                "verified_at": now if verified else None,
                "created_at": now,
                "updated_at": now,
            }
            for f in new_files
            if known[f.name].id not in at_endpoint
        ]
        for part in chunks(rows):
            conn.execute(insert(replicas), list(part))
        return Registration(dataset, len(added), len(rows), created)

    def _files_named(
        self, conn: Connection, dataset_id: int, names: Sequence[str]
    ) -> dict[str, FileRecord]:
        found: dict[str, FileRecord] = {}
        for part in chunks(names):
            q = select(files).where(files.c.dataset_id == dataset_id, files.c.name.in_(part))
            found.update((r.name, _file(r)) for r in conn.execute(q))
        return found

    def datasets(self, pattern: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Datasets with their file count and bytes, by name; ``pattern``: a LIKE pattern."""
        q = (
            select(
                datasets,
                func.count(files.c.id).label("files"),
                func.coalesce(func.sum(files.c.size), 0).label("bytes"),
            )
            .select_from(datasets.outerjoin(files, files.c.dataset_id == datasets.c.id))
            .group_by(datasets.c.id)
            .order_by(datasets.c.name)
            .limit(limit)
        )
        if pattern:
            q = q.where(datasets.c.name.like(pattern, escape="\\"))
        with self._read() as conn:
            return [dict(r._mapping) for r in conn.execute(q)]

    def dataset(self, name: str) -> Dataset:
        with self._read() as conn:
            row = conn.execute(select(datasets).where(datasets.c.name == name)).first()
        if row is None:
            raise NotFound(f"no dataset named {name!r}")
        return _dataset(row)

    def dataset_files(self, dataset_id: int) -> list[FileRecord]:
        q = select(files).where(files.c.dataset_id == dataset_id).order_by(files.c.name)
        with self._read() as conn:
            return [_file(r) for r in conn.execute(q)]

    def dataset_replicas(self, dataset_id: int) -> list[Replica]:
        q = (
            select(replicas)
            .join(files, files.c.id == replicas.c.file_id)
            .where(files.c.dataset_id == dataset_id)
            .order_by(replicas.c.file_id, replicas.c.endpoint)
        )
        with self._read() as conn:
            return [_replica(r) for r in conn.execute(q)]


def _same_content(known: FileRecord, new: NewFile) -> bool:
    if known.size != new.size:
        return False
    return all(
        a is None or b is None or a == b
        for a, b in ((known.adler32, new.adler32), (known.sha256, new.sha256))
    )
