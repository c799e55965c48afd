"""Connection handling shared by the store's parts: short transactions, one per call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from sqlalchemy import Connection, Engine

from stratoflow.store.engine import WRITE_OPTION

# Retries of an insert that lost a race on a unique key: the winner's row is then visible.
RACE_RETRIES = 5


class StoreBase:
    def __init__(self, engine: Engine, *, shared: bool = False) -> None:
        self._engine = engine
        # A shared engine (engine.shared_engine) outlives this store: close() leaves it.
        self._shared = shared
        self._writer = engine.execution_options(**{WRITE_OPTION: True})
        # True when the Store.open() that made this store ran migrations (for logs/tests).
        self.migrated = False

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        return self._engine.url.render_as_string(hide_password=True)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        # On SQLite this starts with BEGIN IMMEDIATE: the write lock is taken up front so a
        # read-then-write cannot be overtaken by another process (see engine.py).
        with self._writer.begin() as conn:
            yield conn

    def close(self) -> None:
        if not self._shared:
            self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"
