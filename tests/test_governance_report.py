"""`cds-service report --format html`: the committee's report, from a ledger filled by real hook calls
and feedback, checked against `report --format json`, rendered in Chromium, and loading nothing."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import uuid
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import pytest

from cds_service.app import create_app
from conftest import OS, PV, ROOT, card_of, cards_for, cli_path, load_fixture, mutate, post, store_env

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def run(*args, env=None):
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def open_chart(client, name: str) -> list[dict]:
    """One hook call as an EHR makes it: a fresh hookInstance every time."""
    body = mutate(load_fixture(name), lambda b: b.update(hookInstance=str(uuid.uuid4())))
    return cards_for(client, body)


def feedback(client, path: str, card: dict, outcome: str, reason: dict | None = None, day: str = "2026-11-30"):
    item = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": f"{day}T10:00:00Z"}
    if reason:
        item["overrideReason"] = {"reason": reason}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    response = post(client, path + "/feedback", {"feedback": [item]})
    assert response.status_code == 200, response.get_json()


def rules_on(card: dict) -> list[str]:
    return card.get("extension", {}).get("radiculopathy-cds.rules") or [card["source"]["topic"]["code"]]


def fill_ledger(client) -> tuple[Counter, list[str]]:
    """Chart-opens and orders with feedback; returns the cards-per-chart-open distribution and the
    rules of the card overridden without a coded reason."""
    burden: Counter = Counter()
    for name, times in (("pv_back_pain_with_fever", 3), ("pv_spinal_metastases_with_radiculopathy", 1),
                        ("pv_lumbar_radiculopathy_6_weeks", 2)):
        for i in range(times):
            cards = open_chart(client, name)
            burden[len(cards)] += 1
            if name == "pv_back_pain_with_fever":
                infection = card_of(cards, "red-flag.infection")
                reason = infection["overrideReasons"][0 if i < 2 else 1]
                feedback(client, PV, infection, "overridden", reason)
            elif i == 0:  # a suggestion taken on the first chart-open of the other scenarios
                feedback(client, PV, next(c for c in cards if c.get("suggestions")), "accepted")
    for _ in range(2):
        cards = open_chart(client, "os_nsaid_with_anticoagulant")
    warning = next(c for c in cards if c.get("overrideReasons"))
    feedback(client, OS, warning, "overridden", warning["overrideReasons"][1])
    cards = open_chart(client, "os_opioid_with_benzodiazepine")
    warning = next(c for c in cards if c.get("overrideReasons"))
    feedback(client, OS, warning, "overridden")  # no coded reason
    return burden, rules_on(warning)


class ReportPage(HTMLParser):
    """What the report's tables say: per rule, per chart-open size, the headline."""

    def __init__(self, html: str):
        super().__init__()
        self.rules: dict[str, dict] = {}
        self.burden: dict[int, int] = {}
        self.headers: list[str] = []
        self.headline = ""
        self.scripts = 0
        self.external: list[str] = []
        self._rule = self._col = self._cards = None
        self._in_headline = self._in_th = False
        self._burden_cells: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href", "xlink:href", "action", "data"):
            if a.get(key) and re.match(r"\s*(https?:)?//", a[key]):
                self.external.append(a[key])
        if tag == "link":
            self.external.append(a.get("href", "<link>"))
        if a.get("id") == "headline":
            self._in_headline = True
        if tag == "tr" and "data-rule" in a:
            self._rule = a["data-rule"]
            self.rules[self._rule] = {"override_reasons": {}}
        if tag == "tr" and "data-cards" in a:
            self._cards, self._burden_cells = int(a["data-cards"]), []
        if tag == "td" and self._rule and "data-col" in a:
            self._col = a["data-col"]
        if tag == "span" and self._rule and a.get("class") == "reason" and a.get("data-code"):
            self.rules[self._rule]["override_reasons"][a["data-code"]] = int(a["data-n"])
        self._in_th = tag == "th"

    def handle_endtag(self, tag):
        if tag == "p":
            self._in_headline = False
        if tag == "tr":
            if self._cards is not None:
                self.burden[self._cards] = int(self._burden_cells[1])
            self._rule = self._cards = None
        if tag == "td":
            self._col = None
        if tag == "th":
            self._in_th = False

    def handle_data(self, data):
        if self._in_headline:
            self.headline += data
        if self._in_th:
            self.headers.append(data.strip())
        if self._rule and self._col:
            self.rules[self._rule][self._col] = int(data)
        if self._cards is not None and data.strip():
            self._burden_cells.append(data.strip())


@pytest.fixture
def filled(store_config):
    """A ledger filled over HTTP; yields (store environment, chart-open distribution)."""
    config = store_config()
    app = create_app({**config, "demo": True})
    try:
        burden, without_reason = fill_ledger(app.test_client())
    finally:
        app.extensions["cds"].store.close()  # writes what is queued, as a clean shutdown does
    return store_env(config), burden, without_reason


