"""A misbehaving FHIR server (real local HTTP server) never hangs or breaks the service: every fault
answers 412 with an OperationOutcome within the fetch budget, and the next request is served."""

from __future__ import annotations

import time

import pytest

from conftest import PV, cards_for, load_fixture, post, prefetch_resources

TOKEN = "fault-test-token-9c1d"


def fallback(base: str) -> dict:
    body = load_fixture("pv_missing_prefetch_fhir_fallback")
    body["fhirServer"] = base
    body["fhirAuthorization"]["access_token"] = TOKEN
    return body


@pytest.fixture
def fast_app(make_app):
    # Tight enough to see the budget work, loose enough that a loaded machine answers a healthy
    # server within it.
    return make_app({"fhir": {"total_budget_seconds": 1.5, "timeout_seconds": 1.0}})


@pytest.mark.parametrize("fault", ["timeout", "drip", "500", "401", "malformed", "html", "loop", "huge",
                                   "redirect-away"])
def test_fault_gives_412_within_budget_then_service_recovers(fast_app, fhir_server, fault):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    # One page per search: the recovery request must fit the tight budget even on a loaded machine
    # (with two resources a page it paged for most of it, and its last calls ran out of time).
    server = fhir_server(prefetch_resources(source), page_size=100)
    server.fault["Condition"] = fault
    client = fast_app.test_client()
    started = time.monotonic()
    response = post(client, PV, fallback(server.base))
    elapsed = time.monotonic() - started
    assert response.status_code == 412, response.get_data(as_text=True)
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome" and "conditions" in outcome["issue"][0]["diagnostics"]
    assert TOKEN not in response.get_data(as_text=True)
    assert elapsed < 1.5 + 1.5, elapsed  # the budget, plus generous slack for a loaded machine
    # The next request is answered normally.
    server.fault.clear()
    assert cards_for(client, fallback(server.base))


def test_default_budget_is_three_seconds(client, fhir_server):
    server = fhir_server([])
    server.fault["*"] = "timeout"
    started = time.monotonic()
    response = post(client, PV, fallback(server.base))
    assert response.status_code == 412
    assert time.monotonic() - started < 3.6


def test_redirect_to_another_host_is_not_followed(fast_app, fhir_server, caplog):
    server = fhir_server([])
    server.fault["*"] = "redirect-away"
    response = post(fast_app.test_client(), PV, fallback(server.base))
    assert response.status_code == 412
    # The EHR sees one uniform message; the operator's log says why.
    assert "FHIR server unavailable" in response.get_json()["issue"][0]["diagnostics"]
    reasons = [getattr(r, "fields", {}).get("reason", "") for r in caplog.records]
    assert any("redirect pointed outside the fhirServer base" in r for r in reasons), reasons


def test_paging_link_outside_the_server_is_not_followed(fast_app, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = server.base
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                                      "link": [{"relation": "next", "url": "http://169.254.169.254/latest/meta-data"}]}
    response = post(fast_app.test_client(), PV, body)
    assert response.status_code == 412
    assert server.requests == []


def test_concurrent_fetches_share_one_budget(fast_app, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    server.delay = 0.3  # every call slow, all seven keys missing: sequential would take 2.1 s
    started = time.monotonic()
    assert cards_for(fast_app.test_client(), fallback(server.base))
    assert time.monotonic() - started < 1.0


def test_access_token_never_in_logs_errors_store_or_cards(app, client, fhir_server, caplog):
    import logging
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source), token=TOKEN)
    with caplog.at_level(logging.DEBUG):
        ok = post(client, PV, fallback(server.base))
        server.fault["Condition"] = "500"
        failed = post(client, PV, fallback(server.base))
    assert ok.status_code == 200 and failed.status_code == 412
    assert TOKEN not in ok.get_data(as_text=True) + failed.get_data(as_text=True)
    assert TOKEN not in caplog.text
    store = app.extensions["cds"].store
    store.flush()
    assert TOKEN not in store.dump()
