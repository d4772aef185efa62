"""What both SQL backends share: the ledger's write queue and retry, deadlines on the store lock,
the checks on stored text, feedback and the report. A backend supplies a connection and says which
of its errors mean "the database cannot be used now" (retry later) rather than "this row is bad".

No PHI: no patient ids, names, resource content or free text; only card and suggestion uuids, rule
ids, indicators, hookInstance, times and coded override reasons.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

from .. import metrics
from .protocol import StoreUnavailable, UnstorableValue
from .text import HOOK_INSTANCE_MAX, ID_MAX, checked, feedback_problems, text_problem

log = logging.getLogger("cds_service.store")

TABLES = [
    """CREATE TABLE IF NOT EXISTS card_rule (
        card_uuid TEXT NOT NULL, rule_id TEXT NOT NULL, service_id TEXT NOT NULL, indicator TEXT NOT NULL,
        hook_instance TEXT, shown_at TEXT NOT NULL, suggestion_uuids TEXT NOT NULL,
        PRIMARY KEY (card_uuid, rule_id))""",
    "CREATE INDEX IF NOT EXISTS card_rule_rule ON card_rule (rule_id)",
    # override_display is kept for older databases and always NULL: free text may name the patient.
    """CREATE TABLE IF NOT EXISTS feedback (
        card_uuid TEXT NOT NULL, service_id TEXT NOT NULL, outcome TEXT NOT NULL, outcome_timestamp TEXT NOT NULL,
        accepted_suggestions TEXT, override_system TEXT, override_code TEXT, override_display TEXT,
        received_at TEXT NOT NULL, UNIQUE (card_uuid, outcome, outcome_timestamp))""",
    """CREATE TABLE IF NOT EXISTS seen_jti (
        iss TEXT NOT NULL, jti TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (iss, jti))""",
    # One row the readiness probe rewrites: proof that the store takes writes now.
    "CREATE TABLE IF NOT EXISTS write_probe (id INTEGER PRIMARY KEY, written_at TEXT NOT NULL)",
    # Remembered overrides (overrides.py): which patient, by keyed pseudonym only, each returned card
    # was about, and the fingerprint of each finding on it. Feedback on the card joins it by uuid, in
    # whichever order the two arrive. order_token is a keyed hash of the draft order's id ('' = none).
    """CREATE TABLE IF NOT EXISTS card_link (
        card_uuid TEXT NOT NULL, rule_id TEXT NOT NULL, pseudonym TEXT NOT NULL, service_id TEXT NOT NULL,
        order_token TEXT NOT NULL, indicator TEXT NOT NULL, band INTEGER NOT NULL, partners TEXT NOT NULL,
        digest TEXT NOT NULL, evaluated_on TEXT NOT NULL, shown_at TEXT NOT NULL, PRIMARY KEY (card_uuid, rule_id))""",
    "CREATE INDEX IF NOT EXISTS card_link_pseudonym ON card_link (pseudonym)",
    # Findings withheld: `override` (quieted after an override), `repeat` (shown on order-select already).
    """CREATE TABLE IF NOT EXISTS quieted (
        rule_id TEXT NOT NULL, service_id TEXT NOT NULL, kind TEXT NOT NULL, quieted_at TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS quieted_rule ON quieted (rule_id)",
]
STORE_TABLES = ("card_rule", "feedback", "seen_jti", "card_link", "quieted")
# Free text stored by earlier versions is removed when a store opens.
PURGE_FREE_TEXT = "UPDATE feedback SET override_display = NULL WHERE override_display IS NOT NULL"
INSERT_CARD = "INSERT INTO card_rule VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
INSERT_FEEDBACK = "INSERT INTO feedback VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
INSERT_JTI = "INSERT INTO seen_jti VALUES (?,?,?) ON CONFLICT DO NOTHING"
INSERT_LINK = "INSERT INTO card_link VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT DO NOTHING"
INSERT_QUIETED = "INSERT INTO quieted VALUES (?,?,?,?)"
LINK_FIELDS = "l.rule_id, l.order_token, l.indicator, l.band, l.partners, l.evaluated_on"
PROBE = "INSERT INTO write_probe VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET written_at = excluded.written_at"

