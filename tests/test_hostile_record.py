"""Hostile record content (issue 11 items 3 and 6), through the HTTP API on real fixtures.

Item 3: one malformed value in a patient's record never gives 500; it is skipped, the card that
needed it says so, and the rest of the record still produces its cards (critical red flags included).
Item 6: free text taken from the record reaches the card Markdown inert: no link, image or HTML."""

from __future__ import annotations

import copy
import json
import re

import pytest

from conftest import (OS, PV, SYNTHEA, card_of, check_response, load_fixture, post, path_for, prefetch_resources,
                      rules_of)

CPT = "http://www.ama-assn.org/go/cpt"


def _res(body: dict, key: str, i: int = 0) -> dict:
    return body["prefetch"][key]["entry"][i]["resource"]


def _draft(body: dict, i: int = 0) -> dict:
    return body["context"]["draftOrders"]["entry"][i]["resource"]


def _cards(client, body: dict) -> list[dict]:
    response = post(client, path_for(body), body)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return check_response(response.get_json())["cards"]


def _mutated(name: str, change) -> dict:
    body = load_fixture(name)
    change(body)
    return body


# -- item 3: the reproductions listed in the issue ------------------------------------------------
METASTASES = "pv_spinal_metastases_with_radiculopathy"


@pytest.mark.parametrize("birth", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_birth_date_at_the_calendar_edges_keeps_the_critical_card(client, birth):
    body = _mutated(METASTASES, lambda b: b["prefetch"]["patient"].__setitem__("birthDate", birth))
    card = card_of(_cards(client, body), "red-flag.malignancy")
    assert card["indicator"] == "critical"


@pytest.mark.parametrize("birth", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
@pytest.mark.parametrize("path", sorted(SYNTHEA.glob("*.json")), ids=lambda p: p.stem)
def test_every_synthea_patient_survives_an_edge_birth_date(make_app, path, birth):
    from test_synthea import synthea_request
    client = make_app({"as_of": "2026-06-01"}).test_client()
    body = synthea_request(path)
    plain = rules_of(_cards(client, body))
    body["prefetch"]["patient"]["birthDate"] = birth
    cards = _cards(client, body)
    if path.stem.startswith("positive-"):
        assert plain and cards  # the back pain still gets its cards, whatever the age reads as


def test_a_bundle_whose_entry_is_a_number_is_skipped(client):
    body = _mutated(METASTASES, lambda b: b["prefetch"]["procedures"].__setitem__("entry", 1.5))
    assert card_of(_cards(client, body), "red-flag.malignancy")["indicator"] == "critical"


def test_a_bundle_whose_link_is_a_number_is_read(client):
    body = _mutated(METASTASES, lambda b: b["prefetch"]["conditions"].__setitem__("link", 1.5))
    assert card_of(_cards(client, body), "red-flag.malignancy")["indicator"] == "critical"


def test_onset_age_out_of_range_keeps_the_critical_card(client):
    def change(b):
        for e in b["prefetch"]["conditions"]["entry"]:
            e["resource"].pop("onsetDateTime", None)
            e["resource"]["onsetAge"] = {"value": 1e300, "unit": "a", "code": {}}
    assert card_of(_cards(client, _mutated(METASTASES, change)), "red-flag.malignancy")["indicator"] == "critical"


@pytest.mark.parametrize("value", [1e300, -1e300, 2**63 - 1, 5e-324, -0.0])
def test_onset_age_of_any_size_is_read_or_skipped(client, value):
    def change(b):
        for e in b["prefetch"]["conditions"]["entry"]:
            e["resource"].pop("onsetDateTime", None)
            e["resource"]["onsetAge"] = {"value": value, "unit": "a", "code": "a"}
    assert card_of(_cards(client, _mutated(METASTASES, change)), "red-flag.malignancy")["indicator"] == "critical"


def _mme_card_detail(cards: list[dict]) -> str:
    return card_of(cards, "opioid.mme")["detail"] if "opioid.mme" in rules_of(cards) else ""


@pytest.mark.parametrize("repeat", [{"periodUnit": {}}, {"periodUnit": ["h"]}, {"period": 5e-324},
                                    {"period": 5e-324, "periodUnit": "s"}, {"frequency": 1e308, "period": 5e-324}])
def test_an_unreadable_frequency_keeps_the_benzodiazepine_card_and_says_mme_is_unknown(client, repeat):
    body = _mutated("os_opioid_with_benzodiazepine",
                    lambda b: _draft(b)["dosageInstruction"][0]["timing"]["repeat"].update(repeat))
    cards = _cards(client, body)
    card = card_of(cards, "opioid.benzodiazepine")  # still fires; its level needs the MME it has not got
    assert "MME/day could not be calculated" in card["detail"]
    assert "MME could not be calculated — the frequency cannot be read" in _mme_card_detail(cards) + card["detail"]
    assert "inf" not in card["detail"] and "nan" not in card["detail"].lower()


def test_a_max_dose_per_period_over_5e_324_seconds_is_ignored(client):
    body = _mutated("os_opioid_with_benzodiazepine", lambda b: _draft(b)["dosageInstruction"][0].__setitem__(
        "maxDosePerPeriod", {"numerator": {"value": 6, "unit": "tablet"}, "denominator": {"value": 5e-324, "code": "s"}}))
    cards = _cards(client, body)
    assert card_of(cards, "opioid.benzodiazepine")["indicator"] == "critical"
    assert "90 MME/day" in card_of(cards, "opioid.benzodiazepine")["detail"]  # the readable dose still counts


def test_a_dose_of_1e308_tablets_is_not_a_number_of_mme(client):
    def change(b):
        _draft(b)["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] = 1e308
        _draft(b)["dispenseRequest"]["expectedSupplyDuration"] = {"value": 14, "unit": "days", "code": "d"}
    cards = _cards(client, _mutated("os_opioid_14_day_supply_acute_pain", change))
    card = card_of(cards, "opioid.acute-duration")
    assert "14 days' supply" in card["detail"]
    assert "inf" not in json.dumps(cards)
    assert "could not be calculated" in card["detail"]
    limit = next(s for s in card["suggestions"] if s["label"].startswith("Limit"))
    dispense = limit["actions"][0]["resource"]["dispenseRequest"]
    assert dispense["expectedSupplyDuration"]["value"] == 7


@pytest.mark.parametrize("duration", [{"value": 14, "code": ["d"]}, {"value": 14, "code": []},
                                      {"value": 14, "unit": {"d": 1}}, {"value": 1e308, "code": "a"}])
def test_an_unreadable_supply_duration_falls_back_to_quantity(client, duration):
    body = _mutated("os_opioid_14_day_supply_acute_pain",
                    lambda b: _draft(b)["dispenseRequest"].__setitem__("expectedSupplyDuration", duration))
    card = card_of(_cards(client, body), "opioid.acute-duration")
    assert card["indicator"] == "warning"


def test_an_unreadable_supply_duration_of_a_current_order_is_skipped(client):
    def change(b):
        for e in b["prefetch"]["medicationRequests"]["entry"]:
            e["resource"]["status"] = "active"
            e["resource"]["dispenseRequest"] = {"expectedSupplyDuration": {"value": 1e308, "code": "a"},
                                                "numberOfRepeatsAllowed": 10**30}
    cards = _cards(client, _mutated("os_opioid_with_benzodiazepine", change))
    assert card_of(cards, "opioid.benzodiazepine")["indicator"] == "critical"


@pytest.mark.parametrize("comparator", [[">"], {}, 1])
def test_an_egfr_comparator_of_the_wrong_type_is_ignored(client, comparator):
    body = _mutated("pv_current_nsaid_with_egfr_24",
                    lambda b: _res(b, "observations")["valueQuantity"].__setitem__("comparator", comparator))
    card = card_of(_cards(client, body), "nsaid.renal")
    assert card["indicator"] == "critical" and "eGFR 24" in card["detail"]


EGFR_FIXTURE = "os_naproxen_older_adult_ckd3_ssri_prior_mi"  # eGFR 45 and three other NSAID findings


def _says_egfr_unreadable(cards: list[dict]) -> None:
    card = card_of(cards, "nsaid.older-adult")  # the NSAID order's card: it needed the eGFR
    assert "In the record but not readable (ignored): " in card["detail"]
    assert "LOINC 98979-8" in card["detail"].split("not readable (ignored): ")[1]
    assert "nsaid.renal" not in rules_of(cards)  # no number, no eGFR finding


@pytest.mark.parametrize("value", ["NaN", "45", "٤٥", [45], {"value": 45}, True])
def test_an_egfr_that_is_not_a_number_is_named_unreadable(client, value):
    body = _mutated(EGFR_FIXTURE, lambda b: _res(b, "observations")["valueQuantity"].__setitem__("value", value))
    _says_egfr_unreadable(_cards(client, body))


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1" + "0" * 400])
def test_an_egfr_from_the_fhir_server_that_is_not_a_finite_number_is_said_in_the_card(client, fhir_server, value):
    """JSON from a FHIR server may carry NaN, Infinity or an integer beyond any float. The strict JSON
    reader refuses the whole response (NaN and Infinity are not JSON, and it reads integers up to 64 bits),
    so the card says kidney function could not be checked."""
    source = load_fixture(EGFR_FIXTURE)
    observation = _res(source, "observations")
    observation["valueQuantity"]["value"] = 12345.0
    served = json.dumps(observation).replace("12345.0", value)
    server = fhir_server(prefetch_resources(source))
    serve_rest, served_pages = server.handle, []

    def handle(h):
        if h.path.startswith("/fhir/Observation"):
            served_pages.append(h.path)
            page = '{"resourceType": "Bundle", "type": "searchset", "entry": [{"resource": %s}]}' % served
            return server._send(h, 200, page.encode())
        return serve_rest(h)
    server.handle = handle
    body = copy.deepcopy(source)
    body["fhirServer"] = server.base
    del body["prefetch"]["observations"]
    cards = _cards(client, body)
    assert served_pages  # the observations came from the server
    card = card_of(cards, "nsaid.older-adult")
    assert "Kidney function could not be checked: the laboratory results could not be obtained" in card["detail"]
    assert "nsaid.renal" not in rules_of(cards)  # no number, no eGFR finding


def test_a_cpt_superscript_two_beside_a_spine_imaging_code(client):
    body = _mutated("pv_immunosuppressed_after_mri", lambda b: _res(b, "procedures")["code"]["coding"].insert(
        0, {"system": CPT, "code": "²"}))
    plain = rules_of(_cards(client, load_fixture("pv_immunosuppressed_after_mri")))
    assert rules_of(_cards(client, body)) == plain  # the MRI is still read from its other code


def test_every_listed_reproduction_at_once_keeps_the_critical_card(client):
    """All the malformed values of the issue in one record: the malignancy red flag still fires."""
    def change(b):
        b["prefetch"]["patient"]["birthDate"] = "9999-12-31T23:59:59-01:00"
        b["prefetch"]["procedures"]["entry"] = 1.5
        b["prefetch"]["observations"] = {"resourceType": "Bundle", "entry": [{"resource": {
            "resourceType": "Observation", "id": "gfr", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]},
            "effectiveDateTime": "0001-01-01T00:00:00+01:00",
            "valueQuantity": {"value": 5e-324, "comparator": [">"]}}}]}
        b["prefetch"]["medicationRequests"] = {"resourceType": "Bundle", "entry": [{"resource": {
            "resourceType": "MedicationRequest", "id": "oxy", "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": "1049621"}]},
            "authoredOn": "2026-02-20",
            "dosageInstruction": [{"timing": {"repeat": {"period": 5e-324, "periodUnit": {}}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1e308}}],
                                   "maxDosePerPeriod": {"numerator": {"value": 1}, "denominator": {"value": 5e-324, "code": "s"}}}],
            "dispenseRequest": {"expectedSupplyDuration": {"value": 5, "code": []}}}}]}
        for e in b["prefetch"]["conditions"]["entry"]:
            e["resource"]["onsetAge"] = {"value": 1e300}
    body = _mutated(METASTASES, change)
    cards = _cards(client, body)
    assert cards[0]["indicator"] == "critical" and "red-flag.malignancy" in rules_of(cards)



