"""Safe defaults at the network edge (issue 11 items 8, 9, 13 and the Low items): what a web page,
a hostile request or a misbehaving FHIR server can and cannot make the service do."""

from __future__ import annotations

import io
import json
import time

import pytest

from conftest import PV, FhirServer, cards_for, load_fixture, post, prefetch_resources

TOKEN = "net-test-token-5e2a"
LOCAL = {"fhir": {"allow_private_networks": False}}  # the product's default, which conftest relaxes


def outcome(response, status: int) -> str:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


def fallback(base: str) -> dict:
    body = load_fixture("pv_missing_prefetch_fhir_fallback")
    body["fhirServer"] = base
    body["fhirAuthorization"]["access_token"] = TOKEN
    return body


class HostileFhirServer(FhirServer):
    """The shared local FHIR server plus the faults these tests need."""

    padding = 0

    def _fault(self, h, fault: str) -> bool:
        origin = self.base.rsplit("/fhir", 1)[0]
        if fault == "redirect-outside-base":  # same host, another path
            self._send(h, 302, b"", extra={"Location": f"{origin}/admin/steal"})
        elif fault == "padded":  # a valid, empty searchset made large with whitespace
            body = b'{"resourceType": "Bundle", "type": "searchset", "entry": []' + b" " * self.padding + b"}"
            self._send(h, 200, body)
        else:
            return super()._fault(h, fault)
        return True


@pytest.fixture
def hostile():
    servers = []

    def start(resources: list[dict]) -> HostileFhirServer:
        servers.append(HostileFhirServer(resources))
        return servers[-1]
    yield start
    for s in servers:
        s.close()


# -- item 8: safe defaults ------------------------------------------------------------------------
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_only_json_bodies_are_accepted(client, content_type):
    body = json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks"))
    response = client.post(PV, data=body, content_type=content_type)
    assert "application/json" in outcome(response, 415)
    feedback = client.post(PV + "/feedback", data=json.dumps({"feedback": []}), content_type=content_type)
    outcome(feedback, 415)


def test_json_media_types_with_parameters_and_suffix_are_accepted(client):
    body = json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks"))
    for content_type in ("application/json; charset=utf-8", "application/fhir+json"):
        assert client.post(PV, data=body, content_type=content_type).status_code == 200


def test_cors_is_open_but_never_with_credentials(client):
    preflight = client.options(PV, headers={"Origin": "https://any.example", "Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type"})
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"  # not the caller's origin reflected
    assert "Access-Control-Allow-Credentials" not in preflight.headers
    response = client.post(PV, data=json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks")),
                           content_type="application/json", headers={"Origin": "https://any.example"})
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "169.254.169.254", "10.1.2.3", "192.168.0.10",
                                  "172.16.5.4", "[fe80::1]", "0.0.0.0", "[::ffff:127.0.0.1]"])
def test_private_fhir_servers_are_refused_by_default(make_app, host):
    app = make_app(LOCAL)
    body = fallback(f"http://{host}:8080/fhir")
    text = outcome(post(app.test_client(), PV, body), 400)
    assert "private" in text and host not in text and TOKEN not in text


def test_private_fhir_server_refused_even_with_complete_prefetch(make_app):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = "http://127.0.0.1:9/fhir"
    outcome(post(make_app(LOCAL).test_client(), PV, body), 400)


@pytest.mark.parametrize("private_allowed", [False, True])
def test_an_unparsable_fhir_server_is_400_not_500(make_app, private_allowed):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = "http://[::1/fhir"
    app = make_app({"fhir": {"allow_private_networks": private_allowed}})
    assert "fhirServer" in outcome(post(app.test_client(), PV, body), 400)


def test_a_name_that_resolves_elsewhere_at_fetch_time_is_still_refused(make_app, fhir_server, monkeypatch):
    """DNS rebinding: the name looked public when checked, then led to loopback when fetched."""
    server = fhir_server(prefetch_resources(load_fixture("pv_lumbar_radiculopathy_6_weeks")))
    monkeypatch.setattr("cds_service.http.resolves_to_private", lambda url: False)
    app = make_app(LOCAL)
    outcome(post(app.test_client(), PV, fallback(server.base)), 412)
    assert server.requests == []


def test_private_fhir_server_on_the_allow_list_or_allowed_by_setting_is_called(make_app, fhir_server):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = fhir_server(prefetch_resources(source))
    listed = make_app({"fhir": {"allow_private_networks": False, "allowed_servers": [server.base]}})
    assert cards_for(listed.test_client(), fallback(server.base))
    opened = make_app({"fhir": {"allow_private_networks": True}})
    assert cards_for(opened.test_client(), fallback(server.base))


