"""GET /demo in a real browser (Debian's Chromium driven by Playwright): what a person sees."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from conftest import ROOT, LiveServer, store_env

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def demo_server(store_config):
    server = LiveServer(store_env(store_config()), workers=1, demo=True)
    yield server
    server.stop()


def test_demo_page_shows_cards_as_an_ehr_sidebar(demo_server, tmp_path):
    assert Path(CHROMIUM).exists(), "Debian's chromium package is required (installed by .ci/run)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1400})
        page.goto(demo_server.base + "/demo")
        assert page.title() == "radiculopathy-cds demo"
        link = page.get_by_role("link", name="pv_spinal_metastases_with_radiculopathy")
        assert link.is_visible()
        link.click()
        page.wait_for_selector("article.card")
        cards = page.locator("article.card")
        assert cards.count() == 1  # the emergency stands routine care down
        first = cards.nth(0)
        assert first.locator(".indicator").inner_text().lower() == "critical"
        assert "whole-spine MRI within 24 hours" in first.locator(".summary").inner_text()
        colour = first.evaluate("e => getComputedStyle(e).borderLeftColor")
        assert colour == "rgb(198, 40, 40)"  # critical is red
        assert first.locator(".suggestion").first.inner_text() == "MRI cervical spine without and with contrast"
        assert first.locator(".detail strong").first.inner_text() == "Why:"  # Markdown rendered, not raw
        assert "NG234" in first.locator(".links").inner_text() or "NICE" in first.locator(".links").inner_text()
        assert "Routine back-pain care resumes once this is treated or ruled out" in first.locator(".detail").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo-spinal-metastases.png"), full_page=True)
        page.goto(demo_server.base + "/demo/pv_no_back_pain")
        assert page.locator(".nocards").inner_text().startswith("No cards")
        browser.close()
    assert (ARTIFACTS / "demo-spinal-metastases.png").stat().st_size > 10_000


def test_demo_is_off_unless_enabled(client, make_app):
    off = make_app({"demo": False})
    assert off.test_client().get("/demo").status_code == 404
    assert client.get("/demo").status_code == 200


def test_demo_escapes_record_text(make_app, tmp_path):
    import json
    folder = tmp_path / "fx"
    folder.mkdir()
    body = json.loads((ROOT / "fixtures" / "pv_lumbar_radiculopathy_6_weeks.json").read_text())
    body["prefetch"]["conditions"]["entry"][0]["resource"]["code"]["text"] = "<script>alert(1)</script>"
    (folder / "xss.json").write_text(json.dumps(body))
    app = make_app({"demo_fixtures": str(folder)})
    page = app.test_client().get("/demo/xss").get_data(as_text=True)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