def html_report(env: dict, tmp_path: Path, *args: str) -> tuple[str, ReportPage]:
    out = tmp_path / f"report-{uuid.uuid4().hex[:6]}.html"
    result = run("report", "--format", "html", "--output", str(out), *args, env=env)
    assert result.returncode == 0, result.stderr
    html = out.read_text(encoding="utf-8")
    return html, ReportPage(html)


def test_report_figures_match_the_json_report(filled, tmp_path):
    env, burden, without_reason = filled
    json_rows = {r["rule"]: r for r in json.loads(run("report", "--format", "json", env=env).stdout)}
    html, page = html_report(env, tmp_path)
    assert set(page.rules) == set(json_rows)
    for rule, expected in json_rows.items():
        shown = page.rules[rule]
        assert (shown["shown"], shown["accepted"], shown["overridden"]) == \
            (expected["shown"], expected["accepted"], expected["overridden"]), rule
        assert shown["override_reasons"] == expected["override_reasons"], rule
    # What the hook calls and the feedback made, independently of both reports:
    assert json_rows["red-flag.infection"]["overridden"] == 3
    for rule in without_reason:
        assert page.rules[rule]["overridden"] == 1 and page.rules[rule]["override_reasons"] == {}
    assert "(no coded reason): 1" in html
    assert page.burden == dict(burden) and sum(burden.values()) == 6  # six chart-opens, all with cards
    # The committee's first question, answered at the top.
    from cds_service.rules import CATALOGUE
    title = next(r.title for r in CATALOGUE if r.id == "red-flag.infection")
    assert sum(r["accepted"] for r in json_rows.values()) >= 2  # each credited to the rules that proposed it
    assert page.headline == (f"“{title}” (red-flag.infection) is overridden most: "
                             "3 of 3 cards (100%) in the whole ledger, most often because "
                             "“Benefit outweighs risk for this patient” (2 of 3).")
    assert "Quieted" not in page.headers  # nothing quieted in this ledger: no empty column
    assert page.scripts == 0 and page.external == []
    assert "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none';" in html
    assert html.count("<svg") == 4  # per rule, reasons, weekly, burden
    assert "How to read this" in html and "radiculopathy-cds rule catalogue" in html  # the knowledge-base version


def test_since_keeps_the_cards_shown_from_that_date(filled, tmp_path):
    env, _, _ = filled
    today = dt.datetime.now(dt.timezone.utc).date()
    _, full = html_report(env, tmp_path)
    _, from_yesterday = html_report(env, tmp_path, "--since", (today - dt.timedelta(days=1)).isoformat())
    assert from_yesterday.rules == full.rules
    tomorrow = (today + dt.timedelta(days=1)).isoformat()
    html, later = html_report(env, tmp_path, "--since", tomorrow)
    assert later.rules == {} and later.burden == {}
    assert later.headline == f"No cards were recorded since {tomorrow}: there is nothing to review yet."
    assert "<svg" not in html


