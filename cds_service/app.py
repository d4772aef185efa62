"""Application factory: create_app(config) wires settings, store, FHIR client and the HTTP routes."""

from __future__ import annotations

import atexit
import gc
import json
import logging
import logging.handlers
import queue
import sys
from dataclasses import dataclass
from typing import Mapping

from flask import Flask
from flask_cors import CORS
from werkzeug.exceptions import Unauthorized

from . import knowledge, orders, terminology
from .auth import AuthError, Verifier
from .config import Settings, load_settings
from .fhir_client import FhirClient
from .overrides import Pseudonyms, load_key
from .store import Store, store_for


log = logging.getLogger("cds_service.auth")


@dataclass
class State:
    settings: Settings
    store: Store
    fhir: FhirClient
    verifier: Verifier
    pseudonyms: Pseudonyms | None = None  # None: remembered overrides are off (no pseudonym key)

    def authenticate(self, request, endpoint: str) -> str | None:
        """Check the EHR's JWT for a service, feedback or (when configured) discovery call; the
        verified issuer, or None when the token is not verified (auth off)."""
        auth = self.settings.auth
        required = auth.required and (endpoint != "discovery" or auth.discovery)
        header = request.headers.get("Authorization", "")
        token = header[7:].strip() if header[:7].lower() == "bearer " else None
        if not required:
            if token:
                log.info("JWT not verified (auth.required is false)")
            return None
        if not token:
            log.warning("refused %s: no bearer token", request.path)
            raise Unauthorized()
        # The aud is the URL the EHR called, under the configured public base URL.
        audience = self.settings.public_base_url.rstrip("/") + request.path
        try:
            claims = self.verifier.verify(token, audience)
        except AuthError as exc:
            log.warning("refused %s: %s", request.path, exc)
            raise Unauthorized() from None
        return claims.get("iss")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        entry.update(getattr(record, "fields", {}))
        if record.exc_info and record.levelno >= logging.ERROR:
            entry["exception"] = record.exc_info[0].__name__ if record.exc_info[0] else None
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = getattr(record, "fields", None)
        return text + (" " + " ".join(f"{k}={v}" for k, v in fields.items()) if fields else "")


_listener: logging.handlers.QueueListener | None = None


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a line is written (a test runner may swap it, and a
    stream captured at start-up may be closed by then)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure_logging(level: str, fmt: str) -> None:
    """Log lines are formatted and written by a background thread (QueueHandler), so a request
    never waits on stderr."""
    global _listener
    handler = _StderrHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else
                         TextFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    _stop_listener()
    log_queue: queue.SimpleQueue = queue.SimpleQueue()
    _listener = logging.handlers.QueueListener(log_queue, handler, respect_handler_level=False)
    _listener.start()
    root = logging.getLogger("cds_service")
    root.handlers[:] = [_FieldsQueueHandler(log_queue)]
    root.setLevel(level)
    root.propagate = True  # tests capture through the root logger


@atexit.register
def _stop_listener() -> None:
    """Write what is still queued (clean shutdown) and stop the log thread."""
    global _listener
    if _listener is not None and _listener._thread is not None:
        _listener.stop()
    _listener = None


class _FieldsQueueHandler(logging.handlers.QueueHandler):
    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        return record  # keep `fields` and let the listener's formatter do the work


def create_app(config: Mapping | None = None) -> Flask:
    settings = load_settings(config)
    configure_logging(settings.log_level, settings.log_format)
    # Load the knowledge base now, so the first request does not pay for it.
    terminology.load()
    knowledge.sources(), knowledge.orderables(), knowledge.override_reasons()
    orders.validate_orderables()  # an orderable that is not valid FHIR stops the start, with its name

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.http.max_body_bytes
    key = load_key(settings)
    if key is None:
        logging.getLogger("cds_service.overrides").info(
            "no privacy.pseudonym_key: overrides are not remembered and order-sign repeats order-select's findings")
    elif not settings.overrides.enabled:
        logging.getLogger("cds_service.overrides").info("overrides.enabled is false: overrides are not remembered")
    store = store_for(settings)
    app.extensions["cds"] = State(settings, store, FhirClient(settings.fhir),
                                  Verifier(settings.auth, settings.public_base_url, store),
                                  Pseudonyms(key) if key else None)
    # Open to browser clients (the CDS Hooks sandbox) but never with credentials: "*" is sent
    # rather than the caller's origin reflected, so no cookie or client certificate rides along.
    CORS(app, origins=settings.http.cors_origins, allow_headers=["Authorization", "Content-Type"],
         methods=["GET", "POST", "OPTIONS"], max_age=600, send_wildcard=True, supports_credentials=False)

    from .demo import bp as demo_bp
    from .http import bp
    app.register_blueprint(bp)
    app.register_blueprint(demo_bp)
    # The knowledge base is a few hundred thousand long-lived objects: move them out of the
    # collector's sight so that collections during a request scan only what the request made.
    gc.collect()
    gc.freeze()
    return app
