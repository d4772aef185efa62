"""The CDS Hooks 2.0 HTTP contract: discovery, request validation errors, feedback, CORS, health."""

from __future__ import annotations

import json

import pytest
from conftest import CONFORMANCE, OS, PV, load_fixture, post, schema_validator

INVALID = CONFORMANCE / "invalid"
TOKEN_PATTERN = {"userPractitionerId", "userPractitionerRoleId", "userPatientId", "userRelatedPersonId"}


def outcome(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert "Traceback" not in response.get_data(as_text=True)
    return body["issue"][0]["diagnostics"]


def test_discovery_lists_the_three_services_with_valid_prefetch_templates(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    body = response.get_json()
    errors = list(schema_validator("discovery-response.schema").iter_errors(body))
    assert not errors, [e.message for e in errors]
    by_hook = {s["hook"]: s for s in body["services"]}
    assert set(by_hook) == {"patient-view", "order-select", "order-sign"}
    assert by_hook["patient-view"]["id"] == "radiculopathy-patient-view"
    assert by_hook["order-select"]["id"] == "radiculopathy-order-select"
    assert by_hook["order-sign"]["id"] == "radiculopathy-order-sign"
    for service in body["services"]:
        assert {"patient", "conditions", "medicationRequests", "medicationStatements", "observations",
                "procedures", "serviceRequests"} <= set(service["prefetch"])
        assert service["usageRequirements"] and service["title"]
    assert "98979-8" in by_hook["patient-view"]["prefetch"]["observations"]
    assert body["extension"]["radiculopathy-cds.knowledge"]["terminology"]["icd10cm"]


def test_order_select_service_exists(client):
    body = {"hook": "order-select", "hookInstance": "x1", "context": {
        "userId": "Practitioner/1", "patientId": "p1", "selections": ["MedicationRequest/m1"],
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []}},
        "prefetch": {k: None for k in ("patient", "conditions", "medicationRequests", "medicationStatements",
                                       "observations", "procedures", "serviceRequests")}}
    response = post(client, OS, body)
    assert response.status_code == 200 and response.get_json() == {"cards": []}


@pytest.mark.parametrize("raw,expected", [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b"", "empty"),
    (b'"text"', "must be a JSON object"),
])
def test_malformed_bodies_are_400(client, raw, expected):
    response = client.post(PV, data=raw, content_type="application/json")
    assert expected in outcome(response, 400)


def test_missing_required_fields_are_named(client):
    msg = outcome(post(client, PV, {"hook": "patient-view", "context": {"userId": "Practitioner/1"}}), 400)
    assert "hookInstance" in msg and "patientId" in msg


