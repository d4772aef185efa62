"""Feedback from several client processes at once, against `cds-service serve` with several workers:
nothing lost, nothing stored twice."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

import requests

from cds_service.store import open_store
from conftest import PV, LiveServer, store_env


def _send(args) -> int:
    base, client_no = args
    ok = 0
    with requests.Session() as s:
        for i in range(30):
            # Half the entries are shared by every client (the same repeat), half are its own.
            card = f"shared-{i}" if i % 2 else f"client{client_no}-{i}"
            r = s.post(base + PV + "/feedback", json={"feedback": [
                {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}, timeout=10)
            ok += r.status_code == 200
    return ok


def test_concurrent_feedback_is_neither_lost_nor_duplicated(store_config):
    config = store_config()
    server = LiveServer(store_env(config), workers=2)
    try:
        with ProcessPoolExecutor(max_workers=4) as pool:
            answered = list(pool.map(_send, [(server.base, n) for n in range(4)]))
    finally:
        server.stop()
    assert answered == [30, 30, 30, 30]
    store = open_store(config["db"], schema=config.get("db_schema"))
    cards = [r[0] for r in store.rows("SELECT card_uuid FROM feedback")]
    store.close()
    assert len(cards) == len(set(cards)) == 4 * 15 + 15  # each client's own 15, plus the 15 shared once
