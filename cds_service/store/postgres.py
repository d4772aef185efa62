"""The PostgreSQL store (psycopg 3): several instances share the ledger, feedback and the JWT replay
cache, so a replayed jti is refused by any of them and `report` counts all their cards.

Every operation is bounded by `store.timeout_seconds` even when the server hangs (stopped, or a
network that drops packets): connect runs in a helper thread the caller stops waiting for,
statement_timeout and lock_timeout bound a slow but answering server, and a watchdog shuts the
socket of an operation still waiting at its deadline, which fails the operation at once.
"""

from __future__ import annotations

import hashlib
import math
import os
import socket
import threading
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psycopg

from .base import PURGE_FREE_TEXT, TABLES, SqlStore

DDL_LOCK = 7242021  # pg_advisory_xact_lock key: concurrent CREATE ... IF NOT EXISTS is not safe


class _Watchdog:
    """One thread per store: shuts the socket of an operation still running at its deadline."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._armed: tuple[int, float] | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="store-watchdog", daemon=True)
        self._thread.start()

    def arm(self, fd: int, deadline: float) -> None:
        with self._cond:
            self._armed = (fd, deadline)
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._armed = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._armed is None:
                    self._cond.wait()
                    continue
                fd, deadline = self._armed
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left + 0.05)
                    continue
                self._armed = None
                try:  # the operation's thread then gets an error from psycopg at once
                    with socket.socket(fileno=os.dup(fd)) as sock:
                        sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class PostgresStore(SqlStore):
    kind = "postgresql"
    unavailable_errors = (psycopg.OperationalError, psycopg.InterfaceError, TimeoutError)

    def __init__(self, dsn: str, schema: str | None = None, **options) -> None:
        super().__init__(**options)
        self.dsn, self.schema = dsn, schema
        self._watchdog = _Watchdog()
        where = hashlib.sha256(f"{dsn}|{schema}".encode()).hexdigest()[:16]
        self._track_losses(Path(tempfile.gettempdir()) / "cds-service-ledger" / where)
        try:  # open now when possible; a server that is down at start is reached on first use
            self._run(lambda cur: None, "open")
        except Exception:
            pass

    def _connect(self, seconds: float):
        ms = max(1, int(seconds * 1000))
        conn = psycopg.connect(self.dsn, autocommit=False, connect_timeout=max(2, math.ceil(seconds)),
                               options=f"-c statement_timeout={ms} -c lock_timeout={ms}")
        return conn

    def _open(self, deadline: float):
        outcome: dict = {}
        done = threading.Event()
        guard = threading.Lock()

        def attempt():
            try:
                conn = self._connect(max(0.1, deadline - time.monotonic()))
            except Exception as exc:
                outcome["error"] = exc
                done.set()
                return
            with guard:
                if outcome.get("abandoned"):
                    conn.close()  # the caller has moved on
                else:
                    outcome["conn"] = conn
            done.set()

        threading.Thread(target=attempt, name="store-connect", daemon=True).start()
        done.wait(max(0.0, deadline - time.monotonic()))
        with guard:
            if "conn" not in outcome:
                outcome["abandoned"] = True
                error = outcome.get("error")
                if isinstance(error, self.unavailable_errors):
                    raise error
                raise TimeoutError("connect did not finish within the deadline") from None
        conn = outcome["conn"]
        try:
            with self._statement_deadline(conn, deadline), conn.cursor() as cur:
                if self.schema:  # a session setting: it lasts for the connection, across transactions
                    cur.execute(f'SET search_path TO "{self.schema}"')
                if not self._schema_ready:
                    # Several workers and instances start at once: serialise all of the DDL under one lock.
                    cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK,))
                    if self.schema:
                        cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
                    for ddl in TABLES:
                        cur.execute(ddl)
                    cur.execute(PURGE_FREE_TEXT)
                conn.commit()
            self._schema_ready = True
        except BaseException:
            self._close_connection(conn)
            raise
        return conn

    @contextmanager
    def _statement_deadline(self, conn, deadline: float):
        self._watchdog.arm(conn.pgconn.socket, deadline)
        try:
            yield
        finally:
            self._watchdog.disarm()

    def _begin(self, conn, cur, write: bool, seconds: float) -> None:
        if not write:  # rows(sql) only reads
            cur.execute("SET TRANSACTION READ ONLY")
        if abs(seconds - self.timeout) > 1e-6:  # the session default is store.timeout_seconds
            cur.execute(f"SET LOCAL statement_timeout = {max(1, int(seconds * 1000))}")

    def close(self) -> None:
        super().close()
        self._watchdog.stop()

    def _execute(self, cur, sql: str, params=()):
        cur.execute(sql.replace("?", "%s"), params)
        return cur

    def _executemany(self, cur, sql: str, rows) -> int:
        cur.executemany(sql.replace("?", "%s"), rows)
        return cur.rowcount
