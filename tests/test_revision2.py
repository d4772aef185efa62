"""Clinical revision 2, read as a clinician would: each finding of the clinical review has its
scenario in fixtures/ and a test here (rule ids, indicator, key figure or phrase, which suggestions
are offered and which are not). The opioid findings are in test_opioid_rev2.py."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import pytest

from conftest import (FIXTURES, OS, PV, card_of, cards_for, codes_of, created, load_fixture, mutate, path_for, post,
                      rules_of)

ACETAMINOPHEN, NAPROXEN, PANTOPRAZOLE, CYCLO5 = "198440", "198014", "314200", "828320"
GABAPENTIN, DULOXETINE, EGFR = "310431", "596930", "98979-8"
MRI_THORACIC_WO, XR_LUMBAR = "36532-0", "24972-2"


def imaging_orders(cards):
    return [r for c in cards for r in created(c, "ServiceRequest") if r["category"][0]["text"] == "Imaging"]


def med_orders(card, code):
    return [r for r in created(card, "MedicationRequest") if code in codes_of([r])]


# -- one voice per order ------------------------------------------------------------------------
def test_thoracic_pain_at_58_same_tier_on_both_hooks(client):
    """Patient-view suggests no MRI in week 2; order-select's warning about that MRI agrees with it."""
    assert not imaging_orders(cards_for(client, "pv_thoracic_back_pain_age_58"))
    card, = cards_for(client, "os_thoracic_mri_age_58_in_week_2")
    assert card["source"]["topic"]["code"] == "imaging.avoid-early" and card["indicator"] == "warning"


def test_thoracic_pain_at_6_weeks_patient_view_mri_is_accepted_by_order_select(client):
    cards = cards_for(client, "pv_thoracic_back_pain_age_58_6_weeks")
    plan = card_of(cards, "thoracic.differential")
    assert plan["indicator"] == "info" and MRI_THORACIC_WO in codes_of(created(plan))


def _each_imaging_suggestion_as_an_order():
    """Every imaging study any patient-view scenario suggests, sent back as a selected draft order."""
    from cds_service.app import create_app
    client = create_app({"demo": True, "db": ":memory:"}).test_client()
    for path in sorted(FIXTURES.glob("pv_*.json")):
        body = json.loads(path.read_text())
        response = post(client, PV, body)
        if response.status_code != 200:
            continue
        for i, study in enumerate(imaging_orders(response.get_json()["cards"])):
            draft = dict(study, id=f"draft-{i}")
            request = dict(body, hook="order-select", hookInstance=f"{body['hookInstance'][:30]}-{i}")
            request["context"] = dict(body["context"], selections=[f"ServiceRequest/draft-{i}"],
                                      draftOrders={"resourceType": "Bundle", "type": "collection",
                                                   "entry": [{"resource": draft}]})
            yield pytest.param(request, id=f"{path.stem}-{study['code']['coding'][0]['code']}")


@pytest.mark.parametrize("request_body", list(_each_imaging_suggestion_as_an_order()))
def test_no_order_select_rule_removes_a_study_patient_view_suggests(client, request_body):
    rules = rules_of(cards_for(client, request_body))
    assert "imaging.avoid-early" not in rules and "imaging.nonspecific" not in rules


# -- emergencies first --------------------------------------------------------------------------------
@pytest.mark.parametrize("name, rule", [("pv_back_pain_with_urinary_retention", "red-flag.cauda-equina"),
                                        ("pv_thoracic_cord_compression", "red-flag.neuro-deficit"),
                                        ("pv_spinal_metastases_with_radiculopathy", "red-flag.malignancy")])
def test_emergency_stands_routine_care_down(client, name, rule):
    cards = cards_for(client, name)
    assert [c["source"]["topic"]["code"] for c in cards] == [rule] and cards[0]["indicator"] == "critical"
    assert "Routine back-pain care resumes once this is treated or ruled out." in cards[0]["detail"]
    assert not [c for c in cards if "naproxen" in json.dumps(c).lower()]


def test_routine_care_returns_once_the_emergency_is_imaged(client):
    def imaged(b):
        b["prefetch"]["procedures"]["entry"].append({"resource": {
            "resourceType": "Procedure", "id": "mri", "status": "completed", "subject": {"reference":
            f"Patient/{b['context']['patientId']}"}, "performedDateTime": "2026-02-27",
            "code": {"coding": [{"system": "http://loinc.org", "code": "30679-5"}]}}})
    body = mutate(load_fixture("pv_radiculopathy_with_foot_drop"), imaged)
    assert "red-flag.neuro-deficit" in rules_of(cards_for(client, body))
    assert len(cards_for(client, body)) > 1  # the care plan is back


