"""The store: card ledger, clinician feedback and the JWT replay cache. No PHI: no patient ids,
names, resource content or free-text comments; only card and suggestion uuids, rule ids,
indicators, hookInstance, times and coded override reasons.

Two backends, chosen by CDS_SERVICE_DB: a file path → SQLite (WAL, the embedded default);
`postgresql://…` → PostgreSQL through psycopg 3, so several instances behave as one service
(a replayed jti is refused by any of them; `report` counts all their cards).

Ledger rows are written by a background thread in batches, so the request path only enqueues;
close() (on clean shutdown) drains the queue. Feedback and jti are written synchronously.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)

TABLES = [
    """CREATE TABLE IF NOT EXISTS card_rule (
        card_uuid TEXT NOT NULL, rule_id TEXT NOT NULL, service_id TEXT NOT NULL, indicator TEXT NOT NULL,
        hook_instance TEXT, shown_at TEXT NOT NULL, suggestion_uuids TEXT NOT NULL,
        PRIMARY KEY (card_uuid, rule_id))""",
    "CREATE INDEX IF NOT EXISTS card_rule_rule ON card_rule (rule_id)",
    """CREATE TABLE IF NOT EXISTS feedback (
        card_uuid TEXT NOT NULL, service_id TEXT NOT NULL, outcome TEXT NOT NULL, outcome_timestamp TEXT NOT NULL,
        accepted_suggestions TEXT, override_system TEXT, override_code TEXT, override_display TEXT,
        received_at TEXT NOT NULL, UNIQUE (card_uuid, outcome, outcome_timestamp))""",
    """CREATE TABLE IF NOT EXISTS seen_jti (
        iss TEXT NOT NULL, jti TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (iss, jti))""",
]
INSERT_CARD = "INSERT INTO card_rule VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
INSERT_FEEDBACK = "INSERT INTO feedback VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
INSERT_JTI = "INSERT INTO seen_jti VALUES (?,?,?) ON CONFLICT DO NOTHING"

_STOP = object()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class _Sqlite:
    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(path, timeout=10, check_same_thread=False, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("PRAGMA busy_timeout=10000")
        for ddl in TABLES:
            self.conn.execute(ddl)

    @contextmanager
    def transaction(self):
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    def executemany(self, cur, sql: str, rows) -> int:
        return cur.executemany(sql, rows).rowcount

    def query(self, sql: str, params=()) -> list[tuple]:
        return self.conn.execute(sql, params).fetchall()

    def dump(self) -> str:
        return "\n".join(self.conn.iterdump())

    def close(self) -> None:
        self.conn.close()


class _Postgres:
    def __init__(self, dsn: str, schema: str | None) -> None:
        import psycopg
        self.psycopg = psycopg
        self.dsn, self.schema = dsn, schema
        self.conn = None
        self._connect()
        with self.transaction() as cur:
            # Several workers and instances start at once, and IF NOT EXISTS does not make
            # concurrent CREATE SCHEMA/TABLE safe: serialise all of the DDL under one lock.
            cur.execute("SELECT pg_advisory_xact_lock(7242021)")
            if schema:
                cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
            for ddl in TABLES:
                cur.execute(ddl)

    def _connect(self):
        self.conn = self.psycopg.connect(self.dsn, autocommit=False, connect_timeout=5)
        if self.schema:  # a session setting: it lasts for the connection, across transactions
            with self.conn.cursor() as cur:
                cur.execute(f'SET search_path TO "{self.schema}"')
            self.conn.commit()

    @staticmethod
    def _sql(sql: str) -> str:
        return sql.replace("?", "%s")

    @contextmanager
    def transaction(self):
        if self.conn is None or self.conn.closed or self.conn.broken:
            self._connect()
        try:
            with self.conn.cursor() as cur:
                yield _PgCursor(cur, self)
            self.conn.commit()
        except BaseException:
            if not self.conn.closed:
                self.conn.rollback()
            raise

    def executemany(self, cur, sql: str, rows) -> int:
        return cur.executemany(sql, rows)

    def query(self, sql: str, params=()) -> list[tuple]:
        with self.transaction() as cur:
            return cur.execute(sql, params).fetchall()

    def dump(self) -> str:
        rows = []
        with self.transaction() as cur:
            for table in ("card_rule", "feedback", "seen_jti"):
                rows += [repr(r) for r in cur.execute(f"SELECT * FROM {table}").fetchall()]
        return "\n".join(rows)

    def close(self) -> None:
        if self.conn is not None and not self.conn.closed:
            self.conn.close()


class _PgCursor:
    """A cursor speaking the store's `?` placeholders."""

    def __init__(self, cur, backend: _Postgres):
        self.cur, self.backend = cur, backend

    def execute(self, sql: str, params=()):
        self.cur.execute(self.backend._sql(sql), params)
        return self.cur

    def executemany(self, sql: str, rows) -> int:
        self.cur.executemany(self.backend._sql(sql), rows)
        return self.cur.rowcount


