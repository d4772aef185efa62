"""The console script: `evaluate` (offline rule review), `report`, and `serve` as in production
(gunicorn), including the ledger surviving a clean shutdown."""

from __future__ import annotations

import json
import os
import subprocess

import requests

from conftest import FIXTURES, PV, LiveServer, check_response, cli_path, load_fixture, rules_of, store_env



def run(*args, env=None, **kwargs):
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})}, **kwargs)


def test_evaluate_prints_the_cds_hooks_response(tmp_path):
    result = run("evaluate", str(FIXTURES / "pv_lumbar_radiculopathy_6_weeks.json"),
                 env={"CDS_SERVICE_DB": str(tmp_path / "db.sqlite3")})
    assert result.returncode == 0, result.stderr
    body = check_response(json.loads(result.stdout))
    assert rules_of(body["cards"]) == ["imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"]
    assert not (tmp_path / "db.sqlite3").exists()  # offline review writes no ledger


def test_evaluate_as_of_overrides_the_fixture_date(tmp_path):
    result = run("evaluate", str(FIXTURES / "pv_lumbar_radiculopathy_6_weeks.json"), "--as-of", "2026-01-25")
    body = json.loads(result.stdout)
    assert "first-line.conservative" in rules_of(body["cards"])  # one week after onset


def test_evaluate_reports_errors_as_operation_outcome(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {}}))
    result = run("evaluate", str(bad))
    assert result.returncode == 1
    assert json.loads(result.stdout)["resourceType"] == "OperationOutcome"


def test_serve_answers_like_production_and_keeps_the_ledger_on_shutdown(store_config):
    env = store_env(store_config())
    server = LiveServer(env, workers=2, demo=True)
    try:
        body = load_fixture("pv_back_pain_with_fever")
        uuids = []
        for _ in range(4):
            response = requests.post(server.base + PV, json=body, timeout=10)
            assert response.status_code == 200
            uuids += [c["uuid"] for c in check_response(response.json())["cards"]]
        fb = requests.post(server.base + PV + "/feedback", json={"feedback": [
            {"card": uuids[0], "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}, timeout=10)
        assert fb.status_code == 200
    finally:
        returncode, stderr = server.stop()
    assert returncode == 0, stderr
    assert "pv-fever" not in stderr  # no patient id in the logs
    report = run("report", "--format", "json", env=env)
    rows = {r["rule"]: r for r in json.loads(report.stdout)}
    assert rows["red-flag.infection"]["shown"] == 4  # every card written before the workers stopped
    assert rows["red-flag.infection"]["overridden"] == 1
    assert rows["first-line.conservative"]["shown"] == 4
    table = run("report", env=env)
    assert "red-flag.infection" in table.stdout and "overridden" in table.stdout


def test_bad_configuration_fails_fast(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[rules.parameters]\nPERSISTENT_WEEKS = "four"\n')
    result = run("report", env={"CDS_SERVICE_CONFIG": str(config)})
    assert result.returncode == 2 and "PERSISTENT_WEEKS" in result.stderr


def test_rules_listing_is_generated_from_the_rule_definitions():
    from cds_service.rules import CATALOGUE
    rows = json.loads(run("rules", "--format", "json").stdout)
    assert [r["id"] for r in rows] == [r.id for r in CATALOGUE]
    assert len(rows) == 48  # 47 + opioid.antagonist (RULES.md rev. 2)
    mme = next(r for r in rows if r["id"] == "opioid.mme")
    assert mme["hooks"] == ["order-select", "patient-view"] and "MME_WARN" in mme["trigger"]
    assert mme["sources"][0]["label"] == "CDC opioid prescribing guideline (2022)"
    markdown = run("rules", "--format", "markdown").stdout
    assert markdown.count("\n| `") == 48 and "| `imaging.avoid-early` | order-select |" in markdown
    assert "red-flag.cauda-equina  [order-select, patient-view]  critical" in run("rules").stdout
