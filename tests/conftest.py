"""Shared test helpers: the Flask app (application factory), scenario fixtures, a strict check of
every response (CDS Hooks schema + FHIR R4 suggestion resources), and a real local FHIR server.

Everything the tests read is in this repository (fixtures/, hooks/, tests/data/)."""

from __future__ import annotations

import copy
import inspect
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from cds_service.app import create_app

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "fixtures"
DATA = ROOT / "tests" / "data"
CONFORMANCE = DATA / "conformance"
SYNTHEA = DATA / "synthea"
HOOKS = ROOT / "hooks"
PV = "/cds-services/radiculopathy-patient-view"
OS = "/cds-services/radiculopathy-order-select"
SIGN = "/cds-services/radiculopathy-order-sign"

# Local test HTTP servers check for shutdown every 50 ms (the default 0.5 s made each teardown slow).
POLL_INTERVAL = 0.05


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for hooks/<name>.json, the published contract, read straight from the files (not
    through the service's own pre-processed copy, so that a fault there cannot hide)."""
    schemas = {p.stem: json.loads(p.read_text()) for p in HOOKS.glob("*.json")}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(schemas[name], registry=registry)


RESPONSE_VALIDATOR = schema_validator("service-response.schema")


def fhir_model(resource_type: str):
    from fhir.resources.R4B import get_fhir_model_class
    return get_fhir_model_class(resource_type)


def check_response(body: dict) -> dict:
    """Every response: valid under hooks/service-response.schema.json; every suggested resource valid FHIR R4."""
    errors = sorted(RESPONSE_VALIDATOR.iter_errors(body), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]
    for card in body["cards"]:
        assert card["source"]["topic"]["system"] == "urn:radiculopathy-cds:rule"
        assert len(card["summary"]) < 140
        if card["indicator"] in {"warning", "critical"}:
            assert card.get("overrideReasons"), card["summary"]
        for suggestion in card.get("suggestions", []):
            for action in suggestion["actions"]:
                if "resource" in action:
                    res = action["resource"]
                    fhir_model(res["resourceType"]).model_validate(res)
                    assert res["status"] == "draft"
    return body


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


# -- store backends: the tests that touch the store run on SQLite and on PostgreSQL ---------------
PG_DSN = os.environ.get("CDS_TEST_POSTGRES")
# In CI the PostgreSQL runs are mandatory: without a server they fail, they are never skipped.
BACKENDS = ["sqlite", "postgresql"] if (PG_DSN or os.environ.get("CI")) else ["sqlite"]
# A test touches the store when it asks for the app object itself (to reach app.extensions["cds"].store)
# or for a store configuration, or is marked @pytest.mark.store. Every other test talks HTTP only and
# runs on SQLite: running it twice would test nothing more.
STORE_ARGS = {"app", "store_config", "backend"}


def pytest_configure(config):
    config.addinivalue_line("markers", "store: run this test on every store backend")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        direct = set(inspect.signature(metafunc.function).parameters)
        touches_store = bool(direct & STORE_ARGS) or metafunc.definition.get_closest_marker("store") is not None
        metafunc.parametrize("backend", BACKENDS if touches_store else ["sqlite"])


@pytest.fixture
def store_config(backend, tmp_path):
    """Returns a fresh store configuration per call: a SQLite file, or a PostgreSQL schema."""
    schemas = []

    def make() -> dict:
        if backend == "sqlite":
            return {"db": str(tmp_path / f"ledger-{uuid.uuid4().hex[:8]}.sqlite3")}
        if not PG_DSN:
            pytest.fail("CDS_TEST_POSTGRES is not set: the PostgreSQL backend cannot be tested (see .ci/run)")
        schemas.append(f"test_{uuid.uuid4().hex[:12]}")
        return {"db": PG_DSN, "db_schema": schemas[-1]}
    yield make
    _SCHEMAS.extend(schemas)


_SCHEMAS: list[str] = []  # PostgreSQL test schemas, dropped together when the session ends


def pytest_sessionfinish(session, exitstatus):
    if PG_DSN and _SCHEMAS:
        import psycopg
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS " + ", ".join(f'"{s}"' for s in _SCHEMAS) + " CASCADE")


def store_env(config: dict) -> dict:
    env = {"CDS_SERVICE_DB": config["db"]}
    if config.get("db_schema"):
        env["CDS_SERVICE_DB_SCHEMA"] = config["db_schema"]
    return env


# The local FHIR servers of the tests listen on 127.0.0.1, which the service refuses by default.
LOOPBACK_FHIR = {"fhir": {"allow_private_networks": True}}


@pytest.fixture
def app(store_config):
    app = create_app({**store_config(), **LOOPBACK_FHIR, "demo": True})
    yield app
    app.extensions["cds"].store.close()


@pytest.fixture
def make_app(store_config):
    """An app with extra configuration: make_app({"cards": {"merge_info": False}})."""
    made = []

    def make(config: dict | None = None):
        base = {**store_config(), **LOOPBACK_FHIR, "demo": True}
        for key, value in (config or {}).items():
            base[key] = {**base[key], **value} if key == "fhir" else value
        a = create_app(base)
        made.append(a)
        return a
    yield make
    for a in made:
        a.extensions["cds"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


def post(client, path: str, body: dict):
    return client.post(path, data=json.dumps(body), content_type="application/json")


def path_for(body: dict) -> str:
    """The service endpoint for a request body's hook."""
    return {"order-select": OS, "order-sign": SIGN}.get(body.get("hook"), PV)


def cards_for(client, body_or_name, path: str | None = None) -> list[dict]:
    body = load_fixture(body_or_name) if isinstance(body_or_name, str) else body_or_name
    path = path or path_for(body)
    response = post(client, path, body)
    assert response.status_code == 200, response.get_json()
    return check_response(response.get_json())["cards"]


def rules_of(cards: list[dict]) -> list[str]:
    """Rule ids behind the cards, merged cards (care plan, one card per order) expanded."""
    out = []
    for card in cards:
        code = card["source"]["topic"]["code"]
        out += card.get("extension", {}).get("radiculopathy-cds.rules", [code])
    return out


def card_of(cards: list[dict], rule_id: str) -> dict:
    for card in cards:
        if card["source"]["topic"]["code"] == rule_id or rule_id in card.get("extension", {}).get(
                "radiculopathy-cds.rules", []):
            return card
    raise AssertionError(f"no card for {rule_id}: {rules_of(cards)}")


def created(card: dict, resource_type: str | None = None) -> list[dict]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"]
            if a["type"] == "create" and (resource_type is None or a["resource"]["resourceType"] == resource_type)]


def codes_of(resources: list[dict]) -> set[str]:
    out = set()
    for r in resources:
        concept = r.get("code") or r.get("medicationCodeableConcept") or {}
        out |= {c["code"] for c in concept.get("coding", [])}
    return out


def mutate(body: dict, fn) -> dict:
    body = copy.deepcopy(body)
    fn(body)
    return body


def entries(body: dict, key: str) -> list[dict]:
    return [e["resource"] for e in body["prefetch"][key].get("entry", [])]


# -- a real FHIR server for the fallback path -------------------------------------------------
class FhirServer:
    """Serves a fixture's prefetch as a FHIR REST API on 127.0.0.1, with paging and fault modes."""

    def __init__(self, resources: list[dict], page_size: int = 2, token: str | None = None):
        self.resources = resources
        self.page_size = page_size
        self.token = token
        self.requests: list[dict] = []
        self.fault: dict[str, str] = {}  # resource type (or "*") -> fault name
        self.delay = 0.0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                server.handle(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(POLL_INTERVAL,), daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    def _send(self, h, status: int, body: bytes, ctype="application/fhir+json", extra=None):
        h.send_response(status)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            h.send_header(k, v)
        h.end_headers()
        try:
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def handle(self, h):
        url = urlsplit(h.path)
        path = url.path[len("/fhir/"):] if url.path.startswith("/fhir/") else url.path.lstrip("/")
        query = parse_qs(url.query)
        self.requests.append({"path": path, "query": query, "authorization": h.headers.get("Authorization"),
                              "accept": h.headers.get("Accept")})
        if self.delay:
            time.sleep(self.delay)
        rtype = path.split("/")[0]
        fault = self.fault.get(rtype) or self.fault.get("*")
        if fault and self._fault(h, fault):
            return
        if self.token and h.headers.get("Authorization") != f"Bearer {self.token}":
            return self._send(h, 401, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}')
        if "/" in path:
            rtype, rid = path.split("/", 1)
            found = [r for r in self.resources if r["resourceType"] == rtype and r.get("id") == rid]
            if not found:
                return self._send(h, 404, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"not-found"}]}')
            return self._send(h, 200, json.dumps(found[0]).encode())
        matches = [r for r in self.resources if r["resourceType"] == rtype]
        offset = int(query.get("_offset", ["0"])[0])
        page = matches[offset: offset + self.page_size]
        bundle = {"resourceType": "Bundle", "type": "searchset", "total": len(matches),
                  "entry": [{"resource": r} for r in page]}
        if offset + self.page_size < len(matches):
            params = "&".join(f"{k}={v[0]}" for k, v in query.items() if k != "_offset")
            bundle["link"] = [{"relation": "next",
                               "url": f"{self.base}/{rtype}?{params}&_offset={offset + self.page_size}"}]
        self._send(h, 200, json.dumps(bundle).encode())

    def _fault(self, h, fault: str) -> bool:
        if fault == "500":
            self._send(h, 500, b"Internal error")
        elif fault == "401":
            self._send(h, 401, b'{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"login"}]}')
        elif fault == "malformed":
            self._send(h, 200, b'{"resourceType": "Bundle", "entry": [')
        elif fault == "html":
            self._send(h, 502, b"<html><body>Bad gateway</body></html>", ctype="text/html")
        elif fault == "timeout":
            time.sleep(5)
            self._send(h, 200, b"{}")
        elif fault == "drip":
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Content-Length", "100000")
            h.end_headers()
            try:
                for _ in range(100):
                    h.wfile.write(b" ")
                    h.wfile.flush()
                    time.sleep(0.1)
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif fault == "loop":
            rtype = urlsplit(h.path).path.split("/")[-1]
            bundle = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                      "link": [{"relation": "next", "url": f"{self.base}/{rtype}?page={time.monotonic_ns()}"}]}
            self._send(h, 200, json.dumps(bundle).encode())
        elif fault == "huge":
            h.send_response(200)
            h.send_header("Content-Type", "application/fhir+json")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            chunk = b" " * 1_000_000
            try:
                for _ in range(50):
                    h.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                h.wfile.write(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
        elif fault == "redirect-away":
            self._send(h, 302, b"", extra={"Location": "http://example.invalid/steal"})
        else:
            return False
        return True


@pytest.fixture
def fhir_server():
    servers = []

    def start(resources: list[dict], **kwargs) -> FhirServer:
        s = FhirServer(resources, **kwargs)
        servers.append(s)
        return s
    yield start
    for s in servers:
        s.close()


def prefetch_resources(body: dict) -> list[dict]:
    """All resources of a fixture's prefetch, for serving from FhirServer."""
    out = []
    for value in body.get("prefetch", {}).values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            out += [e["resource"] for e in value.get("entry", [])]
        elif isinstance(value, dict) and value.get("resourceType") != "OperationOutcome":
            out.append(value)
    return out


# -- `cds-service serve` as in production ------------------------------------------------------
def cli_path() -> str:
    return str(Path(sys.executable).parent / "cds-service")


class LiveServer:
    """`cds-service serve` in a subprocess (its own process group) on a free loopback port.

    Start-up waits up to 60 s for /healthz: a loaded 2-core machine can be slow to answer, so every
    request error counts as "not ready yet". Whatever happens, stop() (also called when start-up
    fails) ends the whole process group: no gunicorn master or worker outlives the test."""

    START_SECONDS = 60

    def __init__(self, env: dict, workers: int = 2, demo: bool = False):
        import socket

        import requests
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        args = [cli_path(), "serve", "--port", str(port), "--workers", str(workers)] + (["--demo"] if demo else [])
        # stderr goes to a file: a pipe nobody reads while the test runs could fill up and block the server.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(args, env={**os.environ, **env}, stdout=subprocess.DEVNULL, cwd=ROOT,
                                     stderr=self._stderr, text=True, start_new_session=True)
        self.base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + self.START_SECONDS
        try:
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if requests.get(self.base + "/healthz", timeout=2).status_code == 200:
                        return
                except requests.RequestException:
                    pass
                time.sleep(0.1)
        except BaseException:
            self.stop()
            raise
        _, stderr = self.stop()
        raise AssertionError(f"cds-service serve did not start:\n{stderr[-2000:]}")

    def stop(self) -> tuple[int, str]:
        """SIGTERM to the group (a clean shutdown), SIGKILL to whatever is left; returns (exit code, stderr)."""
        if self.proc.returncode is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._signal(signal.SIGKILL)  # a worker that outlived its master
        self._stderr.seek(0)
        stderr = self._stderr.read()
        return self.proc.returncode, stderr

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


@pytest.fixture
def live_server():
    """live_server(env, workers=..., demo=...) -> LiveServer; every server started is stopped at teardown."""
    started: list[LiveServer] = []

    def start(env: dict, **kwargs) -> LiveServer:
        server = LiveServer(env, **kwargs)
        started.append(server)
        return server
    yield start
    for server in started:
        server.stop()
