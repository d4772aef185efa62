"""The store: card ledger, clinician feedback, the JWT replay cache and the card → pseudonym links of
remembered overrides (no PHI: patients only as keyed pseudonyms).

`Store` is the Protocol every backend implements; `open_store` picks the backend from the target:
a file path → SQLite (the embedded default), `postgresql://…` → PostgreSQL, so several instances
behave as one service.

Ledger rows are written by a background thread in batches: the request path only queues them and
never waits on, or fails because of, the database. Rows that cannot be written are kept and retried
(at most `store.retry_queue_max_rows`; beyond that the oldest are dropped and counted in
`cds_ledger_dropped_total`). Feedback, the jti check and the readiness probe are synchronous and
bounded by `store.timeout_seconds`; they raise StoreUnavailable when the store cannot answer.
"""

from __future__ import annotations

import atexit
import re

from .protocol import Store, StoreUnavailable, UnstorableValue
from .text import HOOK_INSTANCE_MAX, feedback_problems, text_problem

__all__ = ["Store", "StoreUnavailable", "UnstorableValue", "open_store", "store_for", "text_problem",
           "feedback_problems", "HOOK_INSTANCE_MAX"]


def open_store(target: str, *, schema: str | None = None, timeout_seconds: float = 1.0,
               retry_queue_max_rows: int = 100_000, batch_seconds: float = 0.2) -> Store:
    options = {"timeout_seconds": timeout_seconds, "retry_queue_max_rows": retry_queue_max_rows,
               "batch_seconds": batch_seconds}
    if re.match(r"postgres(ql)?://", target):
        from .postgres import PostgresStore
        store: Store = PostgresStore(target, schema, **options)
    else:
        from .sqlite import SqliteStore
        store = SqliteStore(target, **options)
    atexit.register(store.close)  # a clean exit writes what the ledger still holds
    return store


def store_for(settings) -> Store:
    """The store a Settings names."""
    return open_store(settings.db, schema=settings.db_schema, timeout_seconds=settings.store.timeout_seconds,
                      retry_queue_max_rows=settings.store.retry_queue_max_rows)