# -- item 6: record free text in card Markdown ------------------------------------------------------
HOSTILE_TEXT = "[click](javascript:alert(1)) ![x](https://evil.example/t.png) <img src=x onerror=alert(1)>"
MORE_HOSTILE = ["<script>alert(2)</script>", "<https://evil.example/auto>", "https://evil.example/bare",
                "www.evil.example", "[ref]: javascript:alert(3)\n\n[ref]", "`code` *bold* _em_ ~~gone~~",
                "line\n# heading\n<iframe src=https://evil.example>"]


def _gfm(markdown: str) -> str:
    """The card Markdown as an EHR renders it: GitHub Flavored Markdown (CDS Hooks 2.0), with raw
    HTML let through so that any that survived would show."""
    import cmarkgfm
    from cmarkgfm.cmark import Options
    return cmarkgfm.github_flavored_markdown_to_html(markdown, options=Options.CMARK_OPT_UNSAFE)


def _assert_inert(cards: list[dict]) -> None:
    for card in cards:
        for markdown in [card["summary"], card.get("detail", "")] + [s["label"] for s in card.get("suggestions", [])]:
            rendered = _gfm(markdown)
            assert not re.search(r"<(a|img|script|iframe)\b", rendered), rendered
            assert "evil.example" not in " ".join(re.findall(r'(?:href|src)="([^"]*)"', rendered))
            assert not re.search(r"<h\d>[^<]*heading", rendered), rendered  # record text cannot start a block


