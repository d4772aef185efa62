"""The SQLite store: a file beside the service (WAL, so every gunicorn worker of the machine shares it)."""

from __future__ import annotations

import sqlite3
import time
from contextlib import contextmanager
from pathlib import Path

from .base import PURGE_FREE_TEXT, TABLES, SqlStore


class SqliteStore(SqlStore):
    kind = "sqlite"
    # The file cannot be opened, is read-only, full, locked past the deadline, or the statement was
    # interrupted at the deadline: retry later on a new connection. Other errors are about a row.
    unavailable_errors = (sqlite3.OperationalError, sqlite3.InterfaceError, OSError)

    def __init__(self, path: str, **options) -> None:
        super().__init__(**options)
        self.path = path
        self._memory = path == ":memory:"
        if not self._memory:
            self._track_losses(Path(path + ".pending"))
        try:  # open now when possible; a store that is down at start is opened on first use
            self._run(lambda cur: None, "open")
        except Exception:
            pass

    def _open(self, deadline: float):
        if not self._memory:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        wait = max(0.0, deadline - time.monotonic())
        conn = sqlite3.connect(self.path, timeout=wait, check_same_thread=False, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("BEGIN IMMEDIATE")  # fails at once on a read-only file: never keep such a connection
            for ddl in TABLES:
                conn.execute(ddl)
            conn.execute(PURGE_FREE_TEXT)
            conn.execute("COMMIT")
        except BaseException:
            conn.close()
            raise
        return conn

    def _close_connection(self, conn) -> None:
        if not self._memory:  # an in-memory store is its connection
            super()._close_connection(conn)

    def _begin(self, conn, cur, write: bool, seconds: float) -> None:
        conn.execute(f"PRAGMA busy_timeout={int(seconds * 1000)}")
        conn.execute(f"PRAGMA query_only={'OFF' if write else 'ON'}")  # rows(sql) only reads
        # IMMEDIATE takes the write lock first (waiting up to busy_timeout): a deferred transaction
        # that reads and then writes can fail at once under concurrent writers.
        cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")

    @contextmanager
    def _statement_deadline(self, conn, deadline: float):
        # Interrupt a statement still running at the deadline (checked every 10,000 VM steps).
        conn.set_progress_handler(lambda: int(time.monotonic() > deadline), 10_000)
        try:
            yield
        finally:
            conn.set_progress_handler(None, 0)

    def dump(self) -> str:
        return self._run(lambda cur: "\n".join(self._conn.iterdump()), "read", timeout=max(self.timeout, 30.0),
                         write=False)