def test_wrong_hook_for_service_is_400(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["hook"] = "order-select"
    assert "patient-view" in outcome(post(client, PV, body), 400)


def test_fhir_authorization_without_fhir_server_is_400_and_token_not_echoed(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirAuthorization"] = {"access_token": "SECRET-TOKEN-123", "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds"}
    response = post(client, PV, body)
    assert "fhirAuthorization requires fhirServer" in outcome(response, 400)
    assert "SECRET-TOKEN-123" not in response.get_data(as_text=True)


def test_token_in_wrong_place_is_not_echoed(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = "https://ehr.example.org/fhir"
    body["fhirAuthorization"] = "Bearer SECRET-TOKEN-456"
    response = post(client, PV, body)
    outcome(response, 400)
    assert "SECRET-TOKEN-456" not in response.get_data(as_text=True)


@pytest.mark.parametrize("name,path", [
    ("patient-view-missing-patientId.json", PV),
    ("request-missing-hookInstance.json", PV),
    ("request-fhirAuthorization-without-fhirServer.json", PV),
    ("order-select-missing-draftOrders.json", OS),
    ("order-select-userId-wrong-type.json", OS),
])
def test_invalid_requests_are_400(client, name, path):
    body = json.loads((INVALID / name).read_text())
    outcome(post(client, path, body), 400)


@pytest.mark.parametrize("name", ["feedback-bad-outcome.json", "feedback-missing-card.json",
                                  "feedback-accepted-without-acceptedSuggestions.json",
                                  "feedback-empty-overrideReason.json"])
def test_invalid_feedback_is_400(client, name):
    body = json.loads((INVALID / name).read_text())
    outcome(post(client, PV + "/feedback", body), 400)


def test_accepted_without_suggestions_message(client):
    body = json.loads((INVALID / "feedback-accepted-without-acceptedSuggestions.json").read_text())
    assert "acceptedSuggestions" in outcome(post(client, PV + "/feedback", body), 400)


def test_unknown_service_is_404(client):
    assert "no CDS service" in outcome(post(client, "/cds-services/nope", {}), 404)
    assert "no CDS service" in outcome(post(client, "/cds-services/nope/feedback", {}), 404)


def test_body_over_the_limit_is_413(make_app):
    app = make_app({"http": {"max_body_bytes": 2000, "cors_origins": ["*"]}})
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["padding"] = "x" * 5000
    outcome(post(app.test_client(), PV, body), 413)


def test_default_body_limit_serves_a_large_chart_and_refuses_a_bigger_body(client):
    """The documented default (10 MiB): a 9 MiB request is served, an 11 MiB one refused with 413."""
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["padding"] = "x" * (9 * 1024 * 1024)
    assert post(client, PV, body).status_code == 200
    body["padding"] = "x" * (11 * 1024 * 1024)
    outcome(post(client, PV, body), 413)


def test_spec_feedback_examples_are_accepted_and_idempotent(client, app):
    folder = CONFORMANCE / "feedback"
    for name in ("accepted.json", "overridden-no-reason.json", "overridden-with-reason.json"):
        body = json.loads((folder / name).read_text())
        for _ in range(2):
            response = post(client, PV + "/feedback", body)
            assert response.status_code == 200, (name, response.get_json())
    store = app.extensions["cds"].store
    assert store.count("feedback") == 3


def test_cors_preflight_needs_no_authentication(make_app):
    app = make_app({"public_base_url": "https://cds.example.org", "auth": {"required": True, "clients": []}})
    response = app.test_client().options(PV, headers={
        "Origin": "https://sandbox.cds-hooks.org", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert response.status_code == 200
    # Open to any browser client (the CDS Hooks sandbox), as "*", never with credentials.
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert "authorization" in response.headers["Access-Control-Allow-Headers"].lower()


def test_cors_origins_are_configurable(make_app):
    app = make_app({"http": {"cors_origins": ["https://ehr.example.org"], "max_body_bytes": 10_000_000}})
    c = app.test_client()
    allowed = c.get("/cds-services", headers={"Origin": "https://ehr.example.org"})
    assert allowed.headers.get("Access-Control-Allow-Origin") == "https://ehr.example.org"
    other = c.get("/cds-services", headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in other.headers


def test_healthz(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}


def test_unknown_route_and_method_are_operation_outcomes(client):
    outcome(client.get("/nothing-here"), 404)
    outcome(client.get(PV), 405)


def test_fhir_server_outside_allow_list_is_refused_before_any_fetch(make_app, fhir_server):
    server = fhir_server([])
    app = make_app({"fhir": {"allowed_servers": ["https://ehr.example.org/fhir"]}})
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = server.base
    assert "allowed" in outcome(post(app.test_client(), PV, body), 400)
    assert server.requests == []


def test_https_can_be_required(make_app):
    app = make_app({"fhir": {"require_https": True}})
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = "http://ehr.example.org/fhir"
    assert "https" in outcome(post(app.test_client(), PV, body), 400)
    body["fhirServer"] = "https://ehr.example.org/fhir"
    assert post(app.test_client(), PV, body).status_code == 200


def test_as_of_extension_only_honoured_in_demo_mode(make_app):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    live = make_app({"demo": False, "as_of": "2027-06-01"})
    plan = post(live.test_client(), PV, body).get_json()["cards"][0]
    assert plan["summary"].startswith("Chronic lumbar radiculopathy since Jan 2026")  # today from configuration