def _all_record_text(body: dict, text: str, ids: bool = False) -> dict:
    """Every text, display and medication name in the record's prefetch set to `text` (and, with
    `ids`, every resource id: ids are copied into the detail too)."""
    def visit(node):
        if isinstance(node, dict):
            for key in list(node):
                if key in {"text", "display"} and isinstance(node[key], str):
                    node[key] = text
                else:
                    visit(node[key])
        elif isinstance(node, list):
            for item in node:
                visit(item)
    for key, value in body["prefetch"].items():
        visit(value)
        if ids and isinstance(value, dict):
            for entry in value.get("entry", []):
                if key != "patient":
                    entry["resource"]["id"] = text
    return body


def test_condition_text_reaches_the_card_inert(client):
    body = _mutated("pv_lumbar_radiculopathy_6_weeks",
                    lambda b: _res(b, "conditions")["code"].__setitem__("text", HOSTILE_TEXT))
    cards = _cards(client, body)
    card = card_of(cards, "imaging.persistent-radiculopathy")
    assert "(javascript:alert(1))" in card["detail"]  # the text is shown as written...
    rendered = _gfm(card["detail"])
    assert "[click](javascript:alert(1)) ![x](https://evil.example/t.png) &lt;img src=x onerror=alert(1)&gt;" \
        in rendered  # ...as text: no link, no image, no HTML
    assert not re.search(r"(?<!\\)\[click(?<!\\)\]\(", card["detail"])  # no Markdown link syntax survives
    assert "<img" not in card["detail"]
    _assert_inert(cards)


