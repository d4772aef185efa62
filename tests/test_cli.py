"""The console script: `evaluate` (offline rule review), `report`, `rules`, and `serve` as in
production (gunicorn), including the ledger surviving a clean shutdown. Everything but `serve` runs
in-process through cli.main(): the same code as the console script, without a Python start-up each."""

from __future__ import annotations

import json

import pytest
import requests

from cds_service import cli
from conftest import FIXTURES, PV, check_response, load_fixture, rules_of, store_env, path_for


@pytest.fixture
def run(capsys, monkeypatch, tmp_path):
    """run(*args, env={...}) -> (exit code, stdout, stderr) of `cds-service ARGS`, in a clean folder."""
    monkeypatch.chdir(tmp_path)  # the default ledger ./cds-service.sqlite3 must not land in the checkout
    for name in ("CDS_SERVICE_CONFIG", "CDS_SERVICE_DB", "CDS_SERVICE_DB_SCHEMA"):
        monkeypatch.delenv(name, raising=False)

    def run_(*args: str, env: dict | None = None) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            for key, value in (env or {}).items():
                m.setenv(key, value)
            code = cli.main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err
    return run_


def test_evaluate_prints_the_cds_hooks_response(run, tmp_path):
    code, out, err = run("evaluate", str(FIXTURES / "pv_lumbar_radiculopathy_6_weeks.json"),
                         env={"CDS_SERVICE_DB": str(tmp_path / "db.sqlite3")})
    assert code == 0, err
    body = check_response(json.loads(out))
    assert rules_of(body["cards"]) == ["imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"]
    assert not (tmp_path / "db.sqlite3").exists()  # offline review writes no ledger


def test_evaluate_as_of_overrides_the_fixture_date(run):
    code, out, _ = run("evaluate", str(FIXTURES / "pv_lumbar_radiculopathy_6_weeks.json"), "--as-of", "2026-01-25")
    assert code == 0
    assert "first-line.conservative" in rules_of(json.loads(out)["cards"])  # one week after onset


def test_evaluate_reports_errors_as_operation_outcome(run, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"hook": "patient-view", "hookInstance": "x", "context": {}}))
    code, out, _ = run("evaluate", str(bad))
    assert code == 1
    outcome = json.loads(out)
    assert outcome["resourceType"] == "OperationOutcome"
    assert "patientId" in outcome["issue"][0]["diagnostics"]


def test_serve_answers_like_production_and_keeps_the_ledger_on_shutdown(store_config, live_server, run):
    env = store_env(store_config())
    server = live_server(env, workers=2, demo=True)
    body = load_fixture("pv_back_pain_with_fever")
    uuids = []
    for _ in range(4):
        response = requests.post(server.base + PV, json=body, timeout=30)
        assert response.status_code == 200
        uuids += [c["uuid"] for c in check_response(response.json())["cards"]]
    fb = requests.post(server.base + PV + "/feedback", json={"feedback": [
        {"card": uuids[0], "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}, timeout=30)
    assert fb.status_code == 200
    returncode, stderr = server.stop()
    assert returncode == 0, stderr
    assert "pv-fever" not in stderr  # no patient id in the logs
    code, out, err = run("report", "--format", "json", env=env)
    assert code == 0, err
    rows = {r["rule"]: r for r in json.loads(out)}
    assert rows["red-flag.infection"]["shown"] == 4  # every card written before the workers stopped
    assert rows["red-flag.infection"]["overridden"] == 1
    code, table, _ = run("report", env=env)
    line = next(x for x in table.splitlines() if x.startswith("red-flag.infection"))
    assert line.split()[1:4] == ["4", "0", "1"]  # shown, accepted, overridden


def test_report_without_a_ledger_says_so_and_creates_nothing(run, tmp_path):
    missing = tmp_path / "nowhere" / "ledger.sqlite3"
    code, out, err = run("report", env={"CDS_SERVICE_DB": str(missing)})
    assert code == 1 and out == ""
    assert err.count("\n") == 1 and "no ledger" in err and str(missing) in err
    assert not missing.exists() and not missing.parent.exists()
    code, _, err = run("report")  # the default ./cds-service.sqlite3 in an empty folder
    assert code == 1 and "no ledger" in err
    assert list(tmp_path.iterdir()) == [] or not (tmp_path / "cds-service.sqlite3").exists()


def test_bad_configuration_fails_fast(run, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[rules.parameters]\nPERSISTENT_WEEKS = "four"\n')
    code, _, err = run("report", env={"CDS_SERVICE_CONFIG": str(config)})
    assert code == 2 and "PERSISTENT_WEEKS" in err


def test_rules_listing_names_every_rule_a_card_can_come_from(run, client):
    """Every rule behind the cards of every scenario fixture is in the listing, with its sources."""
    code, out, _ = run("rules", "--format", "json")
    assert code == 0
    rows = {r["id"]: r for r in json.loads(out)}
    seen = set()
    for path in sorted(FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        path_ = path_for(body)
        response = client.post(path_, json=body)
        if response.status_code == 200:
            seen |= set(rules_of(response.get_json()["cards"]))
    assert seen and not seen - set(rows), sorted(seen - set(rows))
    for row in rows.values():
        # A source is cited without a URL when its exact page could not be confirmed (no search pages).
        assert row["sources"] and all(s["label"] and (not s["url"] or s["url"].startswith("https://"))
                                      for s in row["sources"]), row
    mme = rows["opioid.mme"]
    assert mme["hooks"] == ["order-select", "patient-view"] and "MME_WARN" in mme["trigger"]


def test_rules_markdown_and_table(run):
    code, markdown, _ = run("rules", "--format", "markdown")
    assert code == 0
    row = next(x for x in markdown.splitlines() if x.startswith("| `imaging.avoid-early` |"))
    assert row.split(" | ")[1] == "order-select"
    assert markdown.index("## Red flags and differential") < markdown.index("`red-flag.cauda-equina`") \
        < markdown.index("## Imaging and procedures")
    _, table, _ = run("rules")
    assert "red-flag.cauda-equina  [order-select, patient-view]  critical" in table


def test_a_server_that_cannot_start_is_reported_and_leaves_no_process(tmp_path):
    """The live-server helper itself: start-up failure shows serve's own message and ends the whole
    process group (before, every failed start left a gunicorn tree behind)."""
    import os

    from conftest import LiveServer
    config = tmp_path / "bad.toml"
    config.write_text('[rules.parameters]\nPERSISTENT_WEEKS = "four"\n')
    groups = []

    class Recording(LiveServer):
        def stop(self):
            groups.append(self.proc.pid)
            return super().stop()
    with pytest.raises(AssertionError, match="did not start(.|\n)*PERSISTENT_WEEKS"):
        Recording({"CDS_SERVICE_CONFIG": str(config), "CDS_SERVICE_DB": str(tmp_path / "db.sqlite3")})
    assert groups
    with pytest.raises(ProcessLookupError):
        os.killpg(groups[0], 0)  # nothing of that process group is left