BATCH_MAX_ROWS = 2000  # rows per ledger transaction
RETRY_MAX_SECONDS = 5.0  # longest pause between ledger retries while the store is down
# Feedback naming cards this ledger has never shown is kept (the ledger is written in batches, and
# other instances may share the database) up to this many entries; beyond it, it is counted, not stored.
UNMATCHED_FEEDBACK_MAX = 10_000
LOG_EVERY_SECONDS = 5.0


def now_text() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class SqlStore:
    """A Store over one DB-API connection per process (reopened after a fault)."""

    kind = "sql"
    unavailable_errors: tuple[type[BaseException], ...] = ()

    def __init__(self, *, timeout_seconds: float, retry_queue_max_rows: int, batch_seconds: float = 0.2) -> None:
        self.timeout = float(timeout_seconds)
        self.max_rows = int(retry_queue_max_rows)
        self.batch_seconds = batch_seconds
        self._lock = threading.Lock()  # one operation at a time on the connection
        self._conn = None
        self._schema_ready = False
        # The ledger queue: rows waiting to be written, including rows kept after a failed write.
        self._cond = threading.Condition()
        self._pending: collections.deque[tuple] = collections.deque()
        self._inflight = 0
        self._flush_requests = 0
        self._attempts_failed = 0
        self._stopping = False
        self._writer: threading.Thread | None = None
        self._dropped_unlogged: collections.Counter[str] = collections.Counter()
        self._dropped_total = 0
        self._last_drop_log = 0.0
        self._closed = False
        self._marker: Path | None = None
        self._marker_count = 0

    # -- rows lost with a killed process -------------------------------------------------------
    # Each process notes, in a small file named by its pid, how many ledger rows it holds unwritten.
    # A clean close removes the file; a file left by a process that no longer runs is what a kill -9
    # (or a crash) lost: the next store to open on this machine counts it and says so.
    def _track_losses(self, folder: Path) -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for marker in folder.glob("*.pending"):
                pid = int(marker.stem) if marker.stem.isdigit() else None
                if pid is None or pid == os.getpid() or _alive(pid):
                    continue
                claimed = marker.with_name(f"{pid}.claimed-by-{os.getpid()}")
                try:  # several workers start at once: the one whose rename succeeds counts it
                    os.rename(marker, claimed)
                except FileNotFoundError:
                    continue
                lost = int(claimed.read_text() or 0)
                claimed.unlink(missing_ok=True)
                if lost:
                    metrics.LEDGER_DROPPED.labels("killed").inc(lost)
                    log.error("ledger rows lost: %d held by process %d, which ended without closing the store",
                              lost, pid, extra={"fields": {"dropped": {"killed": lost}}})
            self._marker = folder / f"{os.getpid()}.pending"
        except (OSError, ValueError) as exc:  # best effort: never stop the service for this
            log.warning("cannot track ledger losses in %s (%s)", folder, type(exc).__name__)

    def _note_pending(self, count: int) -> None:
        if self._marker is None or count == self._marker_count:
            return
        try:
            tmp = self._marker.with_suffix(".tmp")
            tmp.write_text(str(count))
            os.replace(tmp, self._marker)
            self._marker_count = count
        except OSError:
            pass

    # -- what a backend provides ------------------------------------------------------------
    def _open(self, deadline: float):
        """A new connection with the tables in place, or an error from `unavailable_errors`."""
        raise NotImplementedError

    def _close_connection(self, conn) -> None:
        try:
            conn.close()
        except Exception:  # a broken connection may fail to close; it is discarded either way
            pass

    @contextmanager
    def _statement_deadline(self, conn, deadline: float):
        """Bound the statements run inside to the deadline (backends that can hang override this)."""
        yield

    def _execute(self, cur, sql: str, params=()):
        return cur.execute(sql, params)

    def _executemany(self, cur, sql: str, rows) -> int:
        cur.executemany(sql, rows)
        return cur.rowcount

    def _cursor(self, conn):
        return conn.cursor()

    def _begin(self, conn, cur, write: bool, seconds: float) -> None:
        pass

    # -- one operation: the lock, a connection, a transaction, all within one deadline -------
    def _run(self, work: Callable[[Any], Any], operation: str, timeout: float | None = None, write: bool = True):
        seconds = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + seconds
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            metrics.STORE_UNAVAILABLE.labels(operation).inc()
            raise StoreUnavailable(f"{operation}: the store is busy (lock wait over {self.timeout:g} s)")
        try:
            try:
                if self._conn is None:
                    self._conn = self._open(deadline)
                conn = self._conn
                with self._statement_deadline(conn, deadline):
                    cur = self._cursor(conn)
                    try:
                        self._begin(conn, cur, write, seconds)
                        result = work(cur)
                        conn.commit()
                        return result
                    except BaseException:
                        try:
                            conn.rollback()
                        except Exception:
                            pass
                        raise
                    finally:
                        try:
                            cur.close()
                        except Exception:
                            pass
            except self.unavailable_errors as exc:
                # Reopen next time: a connection opened while the file was read-only, or to a server
                # that has since gone, stays unusable for life.
                if self._conn is not None:
                    self._close_connection(self._conn)
                    self._conn = None
                metrics.STORE_UNAVAILABLE.labels(operation).inc()
                raise StoreUnavailable(f"{operation}: store unavailable ({type(exc).__name__})") from None
        finally:
            self._lock.release()

    # -- ledger (background, never on the request path) --------------------------------------
    def record_cards(self, service_id: str, hook_instance: str | None,
                     cards: list[tuple[dict, dict[str, list[str]]]]) -> None:
        """cards: (card, {rule id: uuids of the suggestions that rule proposed}); an accepted suggestion
        is credited to the rules that proposed it, an override to every rule of the card."""
        if not cards:
            return
        if text_problem("hookInstance", hook_instance, HOOK_INSTANCE_MAX):
            hook_instance = None  # the HTTP layer refuses these; never let one reach the ledger
        shown = now_text()
        rows = []
        for card, rule_suggestions in cards:
            rows += [(card["uuid"], rule_id, service_id, card["indicator"], hook_instance, shown, json.dumps(uuids))
                     for rule_id, uuids in rule_suggestions.items()]
        with self._cond:
            self._pending.extend(rows)
            overflow = len(self._pending) + self._inflight - self.max_rows
            for _ in range(max(0, min(overflow, len(self._pending)))):
                self._pending.popleft()  # the oldest go first: the newest are the likeliest to be joined
            self._cond.notify()
        if overflow > 0:
            self._drop(overflow, "queue_full")
        self._ensure_writer()

    def pending_rows(self) -> int:
        with self._cond:
            return len(self._pending) + self._inflight

    def _drop(self, n: int, reason: str) -> None:
        metrics.LEDGER_DROPPED.labels(reason).inc(n)
        with self._cond:
            self._dropped_unlogged[reason] += n
            self._dropped_total += n

    def _log_drops(self, force: bool = False) -> None:
        with self._cond:
            if not self._dropped_unlogged or (not force and time.monotonic() - self._last_drop_log < LOG_EVERY_SECONDS):
                return
            counts, self._dropped_unlogged = dict(self._dropped_unlogged), collections.Counter()
            total, self._last_drop_log = self._dropped_total, time.monotonic()
        log.error("ledger rows dropped: %s; %d dropped since start",
                  ", ".join(f"{n} ({reason})" for reason, n in sorted(counts.items())), total,
                  extra={"fields": {"dropped": counts, "dropped_total": total}})

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            with self._cond:
                if (self._writer is None or not self._writer.is_alive()) and not self._stopping:
                    self._writer = threading.Thread(target=self._write_loop, name="ledger-writer", daemon=True)
                    self._writer.start()

    def _write_loop(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._pending and not self._stopping:
                    if not self._cond.wait(LOG_EVERY_SECONDS):
                        break  # wake now and then to log drops
                # Gather a batch (rows arriving meanwhile join it); after a failure, back off.
                pause = self.batch_seconds if failures == 0 else min(RETRY_MAX_SECONDS, 0.2 * 2 ** failures)
                end = time.monotonic() + pause
                while not self._stopping and not self._flush_requests and time.monotonic() < end:
                    self._cond.wait(end - time.monotonic())
                stopping = self._stopping
                batch = [self._pending.popleft() for _ in range(min(BATCH_MAX_ROWS, len(self._pending)))]
                self._inflight = len(batch)
                held = len(self._pending) + self._inflight
            self._note_pending(held)
            retry = self._write_rows(batch) if batch else []
            with self._cond:
                self._pending.extendleft(reversed(retry))  # kept, in order, for the next attempt
                self._inflight = 0
                failures = failures + 1 if retry else 0
                self._attempts_failed += bool(retry)
                self._cond.notify_all()
            self._log_drops()
            if not retry and not self.pending_rows():
                self._note_pending(0)
            if stopping and (retry or not self._pending):
                return

    def _write_rows(self, rows: list[tuple]) -> list[tuple]:
        """Write the rows; the ones to retry later (the database cannot be written now)."""
        def insert(rows):
            return lambda cur: self._executemany(cur, INSERT_CARD, rows)
        try:
            self._run(insert(rows), "ledger")
            return []
        except StoreUnavailable as exc:
            log.warning("ledger write failed, %d rows kept for retry: %s", len(rows), exc)
            return rows
        except Exception as exc:  # a row the database refuses: find it, keep the others
            log.warning("ledger batch refused (%s): writing its rows one by one", type(exc).__name__)
        for i, row in enumerate(rows):
            try:
                self._run(insert([row]), "ledger")
            except StoreUnavailable:
                return rows[i:]
            except Exception as exc:
                log.error("ledger row refused by the database (%s); dropped", type(exc).__name__)
                self._drop(1, "rejected")
        return []

    def flush(self, timeout: float = 30.0) -> None:
        """Write everything queued so far; returns early when the store refuses the write."""
        self._ensure_writer()
        end = time.monotonic() + timeout
        with self._cond:
            failed_before = self._attempts_failed
            self._flush_requests += 1
            self._cond.notify_all()
            try:
                while ((self._pending or self._inflight) and self._attempts_failed == failed_before
                       and time.monotonic() < end):
                    self._cond.wait(max(0.0, end - time.monotonic()))
            finally:
                self._flush_requests -= 1

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._writer is not None and self._writer.is_alive():
            self._writer.join(timeout=max(10.0, 3 * self.timeout))
        left = self.pending_rows()
        if left:
            self._drop(left, "shutdown")
            with self._cond:
                self._pending.clear()
        self._log_drops(force=True)
        if self._marker is not None:
            self._marker.unlink(missing_ok=True)
        if self._lock.acquire(timeout=self.timeout):
            try:
                if self._conn is not None:
                    self._close_connection(self._conn)
                    self._conn = None
            finally:
                self._lock.release()

    # -- feedback (synchronous, idempotent) ------------------------------------------------
    def add_feedback(self, service_id: str, items: list[dict]) -> int:
        problems = feedback_problems(items)
        if problems:
            raise UnstorableValue(problems[0])
        received = now_text()
        rows = []
        for fb in items:
            reason = (fb.get("overrideReason") or {}).get("reason") or {}
            accepted = [s["id"] for s in fb.get("acceptedSuggestions") or []]
            # Only the coded reason: overrideReason.display and comments are free text that can name the patient.
            rows.append((fb["card"], service_id, fb["outcome"], fb["outcomeTimestamp"],
                         json.dumps(accepted) if accepted else None, reason.get("system"), reason.get("code"),
                         None, received))
        with self._cond:
            queued = {row[0] for row in self._pending}

        def work(cur):
            cards = sorted({r[0] for r in rows} - queued)
            known = set()
            if cards:
                marks = ",".join("?" * len(cards))
                known = {r[0] for r in self._execute(
                    cur, f"SELECT DISTINCT card_uuid FROM card_rule WHERE card_uuid IN ({marks})", cards).fetchall()}
            unknown = [r for r in rows if r[0] not in known and r[0] not in queued]
            keep = [r for r in rows if r[0] in known or r[0] in queued]
            if unknown:
                unmatched = self._execute(cur, "SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS "
                                               "(SELECT 1 FROM card_rule c WHERE c.card_uuid = f.card_uuid)").fetchone()[0]
                room = max(0, UNMATCHED_FEEDBACK_MAX - unmatched)
                keep += unknown[:room]
                return self._executemany(cur, INSERT_FEEDBACK, keep) if keep else 0, len(unknown[:room]), \
                    len(unknown) - room if len(unknown) > room else 0
            return self._executemany(cur, INSERT_FEEDBACK, keep), 0, 0

        stored, unknown_kept, unknown_refused = self._run(work, "feedback")
        if unknown_kept:
            metrics.FEEDBACK_UNKNOWN_CARD.labels("stored").inc(unknown_kept)
        if unknown_refused:
            metrics.FEEDBACK_UNKNOWN_CARD.labels("not_stored").inc(unknown_refused)
            log.warning("feedback for %d unknown cards not stored: %d unmatched entries already held",
                        unknown_refused, UNMATCHED_FEEDBACK_MAX)
        return stored

    # -- JWT replay cache (shared by every worker and instance on this database) ---------------
    def remember_jti(self, iss: str, jti: str, expires_at: int) -> bool:
        if text_problem("iss", iss, 1024) or text_problem("jti", jti, 256):
            return False  # not storable, so never seen-and-remembered: refused like a replay
        now = int(time.time())

        def work(cur):
            if now % 64 == 0:  # now and then, forget tokens that can no longer be replayed
                self._execute(cur, "DELETE FROM seen_jti WHERE expires_at < ?", (now,))
            return self._executemany(cur, INSERT_JTI, [(iss, jti, expires_at)]) == 1
        return self._run(work, "jti")

    # -- remembered overrides (synchronous: the link is stored before the response leaves) -----
    def link_cards(self, links: list[tuple], quieted: list[tuple]) -> None:
        """links: (card uuid, rule id, pseudonym, service id, order token, indicator, band, partners
        JSON, digest, evaluated on); quieted: (rule id, service id, kind)."""
        if not links and not quieted:
            return
        shown = now_text()
        for row in links:
            checked("card uuid", row[0], ID_MAX)

        def work(cur):
            if links:
                self._executemany(cur, INSERT_LINK, [(*row, shown) for row in links])
            if quieted:
                self._executemany(cur, INSERT_QUIETED, [(*row, shown) for row in quieted])
        self._run(work, "link")

    def remembered_overrides(self, pseudonym: str) -> list[tuple]:
        """The patient's overridden findings with a coded reason: (rule id, order token, indicator,
        band, partners JSON, evaluated on, reason system, reason code), newest first."""
        return self._run(lambda cur: self._execute(
            cur, f"SELECT {LINK_FIELDS}, f.override_system, f.override_code FROM card_link l JOIN feedback f "
                 "ON f.card_uuid = l.card_uuid WHERE l.pseudonym = ? AND f.outcome = 'overridden' "
                 "AND f.override_code IS NOT NULL ORDER BY l.evaluated_on DESC, l.shown_at DESC",
            (pseudonym,)).fetchall(), "overrides", write=False)

    def shown_since(self, pseudonym: str, service_id: str, since: str) -> list[tuple]:
        """Findings shown to this patient by a service since a UTC time (YYYY-MM-DDTHH:MM:SSZ):
        (rule id, order token, indicator, band, partners JSON, evaluated on, digest)."""
        return self._run(lambda cur: self._execute(
            cur, f"SELECT {LINK_FIELDS}, l.digest FROM card_link l WHERE l.pseudonym = ? AND l.service_id = ? "
                 "AND l.shown_at >= ?", (pseudonym, service_id, since)).fetchall(), "overrides", write=False)

    def forget(self, pseudonym: str) -> int:
        """Remove everything remembered about one patient's cards (overrides and order-select memory)."""
        return self._run(lambda cur: self._execute(cur, "DELETE FROM card_link WHERE pseudonym = ?",
                                                   (pseudonym,)).rowcount, "forget", timeout=max(self.timeout, 30.0))

    def quieted_counts(self) -> dict[str, int]:
        """Per rule: findings withheld after an override."""
        return dict(self._query("SELECT rule_id, COUNT(*) FROM quieted WHERE kind = 'override' GROUP BY rule_id",
                                timeout=max(self.timeout, 30.0)))

    # -- readiness ---------------------------------------------------------------------------
    def ping(self) -> bool:
        self._run(lambda cur: self._execute(cur, PROBE, (now_text(),)), "probe")
        return True

    # -- reading -----------------------------------------------------------------------------
    def _query(self, sql: str, params=(), timeout: float | None = None) -> list[tuple]:
        return self._run(lambda cur: self._execute(cur, sql, params).fetchall(), "read", timeout, write=False)

    def report(self) -> list[dict]:
        self.flush()
        slow = max(self.timeout, 30.0)  # an offline report may scan a large ledger
        shown = dict(self._query("SELECT rule_id, COUNT(DISTINCT card_uuid) FROM card_rule GROUP BY rule_id",
                                 timeout=slow))
        overridden = self._query(
            "SELECT c.rule_id, COUNT(DISTINCT f.card_uuid) FROM feedback f JOIN card_rule c "
            "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' GROUP BY c.rule_id", timeout=slow)
        accepts = self._query(
            "SELECT c.rule_id, c.suggestion_uuids, f.card_uuid, f.outcome_timestamp, f.accepted_suggestions "
            "FROM feedback f JOIN card_rule c ON c.card_uuid = f.card_uuid WHERE f.outcome = 'accepted'",
            timeout=slow)
        reasons = self._query(
            "SELECT c.rule_id, f.override_code, COUNT(*) FROM feedback f JOIN card_rule c "
            "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' AND f.override_code IS NOT NULL "
            "GROUP BY c.rule_id, f.override_code", timeout=slow)
        rows = {rule: {"rule": rule, "shown": n, "accepted": 0, "overridden": 0, "override_reasons": {}, "quieted": 0}
                for rule, n in shown.items()}
        for rule, n in self.quieted_counts().items():
            rows.setdefault(rule, {"rule": rule, "shown": 0, "accepted": 0, "overridden": 0, "override_reasons": {},
                                   "quieted": 0})["quieted"] = n
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
        return self._query("SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS "
                           "(SELECT 1 FROM card_rule c WHERE c.card_uuid = f.card_uuid)", timeout=max(self.timeout, 30.0))[0][0]

    def count(self, table: str) -> int:
        if table not in STORE_TABLES:
            raise ValueError(f"not a store table: {table}")
        return self._query(f"SELECT COUNT(*) FROM {table}")[0][0]

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        return self._query(sql, params, timeout=max(self.timeout, 30.0))

    def dump(self) -> str:
        out = []
        for table in STORE_TABLES:
            out += [repr(r) for r in self._query(f"SELECT * FROM {table}", timeout=max(self.timeout, 30.0))]
        return "\n".join(out)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True
