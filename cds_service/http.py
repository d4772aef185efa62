"""HTTP layer (thin): discovery, service calls, feedback, health. Every error is a JSON FHIR
OperationOutcome that says what is wrong, without echoing request values (which may hold tokens)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from urllib.parse import urlsplit

import orjson

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from . import metrics, terminology, validation
from .fhir_client import resolves_to_private
from .registry import SERVICES, knowledge_version
from .service import DataUnavailable, answer
from .store import HOOK_INSTANCE_MAX, StoreUnavailable, UnstorableValue, feedback_problems, text_problem

log = logging.getLogger("cds_service.http")
bp = Blueprint("cds", __name__)

AS_OF_EXTENSION = "radiculopathy-cds.as-of"


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        self.status, self.code, self.message = status, code, message
        super().__init__(message)


def operation_outcome(status: int, code: str, message: str) -> Response:
    body = {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}]}
    return _json(body, status)


def _json(body: dict, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status=status, mimetype="application/json")


def state():
    return current_app.extensions["cds"]


def _read_json_object() -> dict:
    mimetype = request.mimetype
    if mimetype != "application/json" and not (mimetype.startswith("application/") and mimetype.endswith("+json")):
        # A browser sends text/plain cross-origin without a preflight: refusing it keeps web pages out.
        raise ApiError(415, "not-supported", "the request body must be JSON: send Content-Type application/json")
    raw = request.get_data(cache=False)
    if request.content_length is None and len(raw) >= current_app.config["MAX_CONTENT_LENGTH"]:
        # A chunked body is cut at the limit rather than refused (werkzeug): refuse it here.
        raise ApiError(413, "too-long", "the request body is larger than this service accepts")
    if not raw:
        raise ApiError(400, "invalid", "the request body is empty; a JSON object is required")
    try:
        body = orjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid", f"the request body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid", "the request body must be a JSON object")
    return body


def _check_fhir_server(body: dict) -> None:
    """SSRF guard: refuse a fhirServer outside the allow-list (or not https when required)."""
    server = body.get("fhirServer")
    if not isinstance(server, str):
        return
    try:
        urlsplit(server).hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket, which the schema's uri format lets through
        raise ApiError(400, "invalid", "fhirServer is not a valid URL") from None
    fhir = state().settings.fhir
    if fhir.require_https and not server.lower().startswith("https://"):
        raise ApiError(400, "security", "fhirServer must use https")
    allowed = fhir.allowed_servers
    if allowed is not None:
        if server.rstrip("/") not in {a.rstrip("/") for a in allowed}:
            raise ApiError(400, "security", "fhirServer is not on this service's list of allowed FHIR servers")
    elif not fhir.allow_private_networks and resolves_to_private(server):
        raise ApiError(400, "security", "fhirServer is a loopback, private or link-local address, which this "
                                        "service does not call unless configured to (fhir.allowed_servers)")


def _today(body: dict) -> dt.date:
    settings = state().settings
    ext = body.get("extension")
    if settings.demo and isinstance(ext, dict) and isinstance(ext.get(AS_OF_EXTENSION), str):
        try:
            return dt.date.fromisoformat(ext[AS_OF_EXTENSION])
        except ValueError:
            raise ApiError(400, "invalid", f"extension {AS_OF_EXTENSION} must be a date (YYYY-MM-DD)") from None
    return settings.today()


@bp.get("/cds-services")
def discovery():
    state().authenticate(request, "discovery")
    return _json({"services": [s.discovery() for s in SERVICES.values()],
                  "extension": {"radiculopathy-cds.knowledge": knowledge_version()}})


@bp.post("/cds-services/<service_id>")
def call_service(service_id: str):
    service = SERVICES.get(service_id)
    if service is None:
        raise ApiError(404, "not-found", "no CDS service with the id in this URL")
    issuer = state().authenticate(request, "service")
    body = _read_json_object()
    if body.get("hook") != service.hook and isinstance(body.get("hook"), str):
        raise ApiError(400, "invalid", f"field hook: this service answers the {service.hook} hook only")
    problems = validation.request_problems(service.hook, body)
    if problems:
        raise ApiError(400, "invalid", "invalid CDS Hooks request: " + "; ".join(problems))
    stored_problem = text_problem("hookInstance", body.get("hookInstance"), HOOK_INSTANCE_MAX)
    if stored_problem:  # it goes into the ledger and the log
        raise ApiError(400, "invalid", f"invalid CDS Hooks request: {stored_problem}")
    _check_fhir_server(body)
    today = _today(body)
    g.hook_instance = body.get("hookInstance")
    g.hook = service.hook
    try:
        result = answer(state(), service, body, today, issuer)
    except DataUnavailable as exc:
        g.fetch_failed = len(exc.problems)
        raise ApiError(412, "incomplete", "required FHIR data could not be obtained: " + str(exc)) from None
    g.rules = result.rules
    g.fetch_count, g.fetch_ms = result.record.fetch_count, round(result.record.fetch_seconds * 1000, 1)
    return _json({"cards": result.cards})


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str):
    if service_id not in SERVICES:
        raise ApiError(404, "not-found", "no CDS service with the id in this URL")
    state().authenticate(request, "feedback")
    body = _read_json_object()
    problems = validation.feedback_problems(body)
    if problems:
        raise ApiError(400, "invalid", "invalid feedback: " + "; ".join(problems))
    problems = feedback_problems(body["feedback"])
    if problems:
        raise ApiError(400, "invalid", "invalid feedback: " + "; ".join(problems[:5]))
    state().store.add_feedback(service_id, body["feedback"])
    for item in body["feedback"]:
        metrics.FEEDBACK.labels(item["outcome"]).inc()
    return _json({})


@bp.get("/healthz")
def healthz():
    """Alive: the process answers."""
    return _json({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready: the knowledge base is loaded and the store takes a write now (a one-row write probe,
    bounded by store.timeout_seconds)."""
    problems = []
    if not terminology.load().drugs:
        problems.append("knowledge base not loaded")
    try:
        state().store.ping()
    except Exception as exc:  # the store's driver errors differ by backend
        problems.append(f"store unreachable or not writable ({type(exc).__name__})")
    body = {"status": "ready" if not problems else "not ready", "knowledge": knowledge_version(),
            "ledger_pending_rows": state().store.pending_rows()}
    if problems:
        body["problems"] = problems
    return _json(body, 200 if not problems else 503)


