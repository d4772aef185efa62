"""HTTP layer (thin): discovery, service calls, feedback, health. Every error is a JSON FHIR
OperationOutcome that says what is wrong, without echoing request values (which may hold tokens)."""

from __future__ import annotations

import datetime as dt
import logging
import time

import orjson

from flask import Blueprint, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from . import validation
from .record import DataUnavailable
from .registry import SERVICES, evaluate_request, knowledge_version

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
    raw = request.get_data(cache=False)
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
    fhir = state().settings.fhir
    if fhir["require_https"] and not server.lower().startswith("https://"):
        raise ApiError(400, "security", "fhirServer must use https")
    allowed = fhir["allowed_servers"]
    if allowed is not None and server.rstrip("/") not in {a.rstrip("/") for a in allowed}:
        raise ApiError(400, "security", "fhirServer is not on this service's list of allowed FHIR servers")


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
        raise ApiError(404, "not-found", f"no CDS service with id '{service_id[:64]}'")
    state().authenticate(request, "service")
    body = _read_json_object()
    if body.get("hook") != service.hook and isinstance(body.get("hook"), str):
        raise ApiError(400, "invalid", f"this service answers the {service.hook} hook, not "
                                       f"'{body['hook'][:40]}'")
    problems = validation.request_problems(service.hook, body)
    if problems:
        raise ApiError(400, "invalid", "invalid CDS Hooks request: " + "; ".join(problems))
    _check_fhir_server(body)
    today = _today(body)
    g.hook_instance = body.get("hookInstance")
    g.hook = service.hook
    try:
        result = evaluate_request(service, body, state().settings, state().fhir, today)
    except DataUnavailable as exc:
        g.fetch = "failed"
        raise ApiError(412, "incomplete", "required FHIR data could not be obtained: " + str(exc)) from None
    cards = [c.card for c in result.cards]
    state().store.record_cards(service.id, body.get("hookInstance"), [(c.card, c.rule_ids) for c in result.cards])
    g.rules = sorted({r for c in result.cards for r in c.rule_ids})
    g.fetch = f"{result.record.fetch_count} in {result.record.fetch_seconds * 1000:.0f} ms"
    return _json({"cards": cards})


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str):
    if service_id not in SERVICES:
        raise ApiError(404, "not-found", f"no CDS service with id '{service_id[:64]}'")
    state().authenticate(request, "feedback")
    body = _read_json_object()
    problems = validation.feedback_problems(body)
    if problems:
        raise ApiError(400, "invalid", "invalid feedback: " + "; ".join(problems))
    state().store.add_feedback(service_id, body["feedback"])
    return _json({})


@bp.get("/healthz")
def healthz():
    return _json({"status": "ok"})


@bp.before_app_request
def _start_timer():
    g.started = time.perf_counter()


@bp.after_app_request
def _log_request(response: Response):
    if request.path.startswith("/cds-services"):
        elapsed = (time.perf_counter() - g.get("started", time.perf_counter())) * 1000
        # No PHI, no tokens: ids of services and rules, the hookInstance, figures.
        log.info("%s %s status=%s ms=%.1f hook=%s hookInstance=%s rules=%s fhir=%s", request.method,
                 request.path, response.status_code, elapsed, g.get("hook", "-"), g.get("hook_instance", "-"),
                 ",".join(g.get("rules", [])) or "-", g.get("fetch", "-"))
    return response


@bp.app_errorhandler(ApiError)
def _api_error(exc: ApiError):
    return operation_outcome(exc.status, exc.code, exc.message)


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
