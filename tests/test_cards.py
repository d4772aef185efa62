"""The card rules card rules: alert burden (care-plan merge), ordering, one suggestion per card,
sources and links, override reasons, site configuration of rules."""

from __future__ import annotations

from conftest import PV, card_of, cards_for, codes_of, created, load_fixture, mutate, post, rules_of


def test_info_findings_merge_into_one_care_plan_card(client):
    cards = cards_for(client, "pv_lumbar_radiculopathy_6_weeks")
    assert len(cards) == 1
    plan = cards[0]
    assert plan["source"]["topic"] == {"system": "urn:radiculopathy-cds:rule", "code": "care-plan",
                                       "display": "Back pain care plan"}
    assert plan["summary"] == "Lumbar radiculopathy, week 6: care plan"
    assert plan["extension"]["radiculopathy-cds.rules"] == [
        "imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"]
    assert plan["selectionBehavior"] == "any"
    # One section per finding.
    assert plan["detail"].count("### ") == 3


def test_merge_can_be_switched_off(make_app):
    app = make_app({"cards": {"merge_info": False}})
    cards = cards_for(app.test_client(), "pv_lumbar_radiculopathy_6_weeks")
    assert [c["source"]["topic"]["code"] for c in cards] == [
        "imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"]
    assert all("extension" not in c for c in cards)


def test_order_is_critical_warning_info(client):
    body = mutate(load_fixture("pv_current_nsaid_with_egfr_24"), lambda b: b["prefetch"]["patient"].update(
        birthDate="1950-01-01"))
    cards = cards_for(client, body)
    assert [c["indicator"] for c in cards] == ["critical", "warning", "info"]
    assert [c["source"]["topic"]["code"] for c in cards] == ["nsaid.renal", "nsaid.older-adult", "care-plan"]


def test_one_suggestion_never_on_two_cards(client):
    body = mutate(load_fixture("pv_current_nsaid_with_egfr_24"), lambda b: b["prefetch"]["patient"].update(
        birthDate="1950-01-01"))
    renal, older, plan = cards_for(client, body)
    # Both NSAID cards offer acetaminophen: the critical card keeps it, the warning names it.
    assert "198440" in codes_of(created(renal))
    assert "198440" not in codes_of(created(older))
    assert "Acetaminophen 500 mg tablet" in older["detail"] and "is suggested on the card" in older["detail"]
    cards = [renal, older, plan]
    uuids = [s["uuid"] for c in cards for s in c.get("suggestions", [])]
    assert len(uuids) == len(set(uuids))
    keys = [tuple(sorted(codes_of([a["resource"]]))) for c in cards for s in c.get("suggestions", [])
            for a in s["actions"] if "resource" in a]
    assert len(keys) == len(set(keys))


def test_cards_cite_primary_source_and_further_links(client):
    card = card_of(cards_for(client, "pv_back_pain_with_fever"), "red-flag.infection")
    assert card["source"]["label"] == "ACR Appropriateness Criteria: Low Back Pain (2021)"
    assert card["source"]["url"].startswith("https://acsearch.acr.org/")
    assert {link["type"] for link in card["links"]} == {"absolute"}
    assert any("nice.org.uk" in link["url"] for link in card["links"])


def test_warning_and_critical_cards_have_override_reasons_with_display(client):
    for name in ("pv_back_pain_with_fever", "pv_cauda_equina_without_back_pain"):
        for card in cards_for(client, name):
            if card["indicator"] != "info":
                assert all(r["display"] for r in card["overrideReasons"])


def test_details_name_the_facts_that_fired(client):
    card = card_of(cards_for(client, "pv_back_pain_with_fever"), "red-flag.infection")
    assert "2026-02-28" in card["detail"] and "°C" in card["detail"]
    assert "**Evidence:**" in card["detail"]


