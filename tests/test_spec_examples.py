"""Spec-shaped requests (tests/data/conformance), including the ones that are not valid FHIR R4, never
crash the service: each gets the one answer an integrator should see."""

from __future__ import annotations

import json

import pytest

from conftest import CONFORMANCE, OS, PV, check_response, post, path_for

# The answer each request gets. fhirServer is replaced by a local FHIR server that knows the patient
# and nothing else: deterministic, offline.
PATIENT = {"resourceType": "Patient", "id": "pt-4711", "gender": "female", "birthDate": "1961-04-18"}
EXPECTED = {
    "patient-view-full": 200,  # only the patient in prefetch: the rest is fetched, and found empty
    "patient-view-v1-prefetch-key": 200,  # an unknown prefetch key is ignored, the data is fetched
    "patient-view-extension-only-userId": 400,  # no patientId
    "patient-view-null-prefetch": 200,  # null = the EHR found no data: nothing to fetch
    "patient-view-operationoutcome-prefetch": 200,  # that key is fetched instead
    "patient-view-paginated-prefetch": 412,  # its next link is not on the (replaced) fhirServer: not followed
    "patient-view-no-prefetch-no-auth": 200,
    "order-select-r4": 200,
    "order-select-sandbox-shape": 200,  # category/reasonCode as objects: read tolerantly
}
REQUESTS = sorted((CONFORMANCE / "requests").glob("*.json"))
CONTEXTS = sorted((CONFORMANCE / "contexts").glob("*/*.json"))


def _answer(client, body: dict, server_base: str):
    if "fhirServer" in body:
        body["fhirServer"] = server_base
    path = path_for(body)
    response = post(client, path, body)
    payload = response.get_json()
    if response.status_code == 200:
        check_response(payload)
    else:
        assert payload["resourceType"] == "OperationOutcome"
        assert "Traceback" not in response.get_data(as_text=True)
    return response


def test_every_request_example_has_an_expected_answer():
    assert {p.stem for p in REQUESTS} - {"order-sign-r4"} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_shaped_requests(client, fhir_server, name):
    body = json.loads((CONFORMANCE / "requests" / f"{name}.json").read_text())
    response = _answer(client, body, fhir_server([PATIENT]).base)
    assert response.status_code == EXPECTED[name], response.get_data(as_text=True)


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
    assert response.get_json() == {"cards": []}  # nothing on record: nothing to say


def test_order_sign_request_is_answered_by_the_order_sign_service(client, fhir_server):
    """order-sign carries order-select's context without `selections`."""
    body = json.loads((CONFORMANCE / "requests" / "order-sign-r4.json").read_text())
    services = {s["hook"]: s["id"] for s in client.get("/cds-services").get_json()["services"]}
    assert services["order-sign"] == "radiculopathy-order-sign"
    body["fhirServer"] = fhir_server([PATIENT]).base
    response = post(client, f"/cds-services/{services['order-sign']}", body)
    assert response.status_code == 200, response.get_data(as_text=True)
    check_response(response.get_json())


def test_null_prefetch_means_no_data_and_is_not_fetched(client, fhir_server):
    server = fhir_server([PATIENT])
    body = json.loads((CONFORMANCE / "requests" / "patient-view-null-prefetch.json").read_text())
    assert _answer(client, body, server.base).status_code == 200
    fetched = {r["path"] for r in server.requests}
    assert not fetched & {"Patient/pt-4711", "Condition", "MedicationRequest"}, fetched
    assert "MedicationStatement" in fetched  # a key missing from prefetch is fetched