def test_ordinary_record_text_is_unchanged(client):
    cards = _cards(client, load_fixture("pv_lumbar_radiculopathy_6_weeks"))
    assert "Radiculopathy, lumbar region (ICD-10-CM M54.16)" in card_of(cards, "imaging.persistent-radiculopathy")["detail"]


@pytest.mark.parametrize("text", [HOSTILE_TEXT] + MORE_HOSTILE)
@pytest.mark.parametrize("fixture", ["pv_lumbar_radiculopathy_6_weeks", "pv_current_nsaid_with_egfr_24",
                                     "pv_chronic_radiculopathy_after_nsaid", "os_opioid_with_benzodiazepine",
                                     "os_nsaid_with_lithium_text_only", "pv_spinal_metastases_with_radiculopathy"])
def test_every_record_text_reaches_the_cards_inert(client, fixture, text):
    """Condition, drug, procedure and observation texts and displays, and resource ids."""
    body = _all_record_text(load_fixture(fixture), text, ids=True)
    _assert_inert(_cards(client, body))


def test_a_drug_named_only_in_text_reaches_the_card_inert(client):
    def change(b):
        for e in b["prefetch"]["medicationRequests"]["entry"]:
            e["resource"]["medicationCodeableConcept"] = {"text": "ibuprofen 800 MG Oral Tablet " + HOSTILE_TEXT}
    cards = _cards(client, _mutated("pv_current_nsaid_with_egfr_24", change))
    card = card_of(cards, "nsaid.renal")
    assert "ibuprofen 800 MG Oral Tablet \\[click\\]" in card["detail"]
    _assert_inert(cards)


def test_an_unreadable_lab_description_reaches_the_card_inert(client):
    def change(b):
        observation = _res(b, "observations")
        observation["code"]["text"] = HOSTILE_TEXT
        observation["id"] = HOSTILE_TEXT
        observation["valueQuantity"]["value"] = "NaN"
    cards = _cards(client, _mutated(EGFR_FIXTURE, change))
    assert "not readable" in card_of(cards, "nsaid.older-adult")["detail"]
    _assert_inert(cards)


def test_the_demo_page_renders_no_record_link(make_app, tmp_path):
    """GET /demo/<scenario> in Chromium: the hostile condition text shows as text, never as a link,
    an image or HTML, and no script runs."""
    from pathlib import Path

    from playwright.sync_api import sync_playwright
    folder = tmp_path / "scenarios"
    folder.mkdir()
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    _res(body, "conditions")["code"]["text"] = HOSTILE_TEXT
    (folder / "hostile.json").write_text(json.dumps(body))
    page_html = make_app({"demo_fixtures": str(folder)}).test_client().get("/demo/hostile").get_data(as_text=True)
    assert 'href="javascript:' not in page_html and "<img" not in page_html
    chromium = "/usr/bin/chromium"
    assert Path(chromium).exists(), "Debian's chromium package is required (installed by .ci/run)"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox", "--disable-gpu"])
        try:
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.route("**/*", lambda route: route.abort())  # nothing leaves the page (no tracking image)
            page.set_content(page_html)
            detail = page.locator("article.card .detail").first
            assert HOSTILE_TEXT in detail.inner_text()  # shown as written, as text
            assert page.locator("a[href^='javascript:']").count() == 0
            assert page.locator(".detail a, .detail img, .detail script").count() == 0
            assert dialogs == []
        finally:
            browser.close()