@pytest.mark.parametrize("fault", ["500", "401", "html", "malformed", "redirect-away"])
def test_fhir_server_errors_are_uniform(client, fhir_server, fault):
    """An answering server and an unreachable one look the same to the caller (no port scanning)."""
    server = fhir_server(prefetch_resources(load_fixture("pv_lumbar_radiculopathy_6_weeks")))
    server.fault["*"] = fault
    answered = outcome(post(client, PV, fallback(server.base)), 412)
    server.close()
    unreachable = outcome(post(client, PV, fallback(server.base)), 412)
    for text in (answered, unreachable):
        problems = text.split("obtained: ", 1)[1].split("; ")
        assert {p.split(": ", 1)[1] for p in problems} == {"FHIR server unavailable"}, text


# -- Low items -----------------------------------------------------------------------------------
def test_wrong_hook_names_the_field_never_the_value(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["hook"] = "order-select<script>alert(1)</script>"
    text = outcome(post(client, PV, body), 400)
    assert "hook" in text and "script" not in text and "order-select" not in text


def test_unknown_service_id_is_not_echoed(client):
    text = outcome(post(client, "/cds-services/evil<img src=x>", {}), 404)
    assert "no CDS service" in text and "evil" not in text and "img" not in text


def test_chunked_body_over_the_limit_is_413(make_app):
    app = make_app({"http": {"max_body_bytes": 10_000}})
    body = json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks")).encode() + b" " * 20_000
    response = app.test_client().post(PV, input_stream=io.BytesIO(body), content_type="application/json",
                                      headers={"Transfer-Encoding": "chunked"},
                                      environ_overrides={"wsgi.input_terminated": True})
    outcome(response, 413)


def test_chunked_body_under_the_limit_is_served(make_app):
    app = make_app({"http": {"max_body_bytes": 1_000_000}})
    body = json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks")).encode()
    response = app.test_client().post(PV, input_stream=io.BytesIO(body), content_type="application/json",
                                      headers={"Transfer-Encoding": "chunked"},
                                      environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code == 200


def test_token_never_leaves_the_base_path_through_a_redirect(client, hostile):
    server = hostile([])
    server.fault["*"] = "redirect-outside-base"
    outcome(post(client, PV, fallback(server.base)), 412)
    assert server.requests  # the base was called ...
    assert not [r for r in server.requests if not r["path"].startswith(("Patient", "Condition", "Medication",
                                                                        "Observation", "Procedure", "Service"))]


def test_token_never_leaves_the_base_path_through_a_next_link(client, hostile):
    source = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    server = hostile(prefetch_resources(source))
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    body["fhirServer"] = server.base
    body["fhirAuthorization"] = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
                                 "scope": "patient/*.read", "subject": "cds-service"}
    origin = server.base.rsplit("/fhir", 1)[0]
    body["prefetch"]["conditions"] = {"resourceType": "Bundle", "type": "searchset", "entry": [],
                                      "link": [{"relation": "next", "url": f"{origin}/fhir-admin/Condition?x=1"}]}
    outcome(post(client, PV, body), 412)
    assert server.requests == []


# -- item 9: one byte budget per request -----------------------------------------------------------
def test_total_bytes_of_all_fetches_are_capped(make_app, hostile):
    app = make_app({"fhir": {"max_total_bytes": 1_000_000, "max_response_bytes": 20_000_000}})
    server = hostile([])
    server.padding = 600_000  # six searches of 600 kB: each under the response cap; any two exceed 1 MB
    server.fault["*"] = "padded"
    body = fallback(server.base)
    body["prefetch"] = {"patient": load_fixture("pv_lumbar_radiculopathy_6_weeks")["prefetch"]["patient"]}
    outcome(post(app.test_client(), PV, body), 412)
    server.padding = 10_000  # the same searches, small, are answered
    assert cards_for(app.test_client(), body) is not None


def test_the_byte_allowance_comes_back_when_a_request_is_done(make_app, hostile):
    """The worker's allowance is shared by its requests and held while their data lives: one request
    after another each gets it whole."""
    app = make_app({"fhir": {"max_total_bytes": 1_500_000}})
    server = hostile([])
    server.padding = 200_000  # six searches: 1.2 MB a request, under 1.5 MB, but not twice
    server.fault["*"] = "padded"
    body = fallback(server.base)
    body["prefetch"] = {"patient": load_fixture("pv_lumbar_radiculopathy_6_weeks")["prefetch"]["patient"]}
    client = app.test_client()
    for _ in range(4):
        assert post(client, PV, body).status_code == 200


# -- item 13: fail fast ----------------------------------------------------------------------------
def test_a_missing_patient_answers_412_without_waiting_for_slow_searches(make_app, hostile):
    app = make_app({"fhir": {"total_budget_seconds": 5.0, "timeout_seconds": 5.0}})
    server = hostile([])  # knows no patient: the read answers 404 at once
    for rtype in ("Condition", "MedicationRequest", "MedicationStatement", "Observation", "Procedure",
                  "ServiceRequest"):
        server.fault[rtype] = "timeout"  # each search takes 5 s
    started = time.monotonic()
    text = outcome(post(app.test_client(), PV, fallback(server.base)), 412)
    elapsed = time.monotonic() - started
    assert "patient" in text
    assert elapsed < 2.5, elapsed  # not the 5 s budget