def test_an_empty_ledger_gives_an_honest_empty_report(store_config, tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[rules]\ndisabled = ["assessment.start-back"]\nparameters = { MME_WARN = 40 }\n')
    store = store_config()
    from cds_service.store import open_store
    open_store(store["db"], schema=store.get("db_schema")).close()  # a ledger the service created, still empty
    env = {**store_env(store), "CDS_SERVICE_CONFIG": str(config)}
    html, page = html_report(env, tmp_path)
    assert "Rules switched off at this site: <code>assessment.start-back</code>." in html
    parameter = html.split('<tr data-parameter="MME_WARN">')[1].split("</tr>")[0]
    assert re.findall(r'<td class="n">(\d+)</td>', parameter) == ["50", "40"]  # default, this site
    assert page.headline == "No cards were recorded in the whole ledger: there is nothing to review yet."
    assert page.rules == {} and "<svg" not in html
    assert "No card was shown in the whole ledger" in html and "How to read this" in html


def test_report_options_are_checked(tmp_path):
    env = {"CDS_SERVICE_DB": str(tmp_path / "db.sqlite3")}
    bad = run("report", "--format", "html", "--since", "last week", env=env)
    assert bad.returncode == 2 and "--since must be a date (YYYY-MM-DD)" in bad.stderr
    assert "Traceback" not in bad.stderr
    wrong = run("report", "--format", "json", "--since", "2026-01-01", env=env)
    assert wrong.returncode == 2 and "--format html" in wrong.stderr
    from cds_service.store import open_store
    open_store(env["CDS_SERVICE_DB"]).close()  # the service's (empty) ledger
    unwritable = run("report", "--format", "html", "--output", str(tmp_path / "missing" / "r.html"), env=env)
    assert unwritable.returncode == 2 and "cannot write" in unwritable.stderr
    to_stdout = run("report", "--format", "html", env=env)
    assert to_stdout.returncode == 0 and to_stdout.stdout.lstrip().startswith("<!DOCTYPE html>")


def test_weekly_trends_follow_the_ledger_dates(make_app, monkeypatch):
    """Cards shown in three weeks (the ledger clock moved between calls), one with none between."""
    from cds_service.store import base as store_module
    from cds_service.governance.report_html import report_html
    app = make_app()
    client = app.test_client()
    for day, times in (("2026-11-02", 2), ("2026-11-05", 1), ("2026-11-23", 1)):
        monkeypatch.setattr(store_module, "now_text", lambda day=day: f"{day}T09:00:00Z")
        for _ in range(times):
            open_chart(client, "pv_back_pain_with_fever")
    html = report_html(app.extensions["cds"].store)
    weekly = html.split('id="weekly-table"')[1].split("</table>")[0]
    rows = re.findall(r"<tr><td class=\"week\">(\d{4}-\d\d-\d\d)</td><td class=\"n\">(\d+) / (\d+)</td>", weekly)
    assert rows == [("2026-11-02", "3", "0"), ("2026-11-09", "0", "0"), ("2026-11-16", "0", "0"),
                    ("2026-11-23", "1", "0")]
    since = report_html(app.extensions["cds"].store, dt.date(2026, 11, 20))
    assert ReportPage(since).rules["red-flag.infection"]["shown"] == 1


def test_quieted_cards_get_a_column_when_the_ledger_has_them(make_app, monkeypatch):
    from cds_service.governance import ledger_figures
    from cds_service.governance.report_html import report_html
    app = make_app()
    open_chart(app.test_client(), "pv_back_pain_with_fever")
    monkeypatch.setattr(ledger_figures, "quieted_counts", lambda store, since: {"red-flag.infection": 2})
    page = ReportPage(report_html(app.extensions["cds"].store))
    assert "Quieted" in page.headers
    assert {rule: row["quieted"] for rule, row in page.rules.items() if row["quieted"]} == {"red-flag.infection": 2}


def test_report_in_chromium_loads_nothing_from_the_network(tmp_path):
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium package is required (installed by .ci/run)"
    config = {"db": str(tmp_path / "ledger.sqlite3")}  # the page, not the store, is under test
    app = create_app({**config, "demo": True})
    try:
        fill_ledger(app.test_client())
    finally:
        app.extensions["cds"].store.close()
    html, _ = html_report(store_env(config), tmp_path)
    address = "http://report.invalid/report.html"  # served by the route below, never by a network
    requests_made: list[str] = []

    def route(r):
        if r.request.url == address:
            r.fulfill(status=200, content_type="text/html; charset=utf-8", body=html)
        else:
            requests_made.append(r.request.url)
            r.abort()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1400})
            page.route("**/*", route)
            page.goto(address, wait_until="load")
            headline = page.locator("#headline")
            assert headline.is_visible()
            assert "(red-flag.infection) is overridden most" in headline.inner_text()
            box = headline.bounding_box()
            assert box is not None and box["y"] < 300  # at the top, without scrolling
            assert page.locator("#per-rule-table tbody tr").count() == len(re.findall(r'<tr data-rule=', html))
            charts = page.locator("figure svg")
            assert charts.count() == 4
            for i in range(charts.count()):
                size = charts.nth(i).bounding_box()
                assert size["width"] > 500 and size["height"] > 200
            assert page.locator("figure svg .bar").count() > 10  # pygal drew the bars
            assert page.evaluate("document.scripts.length") == 0
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "governance-report.png"), full_page=True)
        finally:
            browser.close()
    assert requests_made == []
    assert (ARTIFACTS / "governance-report.png").stat().st_size > 20_000


def test_text_from_feedback_is_escaped_and_loads_nothing(make_app):
    """Override reasons arrive from the EHR: a hostile code must not become markup, and the free-text
    display is never stored at all (it may hold PHI)."""
    from cds_service.governance.report_html import report_html
    app = make_app()
    client = app.test_client()
    infection = card_of(open_chart(client, "pv_back_pain_with_fever"), "red-flag.infection")
    feedback(client, PV, infection, "overridden", {"system": "urn:ehr:reasons", "code": "ehr-own\"><b>",
                                                   "display": "<img src='https://tracker.example/x.png'>"})
    html = report_html(app.extensions["cds"].store)
    page = ReportPage(html)
    assert page.external == [] and page.scripts == 0 and "<img" not in html
    assert page.rules["red-flag.infection"]["override_reasons"] == {'ehr-own"><b>': 1}
    assert "tracker.example" not in html  # the display was never stored
