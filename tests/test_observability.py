"""Observability without PHI: one structured JSON log line per request, Prometheus metrics (also
aggregated across gunicorn workers), /healthz and /readyz with the knowledge-base version."""

from __future__ import annotations

import json
import logging

import requests

from conftest import OS, PV, LiveServer, load_fixture, post, store_env


def request_lines(caplog) -> list[dict]:
    return [r.fields for r in caplog.records if r.name == "cds_service.http" and hasattr(r, "fields")]


def test_one_structured_line_per_request_without_phi(client, caplog):
    body = load_fixture("pv_back_pain_with_fever")
    with caplog.at_level(logging.INFO, logger="cds_service"):
        post(client, PV, body)
    (line,) = request_lines(caplog)
    assert line["service"] == "radiculopathy-patient-view" and line["hook"] == "patient-view"
    assert line["hookInstance"] == body["hookInstance"] and line["status"] == 200
    assert line["rules"] == ["red-flag.infection"]  # fever: the emergency stands routine care down
    assert line["latency_ms"] > 0 and line["fhir_fetches"] == 0
    text = caplog.text + json.dumps(line)
    assert "pv-fever" not in text and "M54.59" not in text


def test_log_line_is_json(app, capsys):
    from cds_service.app import JsonFormatter
    record = logging.LogRecord("cds_service.http", logging.INFO, __file__, 1, "request", None, None)
    record.fields = {"status": 200, "rules": ["nsaid.renal"]}
    parsed = json.loads(JsonFormatter().format(record))
    assert parsed["status"] == 200 and parsed["rules"] == ["nsaid.renal"] and parsed["level"] == "INFO"


def _metric(text: str, name: str, **labels) -> float:
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_metrics_count_cards_412s_and_latency(client):
    before = client.get("/metrics").get_data(as_text=True)
    post(client, OS, load_fixture("os_nsaid_with_egfr_24"))
    bad = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    bad["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "x"}]}
    post(client, PV, bad)
    after = client.get("/metrics").get_data(as_text=True)
    assert _metric(after, "cds_cards_total", rule="nsaid.renal", indicator="critical") == \
        _metric(before, "cds_cards_total", rule="nsaid.renal", indicator="critical") + 1
    assert _metric(after, "cds_data_unavailable_total", service="radiculopathy-patient-view") >= 1
    assert _metric(after, "cds_request_duration_seconds_count", service="radiculopathy-order-select", status="200") >= 1


def test_auth_failures_are_counted(make_app):
    app = make_app({"public_base_url": "https://cds.example.org", "auth": {"required": True, "clients": []}})
    c = app.test_client()
    before = _metric(c.get("/metrics").get_data(as_text=True), "cds_auth_failures_total", endpoint="cds.call_service")
    assert post(c, PV, load_fixture("pv_lumbar_radiculopathy_6_weeks")).status_code == 401
    after = _metric(c.get("/metrics").get_data(as_text=True), "cds_auth_failures_total", endpoint="cds.call_service")
    assert after == before + 1


def test_readyz_reports_knowledge_version_and_store(client, app):
    body = client.get("/readyz").get_json()
    assert body["status"] == "ready"
    assert body["knowledge"]["terminology"]["rxnorm"].startswith("Current Prescribable Content")
    def unreachable():
        raise ConnectionError("store down")
    app.extensions["cds"].store.ping = unreachable
    broken = client.get("/readyz")
    assert broken.status_code == 503 and "store unreachable" in broken.get_json()["problems"][0]


def test_metrics_aggregate_across_gunicorn_workers(tmp_path, store_config):
    server = LiveServer({**store_env(store_config()),
                         "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}, workers=2, demo=True)
    try:
        body = load_fixture("os_nsaid_with_egfr_24")
        with requests.Session() as s:
            for _ in range(6):
                assert s.post(server.base + OS, json=body, timeout=10).status_code == 200
        text = requests.get(server.base + "/metrics", timeout=10).text
    finally:
        server.stop()
    assert _metric(text, "cds_cards_total", rule="nsaid.renal", indicator="critical") == 6