# -- acetaminophen ------------------------------------------------------------------------------------
def test_acetaminophen_order_is_3_g_a_day_as_labelled(client):
    plan = card_of(cards_for(client, "pv_low_back_pain_on_anticoagulant"), "first-line.conservative")
    order, = med_orders(plan, ACETAMINOPHEN)
    dosage, = order["dosageInstruction"]
    assert dosage["timing"]["repeat"]["frequency"] == 3 and dosage["doseAndRate"][0]["doseQuantity"]["value"] == 2
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 6  # 6 × 500 mg = 3 g
    assert "max 3 g/day" in [s["label"] for s in plan["suggestions"] if "Acetaminophen" in s["label"]][0]


def test_acetaminophen_with_alcoholic_cirrhosis_is_2_g_a_day(client):
    plan = card_of(cards_for(client, "pv_acute_back_pain_alcoholic_cirrhosis"), "first-line.conservative")
    order, = med_orders(plan, ACETAMINOPHEN)
    dosage, = order["dosageInstruction"]
    assert dosage["maxDosePerPeriod"]["numerator"]["value"] == 4 and dosage["doseAndRate"][0]["doseQuantity"]["value"] == 1
    assert "no more than 2 g a day because of liver risk" in plan["detail"]
    assert not med_orders(plan, NAPROXEN)


def test_no_second_acetaminophen_on_top_of_oxycodone_acetaminophen(client):
    plan = card_of(cards_for(client, "pv_acute_back_pain_on_oxycodone_acetaminophen"), "first-line.conservative")
    assert not med_orders(plan, ACETAMINOPHEN) and not med_orders(plan, NAPROXEN)
    assert "acetaminophen 325 MG / oxycodone hydrochloride 5 MG Oral Tablet, 1,300 mg acetaminophen a day" in plan["detail"]


# -- noise ------------------------------------------------------------------------------------------------
def test_opioid_use_disorder_alone_is_not_an_infection_red_flag(client):
    assert "red-flag.infection" not in rules_of(cards_for(client, "pv_back_pain_with_opioid_use_disorder_only"))


def test_fracture_red_flags_are_for_a_new_episode(client):
    chronic = cards_for(client, "pv_chronic_back_pain_since_2014_osteoporosis_age_80")
    assert "red-flag.fracture" not in rules_of(chronic) and not imaging_orders(chronic)
    new = card_of(cards_for(client, "pv_new_back_pain_osteoporosis"), "red-flag.fracture")
    assert new["indicator"] == "warning" and XR_LUMBAR in codes_of(created(new))


def test_drug_orders_get_no_warning_red_flags(client):
    """The osteoporosis fracture warning is patient-view's; a naproxen order is not the place for it."""
    assert cards_for(client, "os_naproxen_new_back_pain_osteoporosis") == []


def test_one_card_for_one_naproxen_order(client):
    card, = cards_for(client, "os_naproxen_older_adult_ckd3_ssri_prior_mi")
    assert card["indicator"] == "warning" and card["selectionBehavior"] == "any"
    assert set(card["extension"]["radiculopathy-cds.rules"]) == {
        "nsaid.renal", "nsaid.ssri-snri", "nsaid.cardiovascular", "nsaid.older-adult"}
    assert card["summary"].endswith("(+3 more)")
    assert card["detail"].count("### ") == 4
    # The renal finding says to remove the naproxen: no PPI offered to keep it going.
    assert PANTOPRAZOLE not in codes_of(created(card)) and "Not offered: Pantoprazole" in card["detail"]
    replacements = [s for s in card["suggestions"] if s["actions"][0]["type"] == "delete" and len(s["actions"]) > 1]
    assert len(replacements) == 1  # one replacement drug, never two alternatives of one kind


def test_stale_order_counts_on_order_select_but_fires_nothing_on_patient_view(client):
    assert "nsaid.anticoagulant" not in rules_of(cards_for(client, "pv_stale_warfarin_with_current_ibuprofen"))
    card = card_of(cards_for(client, "os_naproxen_with_stale_warfarin"), "nsaid.anticoagulant")
    assert card["indicator"] == "critical"
    assert "on the medication list since 2019, not renewed since: confirm the patient still takes it" in card["detail"]


def test_stale_order_withholds_a_suggestion_and_asks(client):
    plan = card_of(cards_for(client, "pv_acute_back_pain_stale_warfarin"), "first-line.conservative")
    assert not med_orders(plan, NAPROXEN) and med_orders(plan, ACETAMINOPHEN)
    assert "warfarin" in plan["detail"] and "since 2019" in plan["detail"] and "confirm" in plan["detail"]


