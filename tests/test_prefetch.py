"""Prefetch semantics against a real local FHIR server (started by the test, not a mock):
present, missing → fetched (paging, token, Accept), null, OperationOutcome, partial, unreachable."""

from __future__ import annotations

import copy
import socket

from conftest import PV, card_of, cards_for, check_response, load_fixture, post, prefetch_resources, rules_of

TOKEN = "test-access-token-7f3a"


def fallback_request(server_base: str, *, token: str | None = TOKEN) -> dict:
    body = load_fixture("pv_missing_prefetch_fhir_fallback")
    body["fhirServer"] = server_base
    if token:
        body["fhirAuthorization"]["access_token"] = token
    else:
        del body["fhirAuthorization"]
    return body


def test_present_prefetch_is_used_without_calling_the_server(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server([])
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    assert "imaging.persistent-radiculopathy" in rules_of(cards_for(client, body))
    assert server.requests == []


def test_missing_prefetch_is_fetched_with_paging_token_and_accept(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    extra = [dict(r, id=f"htn-{i}", code={"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "I10"}]})
             for i, r in enumerate([source["prefetch"]["conditions"]["entry"][0]["resource"]] * 4)]
    server = fhir_server(prefetch_resources(source) + extra, page_size=2, token=TOKEN)
    cards = cards_for(client, fallback_request(server.base))
    assert rules_of(cards) == ["imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"]
    paths = [r["path"] for r in server.requests]
    assert "Patient/pv-lumbar-6w" in paths
    condition_pages = [r for r in server.requests if r["path"] == "Condition"]
    assert len(condition_pages) == 3  # 5 conditions, 2 per page: the next links were followed
    assert all(r["authorization"] == f"Bearer {TOKEN}" for r in server.requests)
    assert all(r["accept"] == "application/fhir+json" for r in server.requests)
    first = next(r for r in server.requests if r["path"] == "Condition")
    assert first["query"]["patient"] == ["pv-lumbar-6w"]


def test_only_missing_keys_are_fetched(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    del body["prefetch"]["conditions"]
    del body["prefetch"]["observations"]
    assert rules_of(cards_for(client, body))
    assert sorted({r["path"] for r in server.requests}) == ["Condition", "Observation"]


def test_null_prefetch_means_no_data_and_is_never_fetched(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    for key in ("medicationRequests", "medicationStatements", "observations", "procedures", "serviceRequests"):
        body["prefetch"][key] = None
    assert rules_of(cards_for(client, body))
    assert server.requests == []


def test_operation_outcome_prefetch_is_refetched_from_the_server(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [
        {"severity": "error", "code": "forbidden", "diagnostics": "Client could not satisfy prefetch"}]}
    assert "imaging.persistent-radiculopathy" in rules_of(cards_for(client, body))
    assert [r["path"] for r in server.requests] == ["Condition"]


def test_bundle_holding_only_an_operation_outcome_counts_as_failed(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": {
        "resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}}]}
    assert rules_of(cards_for(client, body))
    assert [r["path"] for r in server.requests] == ["Condition"]


def test_operation_outcome_without_fhir_server_is_412_for_required_data(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}
    response = post(client, PV, body)
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and "conditions" in outcome["issue"][0]["diagnostics"]


def test_optional_data_unobtainable_is_said_not_412(client):
    plan = card_of(cards_for(client, "pv_low_back_pain_labs_unavailable"), "first-line.conservative")
    assert "could not be obtained" in plan["detail"]


def test_partial_prefetch_bundle_with_next_link_is_completed(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    radic = source["prefetch"]["conditions"]["entry"][0]["resource"]
    server = fhir_server([radic], page_size=1)
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                                      "link": [{"relation": "next", "url": f"{server.base}/Condition?patient=pv-lumbar-6w"}]}
    assert "imaging.persistent-radiculopathy" in rules_of(cards_for(client, body))
    assert [r["path"] for r in server.requests] == ["Condition"]


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_fhir_server_is_412_and_token_not_echoed(client):
    body = fallback_request(f"http://127.0.0.1:{_closed_port()}/fhir")
    response = post(client, PV, body)
    assert response.status_code == 412
    text = response.get_data(as_text=True)
    assert "FHIR server unavailable" in text and TOKEN not in text


def test_no_prefetch_and_no_fhir_server_is_412(client):
    body = load_fixture("pv_missing_prefetch_fhir_fallback")
    del body["fhirServer"], body["fhirAuthorization"]
    response = post(client, PV, body)
    assert response.status_code == 412
    assert "no fhirServer" in response.get_json()["issue"][0]["diagnostics"]


def test_server_error_on_optional_key_still_answers(client, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    server.fault["Observation"] = "500"
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    del body["prefetch"]["observations"]
    response = post(client, PV, body)
    assert response.status_code == 200
    check_response(response.get_json())


def test_duplicates_across_keys_and_pages_count_once(client):
    body = load_fixture("pv_radiculopathy_8_weeks_after_nsaid")
    stmt = body["prefetch"]["medicationStatements"]["entry"][0]
    body["prefetch"]["medicationStatements"]["entry"].append(copy.deepcopy(stmt))
    body["prefetch"]["medicationRequests"]["entry"].append(copy.deepcopy(stmt))
    plan = card_of(cards_for(client, body), "procedure.epidural-referral")
    assert plan["detail"].count("apixaban 5 MG Oral Tablet") == 1