def test_suggestions_are_drafts_for_the_patient(client):
    for card in cards_for(client, "pv_radiculopathy_with_foot_drop"):
        for resource in created(card):
            assert resource["subject"] == {"reference": "Patient/pv-foot-drop"}
            assert resource["status"] == "draft"


def test_rule_can_be_switched_off(make_app):
    app = make_app({"rules": {"disabled": ["monitoring.reevaluate"]}})
    assert "monitoring.reevaluate" not in rules_of(cards_for(app.test_client(), "pv_lumbar_radiculopathy_6_weeks"))


def test_rule_level_can_be_lowered_not_raised(make_app):
    app = make_app({"rules": {"levels": {"red-flag.infection": "info", "nonpharm.therapy": "critical"}}})
    cards = cards_for(app.test_client(), "pv_back_pain_with_fever")
    assert [c["indicator"] for c in cards] == ["info"]
    assert "red-flag.infection" in cards[0]["extension"]["radiculopathy-cds.rules"]


def test_parameters_tune_thresholds(make_app):
    app = make_app({"rules": {"parameters": {"PERSISTENT_WEEKS": 8}}})
    rules = rules_of(cards_for(app.test_client(), "pv_lumbar_radiculopathy_6_weeks"))
    assert "imaging.persistent-radiculopathy" not in rules and "first-line.conservative" in rules


def test_ledger_records_each_rule_of_a_merged_card(app, client):
    cards = cards_for(client, "pv_lumbar_radiculopathy_6_weeks")
    store = app.extensions["cds"].store
    store.flush()
    rows = store.rows("SELECT card_uuid, rule_id, indicator, hook_instance FROM card_rule")
    assert {r[1] for r in rows} == set(cards[0]["extension"]["radiculopathy-cds.rules"])
    assert {r[0] for r in rows} == {cards[0]["uuid"]}
    # No PHI in the store: the patient id appears nowhere.
    dump = store.dump()
    assert "pv-lumbar-6w" not in dump and "Radiculopathy" not in dump


def test_report_counts_shown_accepted_overridden(app, client):
    warning, plan = cards_for(client, "pv_back_pain_history_of_cancer")
    assert warning["source"]["topic"]["code"] == "red-flag.malignancy"
    post(client, PV + "/feedback", {"feedback": [
        {"card": warning["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z",
         "overrideReason": {"reason": warning["overrideReasons"][0]}},
        {"card": plan["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-03-01T10:01:00Z",
         "acceptedSuggestions": [{"id": plan["suggestions"][0]["uuid"]}]}]})
    rows = {r["rule"]: r for r in app.extensions["cds"].store.report()}
    assert rows["red-flag.malignancy"]["shown"] == 1 and rows["red-flag.malignancy"]["overridden"] == 1
    assert rows["red-flag.malignancy"]["override_reasons"] == {warning["overrideReasons"][0]["code"]: 1}
    # The accepted naproxen was proposed by first-line care only, not by the other rule of the care plan.
    assert rows["first-line.conservative"]["accepted"] == 1
    assert rows["assessment.start-back"]["accepted"] == 0 and rows["assessment.start-back"]["shown"] == 1


def test_feedback_for_unknown_card_is_accepted_and_joined_later(app, client):
    response = post(client, PV + "/feedback", {"feedback": [
        {"card": "not-yet-in-ledger", "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}]})
    assert response.status_code == 200
    assert app.extensions["cds"].store.unmatched_feedback() == 1


def test_summaries_are_short_and_specific(client):
    for name in ("pv_spinal_metastases_with_radiculopathy", "pv_thoracic_cord_compression", "pv_back_pain_with_fever"):
        for card in cards_for(client, name):
            assert 10 < len(card["summary"]) < 140


def test_no_two_cards_give_opposite_imaging_advice(client):
    body = load_fixture("pv_thoracic_cord_compression")
    cards = cards_for(client, body)
    texts = " ".join(c["detail"] for c in cards).lower()
    assert "not recommended" not in texts