# -- gaps against the seed guideline ----------------------------------------------------------------------
def test_muscle_relaxant_as_an_adjunct_with_spasm(client):
    plan = card_of(cards_for(client, "pv_acute_back_pain_with_muscle_spasm"), "first-line.conservative")
    order, = med_orders(plan, CYCLO5)
    assert order["dispenseRequest"]["quantity"]["value"] == 21
    assert med_orders(plan, NAPROXEN) and "adjunct to the NSAID" in plan["detail"] and "drowsiness" in plan["detail"]


def test_no_cyclobenzaprine_with_an_ssri(client):
    plan = card_of(cards_for(client, "pv_acute_back_pain_spasm_on_sertraline"), "first-line.conservative")
    assert not med_orders(plan, CYCLO5) and "serotonin" in plan["detail"]


def test_second_line_options_after_an_nsaid(client):
    plan = card_of(cards_for(client, "pv_chronic_radiculopathy_after_nsaid"), "second-line.options")
    assert med_orders(plan, GABAPENTIN) and med_orders(plan, DULOXETINE)
    duloxetine, = med_orders(plan, DULOXETINE)
    assert duloxetine["dispenseRequest"]["quantity"]["value"] == 7 and "then 60 mg" in plan["detail"]
    assert "NICE NG59 advises against" in plan["detail"]


