"""The demo page (`cds-service serve --demo`, GET /demo) without a browser: its scenarios come from
the installed package, whatever folder the service starts in, and viewing one is not a card shown
to a clinician, so it never reaches the ledger."""

from __future__ import annotations

import re

import pytest

from cds_service.app import create_app
from cds_service.demo import scenario_files
from conftest import FIXTURES, PV, load_fixture, post


@pytest.fixture
def store_of():
    def store_of_(app):
        store = app.extensions["cds"].store
        store.flush()
        return store
    return store_of_


def test_scenarios_are_the_packaged_ones_from_any_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # an empty folder: no ./fixtures beside it
    names = [p.name for p in scenario_files(None)]
    assert names == sorted(p.name for p in FIXTURES.glob("*.json"))
    app = create_app({"demo": True, "db": str(tmp_path / "ledger.sqlite3")})
    try:
        page = app.test_client().get("/demo").get_data(as_text=True)
    finally:
        app.extensions["cds"].store.close()
    listed = re.findall(r'<a href="/demo/([^"]+)">', page)
    assert listed == [n.removesuffix(".json") for n in names]


def test_viewing_a_scenario_never_writes_the_ledger(app, client, store_of):
    page = client.get("/demo/pv_back_pain_with_fever")
    assert page.status_code == 200
    assert 'data-rule="red-flag.infection"' in page.get_data(as_text=True)  # the cards were drawn
    store = store_of(app)
    assert store.count("card_rule") == 0 and store.report() == []
    # ...while the same scenario sent by an EHR is recorded: the check above can fail.
    assert post(client, PV, load_fixture("pv_back_pain_with_fever")).status_code == 200
    assert "red-flag.infection" in {r["rule"] for r in store_of(app).report()}


def test_demo_page_works_when_the_service_requires_a_jwt(make_app):
    app = make_app({"public_base_url": "https://cds.example.org", "auth": {"required": True, "clients": []}})
    page = app.test_client().get("/demo/pv_back_pain_with_fever")
    assert page.status_code == 200 and 'data-rule="red-flag.infection"' in page.get_data(as_text=True)
    assert post(app.test_client(), PV, load_fixture("pv_back_pain_with_fever")).status_code == 401
