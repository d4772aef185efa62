"""The store on every implementation of the Store protocol (SQLite, and PostgreSQL when
CDS_TEST_POSTGRES is set): what it keeps, what it refuses, and what a clinician's EHR sees when the
database misbehaves (read-only or full file, refused or hung connections)."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import subprocess
import threading
import time
import uuid
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from cds_service.app import create_app
from cds_service.store import Store, StoreUnavailable, open_store
from cds_service.store import base as store_base
from cds_service.store.sqlite import SqliteStore

from conftest import PV, load_fixture, post

SCENARIO = "pv_lumbar_radiculopathy_6_weeks"


def card(uuid_: str | None = None) -> dict:
    return {"uuid": uuid_ or str(uuid.uuid4()), "indicator": "info", "suggestions": [{"uuid": str(uuid.uuid4())}]}


@pytest.fixture
def store(store_config):
    config = store_config()
    s = open_store(config["db"], schema=config.get("db_schema"), timeout_seconds=1.0)
    yield s
    s.close()


def metric(app, name: str, **labels) -> float:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def ledger_rows(app) -> int:
    store = app.extensions["cds"].store
    for _ in range(3):  # a write attempt begun while the fault lasted may still fail once
        store.flush()
        if not store.pending_rows():
            break
    return store.count("card_rule")


# -- the protocol, on every implementation ------------------------------------------------------

def test_every_backend_implements_the_store_protocol(store):
    assert isinstance(store, Store)
    shown = card()
    store.record_cards("radiculopathy-patient-view", "hook-1", [(shown, {"imaging.persistent-radiculopathy": [], "nonpharm.therapy": []})])
    store.flush()
    assert store.count("card_rule") == 2 and store.pending_rows() == 0
    assert store.rows("SELECT hook_instance FROM card_rule WHERE card_uuid = ?", (shown["uuid"],)) == [("hook-1",)] * 2
    assert store.add_feedback("radiculopathy-patient-view", [
        {"card": shown["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z",
         "overrideReason": {"reason": {"system": "http://example.org/reasons", "code": "patient-declined",
                                       "display": "Pt John Q Public MRN 12345678 declined"}}}]) == 1
    report = {r["rule"]: r for r in store.report()}
    assert report["nonpharm.therapy"]["overridden"] == 1
    assert report["nonpharm.therapy"]["override_reasons"] == {"patient-declined": 1}
    assert store.remember_jti("https://ehr.example.org", "jti-1", int(time.time()) + 300) is True
    assert store.remember_jti("https://ehr.example.org", "jti-1", int(time.time()) + 300) is False  # replay
    assert store.ping() is True
    assert store.unmatched_feedback() == 0
    with pytest.raises(Exception):  # rows() is for reading; the governance report cannot change the ledger
        store.rows("DELETE FROM card_rule")
    assert store.count("card_rule") == 2


def test_feedback_keeps_the_coded_reason_never_the_free_text(store):
    shown = card()
    store.record_cards("radiculopathy-patient-view", "h", [(shown, {"nonpharm.therapy": []})])
    store.add_feedback("radiculopathy-patient-view", [
        {"card": shown["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z",
         "overrideReason": {"reason": {"code": "patient-declined", "display": "Pt John Q Public MRN 12345678"},
                            "userComment": "spoke to John"}}])
    dump = store.dump()
    assert "patient-declined" in dump
    assert "John" not in dump and "12345678" not in dump


def test_free_text_stored_by_an_earlier_version_is_removed_on_open(store_config):
    config = store_config()
    first = open_store(config["db"], schema=config.get("db_schema"))
    first.rows("SELECT 1")
    first._run(lambda cur: first._execute(cur, "INSERT INTO feedback VALUES (?,?,?,?,?,?,?,?,?)",
                                          ("c", "s", "overridden", "t", None, None, "x", "Pt Jane Roe", "r")), "test")
    first.close()
    again = open_store(config["db"], schema=config.get("db_schema"))
    try:
        assert "Jane" not in again.dump() and again.count("feedback") == 1
    finally:
        again.close()


def test_one_bad_row_never_takes_its_batch_with_it(store):
    good = [card() for _ in range(5)]
    bad = card("nul-\x00-card")  # never produced by the service; stands for any row the database refuses
    rows = [(c, {"nonpharm.therapy": []}) for c in good[:2]] + [(bad, {"nonpharm.therapy": []})] + \
           [(c, {"nonpharm.therapy": []}) for c in good[2:]]
    if store.kind == "sqlite":  # SQLite stores a NUL; make that row break a constraint instead
        bad["indicator"] = None
    store.record_cards("radiculopathy-patient-view", "h", rows)
    store.flush()
    stored = {r[0] for r in store.rows("SELECT card_uuid FROM card_rule")}
    assert stored == {c["uuid"] for c in good}
    assert store.pending_rows() == 0


def test_an_unstorable_hook_instance_never_reaches_the_ledger(store):
    store.record_cards("radiculopathy-patient-view", "nul-\x00-x", [(card(), {"nonpharm.therapy": []})])
    store.record_cards("radiculopathy-patient-view", "x" * 10_000, [(card(), {"nonpharm.therapy": []})])
    store.flush()
    assert store.rows("SELECT hook_instance FROM card_rule") == [(None,), (None,)]


def test_the_store_lock_is_never_waited_on_past_the_deadline(store):
    store._lock.acquire()  # another thread's operation, stuck
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.remember_jti("https://ehr.example.org", "jti-lock", int(time.time()) + 300)
        assert time.monotonic() - started < 3.0  # the 1 s deadline, with a generous margin
    finally:
        store._lock.release()


# -- at the HTTP boundary: hostile ids and text ---------------------------------------------------

@pytest.mark.parametrize("value,why", [("nul-\u0000-x", "control characters"), ("tab\there", "control characters"),
                                       ("x" * 257, "longer than 256")])
def test_hook_instance_that_cannot_be_stored_is_a_400_naming_the_field(client, value, why):
    body = {**load_fixture(SCENARIO), "hookInstance": value}
    response = post(client, PV, body)
    assert response.status_code == 400
    message = response.get_json()["issue"][0]["diagnostics"]
    assert "hookInstance" in message and why in message and value not in message


@pytest.mark.parametrize("card_id", ["nul-\u0000-card", "c" * 10_000, "esc-\u001b[31m"])
def test_feedback_with_an_unstorable_card_id_is_a_400_on_every_backend(client, app, card_id):
    response = post(client, PV + "/feedback", {"feedback": [
        {"card": card_id, "outcome": "accepted", "outcomeTimestamp": "2026-12-01T10:00:00Z",
         "acceptedSuggestions": [{"id": "s1"}]}]})
    assert response.status_code == 400
    assert "feedback[0].card" in response.get_json()["issue"][0]["diagnostics"]
    assert app.extensions["cds"].store.count("feedback") == 0


def test_feedback_for_unknown_cards_is_bounded_and_counted(client, app, monkeypatch):
    monkeypatch.setattr(store_base, "UNMATCHED_FEEDBACK_MAX", 3)
    before = metric(app, "cds_feedback_unknown_card_total", stored="not_stored")
    entries = [{"card": f"unknown-{i}", "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}
               for i in range(5)]
    assert post(client, PV + "/feedback", {"feedback": entries}).status_code == 200
    assert app.extensions["cds"].store.count("feedback") == 3
    assert metric(app, "cds_feedback_unknown_card_total", stored="not_stored") == before + 2
    # A card the service showed is always joined, whatever the bound.
    cards = post(client, PV, load_fixture(SCENARIO)).get_json()["cards"]
    assert post(client, PV + "/feedback", {"feedback": [
        {"card": cards[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}]}).status_code == 200
    assert app.extensions["cds"].store.count("feedback") == 4
    flood = [{**entries[0], "card": f"flood-{i}"} for i in range(501)]
    response = post(client, PV + "/feedback", {"feedback": flood})
    assert response.status_code == 400 and "more than 500 entries" in response.get_json()["issue"][0]["diagnostics"]


# -- storage faults: SQLite ---------------------------------------------------------------------

def _chattr_works(folder: Path) -> bool:
    probe = folder / "chattr-probe"
    probe.write_text("x")
    try:
        if subprocess.run(["chattr", "+i", str(probe)], capture_output=True).returncode != 0:
            return False
        subprocess.run(["chattr", "-i", str(probe)], capture_output=True)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()


@contextlib.contextmanager
def sqlite_read_only(db: str, monkeypatch):
    """The SQLite file (and its WAL) cannot be written: `chattr +i` where the machine allows it,
    else the driver's own read-only error injected at the store's connection boundary."""
    files = [p for p in (Path(db), Path(db + "-wal")) if p.exists()]  # never the -shm: it is mmapped
    if _chattr_works(Path(db).parent):
        subprocess.run(["chattr", "+i", *map(str, files)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    else:
        def refuse(*args, **kwargs):
            raise sqlite3.OperationalError("attempt to write a readonly database")
        with monkeypatch.context() as m:
            m.setattr(SqliteStore, "_open", refuse)
            m.setattr(SqliteStore, "_begin", refuse)
            yield


@pytest.fixture
def sqlite_app(tmp_path):
    """Apps on one SQLite file (the SQLite fault tests run once, whatever the backend parameter)."""
    made = []

    def make(config: dict | None = None, **store):
        app = create_app({"db": str(tmp_path / "ledger.sqlite3"), "demo": True,
                          "store": {"timeout_seconds": 1.0, **store}, **(config or {})})
        made.append(app)
        return app
    yield make
    for app in made:
        app.extensions["cds"].store.close()


def test_sqlite_read_only_file_cards_still_answered_ledger_kept_and_written_after(sqlite_app, tmp_path, monkeypatch):
    app = sqlite_app()
    client = app.test_client()
    assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
    assert ledger_rows(app) == 3
    with sqlite_read_only(str(tmp_path / "ledger.sqlite3"), monkeypatch):
        for _ in range(4):
            response = post(client, PV, load_fixture(SCENARIO))
            assert response.status_code == 200 and response.get_json()["cards"]
        ready = client.get("/readyz")
        assert ready.status_code == 503 and "not writable" in ready.get_json()["problems"][0]
        feedback = post(client, PV + "/feedback", {"feedback": [
            {"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-12-01T10:00:00Z"}]})
        assert feedback.status_code == 503 and feedback.get_json()["issue"][0]["code"] == "transient"
        app.extensions["cds"].store.flush(timeout=5)
        assert app.extensions["cds"].store.pending_rows() == 12  # kept, not lost
    assert client.get("/readyz").status_code == 200  # no restart
    assert ledger_rows(app) == 15


def test_a_worker_started_while_the_file_was_read_only_recovers_without_restart(sqlite_app, tmp_path, monkeypatch):
    first = sqlite_app()
    first.extensions["cds"].store.close()  # the file exists, with its tables
    with sqlite_read_only(str(tmp_path / "ledger.sqlite3"), monkeypatch):
        app = sqlite_app()
        client = app.test_client()
        assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
        assert client.get("/readyz").status_code == 503
    assert client.get("/readyz").status_code == 200
    assert ledger_rows(app) == 3


def test_sqlite_full_database_keeps_rows_until_space_returns(sqlite_app, tmp_path, monkeypatch):
    app = sqlite_app()
    store = app.extensions["cds"].store
    client = app.test_client()
    full = threading.Event()
    full.set()
    real_begin = SqliteStore._begin

    def begin_on_a_full_file(self, conn, cur, write, seconds):
        # SQLite's own "database or disk is full": no page may be added to the file.
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages if full.is_set() else 2**31 - 2}")
        real_begin(self, conn, cur, write, seconds)
    monkeypatch.setattr(SqliteStore, "_begin", begin_on_a_full_file)
    for _ in range(30):  # 90 rows, ~20 kB: more than the free space left in the file's pages
        assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
    store.flush(timeout=5)
    held = store.pending_rows()
    assert held > 0 and store.count("card_rule") + held == 90  # what did not fit is kept, not lost
    full.clear()
    assert ledger_rows(app) == 90


def test_rows_beyond_the_retry_bound_are_dropped_counted_and_logged(sqlite_app, tmp_path, monkeypatch, caplog):
    app = sqlite_app(retry_queue_max_rows=5)
    client = app.test_client()
    before = metric(app, "cds_ledger_dropped_total", reason="queue_full")
    with sqlite_read_only(str(tmp_path / "ledger.sqlite3"), monkeypatch):
        for _ in range(3):  # 9 rows, room for 5
            assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
        assert app.extensions["cds"].store.pending_rows() == 5
    assert metric(app, "cds_ledger_dropped_total", reason="queue_full") == before + 4
    with caplog.at_level(logging.ERROR, logger="cds_service.store"):
        assert ledger_rows(app) == 5
        app.extensions["cds"].store.close()
    assert any("4 (queue_full)" in r.getMessage() for r in caplog.records)


# -- authentication needs the replay check: it fails closed -------------------------------------

@pytest.fixture
def signer(tmp_path):
    private = ec.generate_private_key(ec.SECP384R1())
    jwk = {**json.loads(ECAlgorithm.to_jwk(private.public_key())), "kid": "k1", "alg": "ES384"}
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))

    def token(path_called: str = PV) -> str:
        now = int(time.time())
        return jwt.encode({"iss": "https://ehr.example.org", "aud": "https://cds.example.org" + path_called,
                           "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}, private, algorithm="ES384",
                          headers={"kid": "k1"})
    return {"jwks_file": str(path), "token": token}


def auth_config(signer) -> dict:
    return {"public_base_url": "https://cds.example.org",
            "auth": {"required": True, "clients": [{"iss": "https://ehr.example.org", "jwks_file": signer["jwks_file"]}]}}


def signed_call(client, signer):
    return client.post(PV, data=json.dumps(load_fixture(SCENARIO)), content_type="application/json",
                       headers={"Authorization": "Bearer " + signer["token"]()})


def test_with_auth_a_store_fault_answers_503_never_500(sqlite_app, tmp_path, monkeypatch, signer):
    app = sqlite_app(auth_config(signer))
    client = app.test_client()
    assert signed_call(client, signer).status_code == 200
    with sqlite_read_only(str(tmp_path / "ledger.sqlite3"), monkeypatch):
        response = signed_call(client, signer)
        assert response.status_code == 503
        assert response.get_json()["resourceType"] == "OperationOutcome"
        assert response.headers["Retry-After"] == "1"
    assert signed_call(client, signer).status_code == 200


# -- storage faults: PostgreSQL behind a proxy that can refuse or stall ----------------------------

class PgProxy:
    """A TCP proxy in front of the shared PostgreSQL that can refuse or stall connections, standing in
    for a stopped or hung server without touching the real one. Loopback only; always closed."""

    def __init__(self, dsn: str):
        import socket
        from urllib.parse import urlsplit
        parts = urlsplit(dsn)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 5432)
        self._mode = "pass"
        self._sockets: list = []
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        port = self.listener.getsockname()[1]
        self.dsn = parts._replace(netloc=parts.netloc.rsplit("@", 1)[0] + f"@127.0.0.1:{port}").geturl()
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def mode(self, mode: str) -> None:
        """pass: forward; refuse: close every connection and refuse new ones; stall: hold every
        connection open, forwarding nothing."""
        with self._lock:
            self._mode = mode
            if mode == "refuse":
                for sock in self._sockets:
                    with contextlib.suppress(OSError):
                        sock.close()
                self._sockets.clear()

    def _accept(self):
        import socket
        while not self._closed.is_set():
            try:
                client, _ = self.listener.accept()
            except (TimeoutError, OSError):
                continue
            with self._lock:
                if self._mode == "refuse":
                    client.close()
                    continue
                try:
                    server = socket.create_connection(self.target, timeout=5)
                except OSError:
                    client.close()
                    continue
                self._sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                t = threading.Thread(target=self._pump, args=(a, b), daemon=True)
                t.start()
                self._threads.append(t)

    def _pump(self, src, dst):
        import select
        while not self._closed.is_set():
            if self._mode == "stall":
                time.sleep(0.05)
                continue
            try:
                ready, _, _ = select.select([src], [], [], 0.05)
                if not ready:
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
            except (OSError, ValueError):
                break
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.close()

    def close(self):
        self._closed.set()
        self.listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.close()
        for t in self._threads:
            t.join(timeout=5)


@pytest.fixture
def pg_proxy(backend, store_config):
    if backend != "postgresql":
        pytest.skip("PostgreSQL fault tests run on the postgresql backend")
    config = store_config()
    proxy = PgProxy(config["db"])
    yield proxy, config
    proxy.close()


def test_postgresql_refusing_connections(pg_proxy, make_app, signer):
    proxy, config = pg_proxy
    app = make_app({"db": proxy.dsn, "db_schema": config["db_schema"], "store": {"timeout_seconds": 1.0}})
    client = app.test_client()
    assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
    assert ledger_rows(app) == 3
    proxy.mode("refuse")
    for _ in range(3):
        assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
    assert client.get("/readyz").status_code == 503
    app.extensions["cds"].store.flush(timeout=5)
    assert app.extensions["cds"].store.pending_rows() == 9
    proxy.mode("pass")
    assert client.get("/readyz").status_code == 200
    assert ledger_rows(app) == 12


def test_postgresql_hung_authenticated_calls_503_within_the_deadline_others_get_cards(pg_proxy, make_app, signer):
    proxy, config = pg_proxy
    secured = make_app({"db": proxy.dsn, "db_schema": config["db_schema"], "store": {"timeout_seconds": 1.0},
                        **auth_config(signer)})
    open_ = make_app({"db": proxy.dsn, "db_schema": config["db_schema"], "store": {"timeout_seconds": 1.0}})
    assert signed_call(secured.test_client(), signer).status_code == 200
    proxy.mode("stall")
    for _ in range(2):  # the stalled connection, then a new connection that never completes
        started = time.monotonic()
        response = signed_call(secured.test_client(), signer)
        assert response.status_code == 503, response.get_data(as_text=True)
        assert time.monotonic() - started < 3.0
    response = post(open_.test_client(), PV, load_fixture(SCENARIO))
    assert response.status_code == 200 and response.get_json()["cards"]
    started = time.monotonic()
    ready = open_.test_client().get("/readyz")
    assert ready.status_code == 503 and time.monotonic() - started < 3.0
    proxy.mode("pass")
    assert signed_call(secured.test_client(), signer).status_code == 200
    assert ledger_rows(open_) >= 3


# -- kill -9: the loss is bounded, and counted at the next start ----------------------------------

def test_rows_held_by_a_killed_worker_are_counted_at_the_next_start(sqlite_app, tmp_path, monkeypatch, caplog):
    db = str(tmp_path / "ledger.sqlite3")
    app = sqlite_app()
    client = app.test_client()
    with sqlite_read_only(db, monkeypatch):
        for _ in range(2):
            assert post(client, PV, load_fixture(SCENARIO)).status_code == 200
        store = app.extensions["cds"].store
        store.flush(timeout=5)
        assert store.pending_rows() == 6
    # What a kill -9 leaves: this process's note of the rows it held, under a pid that is gone.
    dead = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True).stdout.strip()
    marker = Path(db + ".pending") / f"{__import__('os').getpid()}.pending"
    assert marker.read_text() == "6"
    marker.rename(marker.with_name(f"{dead}.pending"))
    before = metric(app, "cds_ledger_dropped_total", reason="killed")
    with caplog.at_level(logging.ERROR, logger="cds_service.store"):
        restarted = sqlite_app()
    assert metric(restarted, "cds_ledger_dropped_total", reason="killed") == before + 6
    assert any(f"6 held by process {dead}" in r.getMessage() for r in caplog.records)
    assert not list(Path(db + ".pending").glob(f"{dead}.*"))  # counted once