def test_no_second_line_while_one_is_current(client):
    def on_gabapentin(b):
        b["prefetch"]["medicationRequests"]["entry"].append({"resource": {
            "resourceType": "MedicationRequest", "id": "gaba", "status": "active", "intent": "order",
            "subject": {"reference": f"Patient/{b['context']['patientId']}"}, "authoredOn": "2026-02-01",
            "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                      "code": GABAPENTIN}]},
            "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "days"}}}})
    body = mutate(load_fixture("pv_chronic_radiculopathy_after_nsaid"), on_gabapentin)
    assert "second-line.options" not in rules_of(cards_for(client, body))


def test_routine_imaging_of_nonspecific_back_pain(client):
    card, = cards_for(client, "os_lumbar_mri_nonspecific_back_pain_8_weeks")
    assert card["source"]["topic"]["code"] == "imaging.nonspecific" and card["indicator"] == "warning"
    assert card["suggestions"][0]["actions"] == [{"type": "delete", "description":
                                                  "Remove the draft order for MR Lumbar spine WO contrast",
                                                  "resourceId": "ServiceRequest/draft-mri"}]
    assert "91251008" in codes_of(created(card))
    assert "management-elsewhere" in {r["code"] for r in card["overrideReasons"]}


def test_psychosocial_factors_lead_with_cbt(client):
    plan = card_of(cards_for(client, "pv_persistent_back_pain_with_depression"), "nonpharm.therapy")
    referrals = [s["label"] for s in plan["suggestions"]]
    assert referrals.index("Referral for cognitive behavioural therapy") < referrals.index(
        "Referral to physical therapy (exercise therapy)")
    assert "Psychosocial factors" in plan["detail"] and "Depression, unspecified" in plan["detail"]


# -- smaller defects ---------------------------------------------------------------------------------------
def test_naproxen_sodium_with_naproxen_is_a_duplicate(client):
    card = card_of(cards_for(client, "os_naproxen_sodium_with_current_naproxen"), "nsaid.duplicate")
    assert card["indicator"] == "warning" and "naproxen sodium 550" in card["detail"]


def test_snomed_ischemic_heart_disease_is_cardiovascular_disease(client):
    card = card_of(cards_for(client, "os_nsaid_with_ischemic_heart_disease_snomed"), "nsaid.cardiovascular")
    assert "Ischemic heart disease (SNOMED CT 414545008)" in card["detail"]


def test_corneal_transplant_is_not_immunosuppression(client):
    assert "red-flag.infection" not in rules_of(cards_for(client, "pv_back_pain_corneal_transplant"))


def test_gabapentin_at_78_without_egfr_asks_for_kidney_function(client):
    card = card_of(cards_for(client, "os_gabapentin_older_adult_no_egfr"), "gabapentinoid.renal")
    assert "kidney function unknown: check eGFR before dosing" in card["summary"]
    assert "age 78" in card["detail"]
    assert EGFR in codes_of(created(card))


def test_zoster_explains_thoracic_pain(client):
    cards = cards_for(client, "pv_thoracic_pain_explained_by_zoster")
    plan = card_of(cards, "thoracic.differential")
    assert "Likely explained by herpes zoster (B02.9, 2026-01-08): no imaging suggested" in plan["detail"]
    assert not imaging_orders(cards)


def test_pain_severity_reported_38208_5_counts(client):
    plan = card_of(cards_for(client, "pv_radiculopathy_16_weeks_pain_severity_reported"), "procedure.surgical-referral")
    assert "pain score 8/10" in plan["detail"]


def test_observations_prefetch_asks_for_pain_severity_reported(client):
    services = client.get("/cds-services").get_json()["services"]
    assert all("38208-5" in s["prefetch"]["observations"] for s in services)


# -- links and sources ---------------------------------------------------------------------------------------
def _all_cards(client):
    for path in sorted(FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        response = post(client, PV if body["hook"] == "patient-view" else OS, body)
        if response.status_code == 200:
            yield path.stem, response.get_json()["cards"]


def test_links_open_documents_not_search_or_index_pages(client):
    for name, cards in _all_cards(client):
        for card in cards:
            urls = [card["source"].get("url")] + [link["url"] for link in card.get("links", [])]
            for url in filter(None, urls):
                parts = urlsplit(url)
                assert "search" not in parts.path and "query=" not in parts.query, (name, url)
                assert not re.search(r"/drug-safety-and-availability/?$", parts.path), (name, url)


def test_primary_source_and_evidence_line_name_the_same_document(client):
    for name, cards in _all_cards(client):
        for card in cards:
            if "extension" in card:
                continue  # merged cards: one section per finding, checked one by one below
            evidence = card["detail"].split("**Evidence:**")[-1]
            short = card["source"]["label"].split()[0].rstrip(":")
            assert short in evidence, (name, card["source"]["topic"]["code"], card["source"]["label"], evidence)


def test_a_card_never_cites_a_study_it_does_not_offer(client):
    """A card naming another card's MRI names it as that card offers it (with or without contrast)."""
    for name, cards in _all_cards(client):
        offered = {s["label"] for c in cards for s in c.get("suggestions", [])}
        for card in cards:
            for what in re.findall(r"(MRI [a-z ]+spine [a-z ]+contrast) is suggested on the card", card["detail"]):
                assert any(label.startswith(what) for label in offered), (name, what)


# -- suggested orders are complete and match their labels ------------------------------------------------------
def _label_max_mg(label: str) -> float | None:
    m = re.search(r"max ([\d,.]+) (mg|g)/day", label)
    return float(m.group(1).replace(",", "")) * (1000 if m.group(2) == "g" else 1) if m else None


@pytest.mark.parametrize("key", sorted(__import__("cds_service.knowledge", fromlist=["x"]).orderables()["medications"]))
def test_every_suggestable_drug_order_matches_its_label(key):
    from datetime import date

    from cds_service import knowledge, orders
    from conftest import fhir_model
    item = knowledge.orderables()["medications"][key]
    resource = orders.medication_request(key, orders.Ctx("p", date(2026, 3, 1)))
    fhir_model("MedicationRequest").model_validate(resource)
    dosage, = resource["dosageInstruction"]
    assert dosage["route"]["coding"][0]["system"] == "http://snomed.info/sct"
    per_dose = dosage["doseAndRate"][0]["doseQuantity"]["value"]
    per_day = per_dose * dosage.get("timing", {}).get("repeat", {}).get("frequency", 1)
    label_max = _label_max_mg(item["label"])
    if "maxDosePerPeriod" in dosage:
        structured_max = dosage["maxDosePerPeriod"]["numerator"]["value"] * item["strength_mg"]
        assert per_day <= dosage["maxDosePerPeriod"]["numerator"]["value"]  # the schedule fits under the cap
        if label_max is not None:
            assert structured_max == label_max, (key, structured_max, label_max)
    else:
        assert label_max is None, f"{key}: the label states a maximum the structured order lacks"
    if "supply_days" in item and "timing" in item:
        assert resource["dispenseRequest"]["quantity"]["value"] >= per_day * item["supply_days"] or item.get("as_needed")
        assert f"{item['supply_days']} days" in item["label"] or "7 days" in item["label"]


def test_an_orderable_that_is_not_valid_fhir_stops_the_start(monkeypatch):
    from cds_service import knowledge, orders
    from cds_service.app import create_app
    broken = json.loads(json.dumps(knowledge.orderables()))
    broken["services"]["esr"]["code"] = {"system": "not a uri", "code": ["30341-2"]}  # code must be a string
    monkeypatch.setattr(knowledge, "orderables", lambda: broken)
    with pytest.raises(orders.OrderableError, match="services.esr"):
        create_app({"db": ":memory:"})


# -- feedback is credited to the rule that proposed what was accepted ---------------------------------
def _report(app):
    return {r["rule"]: r for r in app.extensions["cds"].store.report()}


def test_accepting_a_care_plan_suggestion_credits_only_the_rule_that_proposed_it(app, client):
    plan, = cards_for(client, "pv_lumbar_radiculopathy_6_weeks")
    assert set(plan["extension"]["radiculopathy-cds.rules"]) == {
        "imaging.persistent-radiculopathy", "nonpharm.therapy", "monitoring.reevaluate"}
    pt = next(s for s in plan["suggestions"] if s["label"] == "Referral to physical therapy (exercise therapy)")
    for minute in range(3):  # three accept events
        post(client, PV + "/feedback", {"feedback": [{"card": plan["uuid"], "outcome": "accepted",
              "outcomeTimestamp": f"2026-03-01T10:0{minute}:00Z", "acceptedSuggestions": [{"id": pt["uuid"]}]}]})
    rows = _report(app)
    assert rows["nonpharm.therapy"]["accepted"] == 3
    assert rows["monitoring.reevaluate"]["accepted"] == 0 and rows["imaging.persistent-radiculopathy"]["accepted"] == 0
    assert sum(r["accepted"] for r in rows.values()) == 3  # 3 accept events, 3 acceptances reported


def test_a_merged_suggestion_counts_for_every_rule_that_proposed_it_and_an_override_for_all(app, client):
    card, = cards_for(client, "os_naproxen_older_adult_ckd3_ssri_prior_mi")
    replace = next(s for s in card["suggestions"] if len(s["actions"]) == 2)  # naproxen → acetaminophen
    post(client, OS + "/feedback", {"feedback": [{"card": card["uuid"], "outcome": "accepted",
          "outcomeTimestamp": "2026-03-01T10:00:00Z", "acceptedSuggestions": [{"id": replace["uuid"]}]}]})
    rows = _report(app)
    assert rows["nsaid.renal"]["accepted"] == 1 and rows["nsaid.older-adult"]["accepted"] == 1
    assert rows["nsaid.cardiovascular"]["accepted"] == 0  # it proposed no acetaminophen
    other, = cards_for(client, "os_naproxen_older_adult_ckd3_ssri_prior_mi")
    post(client, OS + "/feedback", {"feedback": [{"card": other["uuid"], "outcome": "overridden",
          "outcomeTimestamp": "2026-03-01T10:05:00Z", "overrideReason": {"reason": other["overrideReasons"][0]}}]})
    rows = _report(app)
    assert all(rows[r]["overridden"] == 1 for r in other["extension"]["radiculopathy-cds.rules"])


# -- suggest, then warn, never: every suggested drug sent back as an order -------------------------
def _each_suggested_drug_as_an_order():
    """Every medication any scenario suggests, sent back through order-select as the selected draft
    for the same patient (replacing the drafts the scenario had)."""
    from cds_service.app import create_app
    client = create_app({"demo": True, "db": ":memory:"}).test_client()
    for path in sorted(FIXTURES.glob("*.json")):
        body = json.loads(path.read_text())
        response = post(client, path_for(body), body)
        if response.status_code != 200:
            continue
        for card in response.get_json()["cards"]:
            for i, suggestion in enumerate(card.get("suggestions", [])):
                drugs = [a["resource"] for a in suggestion["actions"] if a["type"] == "create"
                         and a["resource"]["resourceType"] == "MedicationRequest"]
                if not drugs:
                    continue
                # The suggestion's first drug is the order; the rest (naproxen's PPI) are signed with it.
                drafts = [dict(d, id=f"suggested-{i}-{j}") for j, d in enumerate(drugs)]
                request = dict(body, hook="order-select", hookInstance=f"{body['hookInstance'][:30]}-s{i}")
                request["context"] = {**body["context"], "selections": [f"MedicationRequest/suggested-{i}-0"],
                                      "draftOrders": {"resourceType": "Bundle", "type": "collection",
                                                      "entry": [{"resource": d} for d in drafts]}}
                code = drugs[0]["medicationCodeableConcept"]["coding"][0]["code"]
                yield pytest.param(request, id=f"{path.stem}-{card['source']['topic']['code']}-{code}-{i}")


@pytest.mark.parametrize("request_body", list(_each_suggested_drug_as_an_order()))
def test_a_suggested_drug_never_draws_a_warning_when_ordered(client, request_body):
    cards = cards_for(client, request_body)
    warned = [(c["indicator"], rules_of([c])) for c in cards if c["indicator"] != "info"
              and not c["source"]["topic"]["code"].startswith("red-flag.")]
    assert warned == []
