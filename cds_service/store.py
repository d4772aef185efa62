"""The embedded store (SQLite, WAL): the card ledger and clinician feedback. No PHI: no patient ids,
names, resource content or free-text comments; only card and suggestion uuids, rule ids,
indicators, hookInstance, times and coded override reasons.

Ledger rows are written by a background thread in batches, so the request path only enqueues;
close() (on clean shutdown) drains the queue. Feedback is written synchronously: it is the
clinician's answer and must not be lost.
"""

from __future__ import annotations

import atexit
import json
import logging
import queue
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS card_rule (
    card_uuid TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    service_id TEXT NOT NULL,
    indicator TEXT NOT NULL,
    hook_instance TEXT,
    shown_at TEXT NOT NULL,
    suggestion_uuids TEXT NOT NULL,
    PRIMARY KEY (card_uuid, rule_id)
);
CREATE INDEX IF NOT EXISTS card_rule_rule ON card_rule (rule_id);
CREATE TABLE IF NOT EXISTS feedback (
    card_uuid TEXT NOT NULL,
    service_id TEXT NOT NULL,
    outcome TEXT NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    accepted_suggestions TEXT,
    override_system TEXT,
    override_code TEXT,
    override_display TEXT,
    received_at TEXT NOT NULL,
    UNIQUE (card_uuid, outcome, outcome_timestamp)
);
CREATE TABLE IF NOT EXISTS seen_jti (
    iss TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (iss, jti)
);
"""

_STOP = object()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Store:
    def __init__(self, path: str, *, batch_seconds: float = 0.2) -> None:
        self.path = path
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._batch_seconds = batch_seconds
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._conn = self._connect()
        with self._lock:
            self._conn.executescript(SCHEMA)
        self._writer: threading.Thread | None = None
        self._closed = False
        atexit.register(self.close)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    # -- ledger (background) ----------------------------------------------------------------
    def record_cards(self, service_id: str, hook_instance: str | None, cards: list[tuple[dict, list[str]]]) -> None:
        if not cards:
            return
        shown = _now()
        rows = []
        for card, rule_ids in cards:
            suggestion_uuids = json.dumps([s["uuid"] for s in card.get("suggestions", [])])
            rows += [(card["uuid"], rule_id, service_id, card["indicator"], hook_instance, shown, suggestion_uuids)
                     for rule_id in rule_ids]
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
                with self._lock:
                    self._conn.execute("BEGIN IMMEDIATE")
                    self._conn.executemany("INSERT OR IGNORE INTO card_rule VALUES (?,?,?,?,?,?,?)", rows)
                    self._conn.execute("COMMIT")
                return
            except sqlite3.OperationalError as exc:
                with self._lock:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                log.warning("ledger write failed (%s), retrying", exc)
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
            self._conn.close()

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
        with self._lock:
            before = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany("INSERT OR IGNORE INTO feedback VALUES (?,?,?,?,?,?,?,?,?)", rows)
                self._conn.execute("COMMIT")
            except Exception:
                self._conn.execute("ROLLBACK")
                raise
            return self._conn.total_changes - before

    # -- report ---------------------------------------------------------------------------
    def report(self) -> list[dict]:
        self.flush()
        with self._lock:
            shown = dict(self._conn.execute(
                "SELECT rule_id, COUNT(DISTINCT card_uuid) FROM card_rule GROUP BY rule_id").fetchall())
            outcomes = self._conn.execute(
                "SELECT c.rule_id, f.outcome, COUNT(DISTINCT f.card_uuid) FROM feedback f "
                "JOIN card_rule c ON c.card_uuid = f.card_uuid GROUP BY c.rule_id, f.outcome").fetchall()
            reasons = self._conn.execute(
                "SELECT c.rule_id, f.override_code, COUNT(*) FROM feedback f JOIN card_rule c "
                "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' AND f.override_code IS NOT NULL "
                "GROUP BY c.rule_id, f.override_code").fetchall()
        rows = {rule: {"rule": rule, "shown": n, "accepted": 0, "overridden": 0, "override_reasons": {}}
                for rule, n in shown.items()}
        for rule, outcome, n in outcomes:
            rows[rule][outcome] = n
        for rule, code, n in reasons:
            rows[rule]["override_reasons"][code] = n
        return [rows[k] for k in sorted(rows)]

    def unmatched_feedback(self) -> int:
        with self._lock:
            return self._conn.execute(
                "SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS "
                "(SELECT 1 FROM card_rule c WHERE c.card_uuid = f.card_uuid)").fetchone()[0]

    # -- JWT replay cache (shared by every worker and instance on this database) ---------------
    def remember_jti(self, iss: str, jti: str, expires_at: int) -> bool:
        """Record a token id; False when it was seen before (a replay)."""
        now = int(time.time())
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                if now % 64 == 0:  # now and then, forget tokens that can no longer be replayed
                    self._conn.execute("DELETE FROM seen_jti WHERE expires_at < ?", (now,))
                self._conn.execute("INSERT INTO seen_jti VALUES (?,?,?)", (iss, jti, expires_at))
                self._conn.execute("COMMIT")
                return True
            except sqlite3.IntegrityError:
                self._conn.execute("ROLLBACK")
                return False
            except Exception:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

    def ping(self) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1").fetchone() == (1,)