@bp.get("/metrics")
def metrics_endpoint():
    data, content_type = metrics.render()
    return Response(data, mimetype=content_type.split(";")[0], content_type=content_type)


@bp.before_app_request
def _start_timer():
    g.started = time.perf_counter()


@bp.after_app_request
def _log_request(response: Response):
    if request.path.startswith("/cds-services"):
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        service = request.view_args.get("service_id", "-") if request.view_args else "-"
        if request.endpoint == "cds.call_service":
            metrics.REQUEST_SECONDS.labels(service if service in SERVICES else "unknown",
                                           str(response.status_code)).observe(elapsed)
        if response.status_code == 401:
            metrics.AUTH_FAILURES.labels(request.endpoint or "-").inc()
        # One line per request, no PHI and no tokens: ids of services and rules, hookInstance, figures.
        log.info("request", extra={"fields": {
            "method": request.method, "path": request.path, "service": service, "hook": g.get("hook"),
            "hookInstance": g.get("hook_instance"), "status": response.status_code,
            "latency_ms": round(elapsed * 1000, 1), "rules": g.get("rules", []),
            "fhir_fetches": g.get("fetch_count", 0), "fhir_ms": g.get("fetch_ms", 0.0),
            "fhir_failed": g.get("fetch_failed", 0)}})
    return response


@bp.app_errorhandler(ApiError)
def _api_error(exc: ApiError):
    return operation_outcome(exc.status, exc.code, exc.message)


@bp.app_errorhandler(StoreUnavailable)
def _store_unavailable(exc: StoreUnavailable):
    # The JWT replay check and feedback cannot go on without the store: fail closed, say retry.
    log.warning("store unavailable: %s", exc)
    response = operation_outcome(503, "transient", "the service's store is unavailable; try again shortly")
    response.headers["Retry-After"] = "1"
    return response


@bp.app_errorhandler(UnstorableValue)
def _unstorable(exc: UnstorableValue):
    return operation_outcome(400, "invalid", f"invalid request: {exc}")


@bp.app_errorhandler(HTTPException)
def _http_error(exc: HTTPException):
    code = {404: "not-found", 405: "not-supported", 413: "too-long", 401: "login"}.get(exc.code or 500, "invalid")
    message = {413: "the request body is larger than this service accepts",
               404: "no such endpoint", 405: "method not allowed on this endpoint"}.get(exc.code, exc.name)
    response = operation_outcome(exc.code or 500, code, message)
    if exc.code == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


@bp.app_errorhandler(Exception)
def _unexpected(exc: Exception):
    # A bug must not leak a stack trace or request content; the log has the type and place only.
    log.error("unexpected %s while handling %s %s", type(exc).__name__, request.method, request.path,
              exc_info=current_app.debug)
    return operation_outcome(500, "exception", "internal error; the request was not processed")