class Store:
    def __init__(self, target: str, *, schema: str | None = None, batch_seconds: float = 0.2) -> None:
        self.target = target
        self.kind = "postgresql" if re.match(r"postgres(ql)?://", target) else "sqlite"
        self._backend = _Postgres(target, schema) if self.kind == "postgresql" else _Sqlite(target)
        self._batch_seconds = batch_seconds
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)

    # -- ledger (background) ----------------------------------------------------------------
    def record_cards(self, service_id: str, hook_instance: str | None,
                     cards: list[tuple[dict, dict[str, list[str]]]]) -> None:
        """cards: (card, {rule id: uuids of the suggestions that rule proposed}); an accepted
        suggestion is credited to the rules that proposed it, an override to every rule of the card."""
        if not cards:
            return
        shown = _now()
        rows = []
        for card, rule_suggestions in cards:
            rows += [(card["uuid"], rule_id, service_id, card["indicator"], hook_instance, shown, json.dumps(uuids))
                     for rule_id, uuids in rule_suggestions.items()]
        self._ensure_writer()
        self._queue.put(rows)

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            with self._lock:
                if self._writer is None or not self._writer.is_alive():
                    self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        while True:
            batch: list[tuple] = []
            waiters: list[threading.Event] = []
            stop = False
            item = self._queue.get()
            deadline = time.monotonic() + self._batch_seconds
            while True:
                if item is _STOP:
                    stop = True
                elif isinstance(item, threading.Event):
                    waiters.append(item)  # a flush: write now
                else:
                    batch.extend(item)
                if stop or waiters:
                    break
                try:
                    item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
            if batch:
                self._insert_cards(batch)
            for w in waiters:
                w.set()
            if stop:
                return

    def _insert_cards(self, rows: list[tuple]) -> None:
        for attempt in range(5):
            try:
                with self._lock, self._backend.transaction() as cur:
                    self._backend.executemany(cur, INSERT_CARD, rows)
                return
            except Exception as exc:  # sqlite3 / psycopg operational errors: retry, then give up loudly
                log.warning("ledger write failed (%s), retrying", type(exc).__name__)
                time.sleep(0.1 * (attempt + 1))
        log.error("ledger write failed; %d rows lost", len(rows))

    def flush(self) -> None:
        """Write everything queued so far (tests, report, shutdown)."""
        if self._writer is not None and self._writer.is_alive():
            done = threading.Event()
            self._queue.put(done)
            if done.wait(timeout=30):
                return
        rows = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, list):
                rows.extend(item)
        if rows:
            self._insert_cards(rows)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._writer is not None and self._writer.is_alive():
            self._queue.put(_STOP)
            self._writer.join(timeout=10)
        self.flush()
        with self._lock:
            self._backend.close()

    # -- feedback (synchronous, idempotent) -----------------------------------------------
    def add_feedback(self, service_id: str, items: list[dict]) -> int:
        rows = []
        received = _now()
        for fb in items:
            reason = (fb.get("overrideReason") or {}).get("reason") or {}
            accepted = [s["id"] for s in fb.get("acceptedSuggestions") or []]
            rows.append((fb["card"], service_id, fb["outcome"], fb["outcomeTimestamp"],
                         json.dumps(accepted) if accepted else None, reason.get("system"), reason.get("code"),
                         reason.get("display"), received))
        with self._lock, self._backend.transaction() as cur:
            return self._backend.executemany(cur, INSERT_FEEDBACK, rows)

    # -- JWT replay cache (shared by every worker and instance on this database) ---------------
    def remember_jti(self, iss: str, jti: str, expires_at: int) -> bool:
        """Record a token id; False when it was seen before (a replay)."""
        now = int(time.time())
        with self._lock, self._backend.transaction() as cur:
            if now % 64 == 0:  # now and then, forget tokens that can no longer be replayed
                cur.execute("DELETE FROM seen_jti WHERE expires_at < ?", (now,))
            return self._backend.executemany(cur, INSERT_JTI, [(iss, jti, expires_at)]) == 1

    # -- report ---------------------------------------------------------------------------
    def report(self) -> list[dict]:
        self.flush()
        with self._lock:
            shown = dict(self._backend.query(
                "SELECT rule_id, COUNT(DISTINCT card_uuid) FROM card_rule GROUP BY rule_id"))
            overridden = self._backend.query(
                "SELECT c.rule_id, COUNT(DISTINCT f.card_uuid) FROM feedback f JOIN card_rule c "
                "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' GROUP BY c.rule_id")
            accepts = self._backend.query(
                "SELECT c.rule_id, c.suggestion_uuids, f.card_uuid, f.outcome_timestamp, f.accepted_suggestions "
                "FROM feedback f JOIN card_rule c ON c.card_uuid = f.card_uuid WHERE f.outcome = 'accepted'")
            reasons = self._backend.query(
                "SELECT c.rule_id, f.override_code, COUNT(*) FROM feedback f JOIN card_rule c "
                "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' AND f.override_code IS NOT NULL "
                "GROUP BY c.rule_id, f.override_code")
        rows = {rule: {"rule": rule, "shown": n, "accepted": 0, "overridden": 0, "override_reasons": {}}
                for rule, n in shown.items()}
        for rule, n in overridden:
            rows[rule]["overridden"] = n
        # An accepted suggestion counts for every rule that proposed it, and for no other rule of the card.
        accepted: dict[str, set] = {}
        for rule, proposed, card, when, chosen in accepts:
            if set(json.loads(chosen or "[]")) & set(json.loads(proposed or "[]")):
                accepted.setdefault(rule, set()).add((card, when))
        for rule, events in accepted.items():
            rows[rule]["accepted"] = len(events)
        for rule, code, n in reasons:
            rows[rule]["override_reasons"][code] = n
        return [rows[k] for k in sorted(rows)]

    def unmatched_feedback(self) -> int:
        with self._lock:
            return self._backend.query(
                "SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS "
                "(SELECT 1 FROM card_rule c WHERE c.card_uuid = f.card_uuid)")[0][0]

    def count(self, table: str) -> int:
        assert table in {"card_rule", "feedback", "seen_jti"}
        with self._lock:
            return self._backend.query(f"SELECT COUNT(*) FROM {table}")[0][0]

    def rows(self, sql: str) -> list[tuple]:
        """Read-only query for tests and `report` (the store's own tables only)."""
        with self._lock:
            return self._backend.query(sql)

    def dump(self) -> str:
        with self._lock:
            return self._backend.dump()

    def ping(self) -> bool:
        with self._lock:
            return self._backend.query("SELECT 1")[0][0] == 1
