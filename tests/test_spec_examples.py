"""The spec's own examples, including the ones that are not valid FHIR R4, never crash the service:
each answers 200 (with schema-valid cards) or a clear 4xx/412 OperationOutcome."""

from __future__ import annotations

import json

import pytest

from conftest import OS, PV, SPEC, check_response, post

REQUESTS = sorted((SPEC / "derived" / "requests").glob("*.json")) + [SPEC / "v1.0" / "patient-view-request.json"]
CONTEXTS = sorted((SPEC / "hooks").glob("*/*.json"))


def _answer(client, body: dict, server_base: str):
    if "fhirServer" in body:
        body["fhirServer"] = server_base  # a local FHIR server that knows nothing: deterministic, offline
    path = OS if body.get("hook") == "order-select" else PV
    response = post(client, path, body)
    assert response.status_code in {200, 400, 412}, response.get_data(as_text=True)
    payload = response.get_json()
    if response.status_code == 200:
        check_response(payload)
    else:
        assert payload["resourceType"] == "OperationOutcome"
        assert "Traceback" not in response.get_data(as_text=True)
    return response


@pytest.mark.parametrize("path", REQUESTS, ids=lambda p: p.stem)
def test_spec_requests_never_crash(client, fhir_server, path):
    _answer(client, json.loads(path.read_text()), fhir_server([]).base)


@pytest.mark.parametrize("path", CONTEXTS, ids=lambda p: f"{p.parent.name}-{p.stem}")
def test_spec_hook_contexts_never_crash(client, fhir_server, path):
    hook = path.parent.name
    body = {"hook": hook, "hookInstance": f"spec-{path.stem}", "fhirServer": "http://placeholder",
            "context": json.loads(path.read_text())["context"],
            "prefetch": {k: None for k in ("conditions", "medicationRequests", "medicationStatements",
                                           "observations", "procedures", "serviceRequests")}}
    body["prefetch"]["patient"] = {"resourceType": "Patient", "id": body["context"]["patientId"]}
    response = _answer(client, body, fhir_server([]).base)
    assert response.status_code == 200


def test_null_prefetch_example_answers_without_fetching(client, fhir_server):
    server = fhir_server([])
    body = json.loads((SPEC / "derived" / "requests" / "patient-view-request-null-prefetch.json").read_text())
    response = _answer(client, body, server.base)
    assert response.status_code in {200, 412}
