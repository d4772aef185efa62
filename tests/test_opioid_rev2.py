"""catalogue revision 2, the opioid part (§1 MOUD, possibly stale, opioid tolerant, overdose history;
§3.7; the MME paragraph), through the HTTP API, as a clinician reads the cards: which rules speak, at
which level, the key figure or phrase, and which one-click suggestions are (and are not) offered.

Findings may later be merged into one card per selected order: the helpers below find a rule's card
through `card.extension["radiculopathy-cds.rules"]` as well as its topic."""

from __future__ import annotations

import pytest

from conftest import cards_for, codes_of, created, entries, load_fixture, mutate

NALOXONE = "1725059"
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"


def rule_ids(cards) -> set[str]:
    out = set()
    for card in cards:
        out.add(card["source"]["topic"]["code"])
        out.update(card.get("extension", {}).get("radiculopathy-cds.rules", []))
    return out


def card_for(cards, rule_id):
    for card in cards:
        if rule_id == card["source"]["topic"]["code"] or rule_id in card.get("extension", {}).get(
                "radiculopathy-cds.rules", []):
            return card
    raise AssertionError(f"no card for {rule_id}: {sorted(rule_ids(cards))}")


def opioid_cards(cards):
    return [c for c in cards if any(r.startswith("opioid.") for r in rule_ids([c]))]


def text(cards) -> str:
    return "\n".join(c["summary"] + "\n" + c["detail"] for c in cards)


def deleted(cards) -> set[str]:
    return {a["resourceId"] for c in cards for s in c.get("suggestions", []) for a in s["actions"]
            if a["type"] == "delete"}


def medication(rid, rxcui, display, status="active", authored="2026-11-20", per_day=4, unit="tablet", **extra):
    concept = {"text": display}
    if rxcui:
        concept["coding"] = [{"system": RX, "code": rxcui, "display": display}]
    return {"resourceType": "MedicationRequest", "id": rid, "status": status, "intent": "order",
            "medicationCodeableConcept": concept, "authoredOn": authored,
            "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": 1, "unit": unit}}]}], **extra}


def add_request(resource):
    def change(body):
        resource["subject"] = {"reference": f"Patient/{body['context']['patientId']}"}
        body["prefetch"]["medicationRequests"]["entry"].append({"resource": resource})
    return change


def replace_request(rid, **fields):
    def change(body):
        for res in entries(body, "medicationRequests"):
            if res["id"] == rid:
                res.update(fields)
    return change


def replace_draft(**fields):
    def change(body):
        body["context"]["draftOrders"]["entry"][0]["resource"].update(fields)
    return change


def coded(rxcui, display):
    return {"coding": [{"system": RX, "code": rxcui, "display": display}], "text": display}


# -- §1 MOUD: buprenorphine ------------------------------------------------------------------------
def test_stable_buprenorphine_naloxone_is_never_reviewed_stopped_or_counted(client):
    cards = cards_for(client, "pv_buprenorphine_naloxone_stable_moud")
    rules = rule_ids(cards)
    assert "opioid.naloxone" in rules  # MOUD is a naloxone reason
    assert NALOXONE in codes_of(created(card_for(cards, "opioid.naloxone")))
    assert "opioid.use-disorder" not in rules and "opioid.mme" not in rules  # MOUD alone fires neither
    everything = text(cards)
    assert "Review or stop" not in everything and "at least 0" not in everything
    assert "MedicationRequest/bup-nx" not in deleted(cards)


@pytest.mark.parametrize("concept", [coded("351265", "buprenorphine 8 MG Sublingual Tablet"),
                                     {"text": "Suboxone 8 mg/2 mg film"}, {"text": "buprenorphine 8 mg"}])
def test_selected_sublingual_buprenorphine_is_moud_not_a_first_opioid(client, concept):
    body = mutate(load_fixture("os_buprenorphine_patch_for_pain"), replace_draft(medicationCodeableConcept=concept))
    cards = cards_for(client, body)
    rules = rule_ids(cards)
    assert not {"opioid.third-line", "opioid.extended-release", "opioid.mme"} & rules
    assert "opioid.naloxone" in rules
    assert "MedicationRequest/draft-butrans" not in deleted(cards)  # a MOUD draft is never removed
    assert "at least 0" not in text(cards)


def test_buprenorphine_patch_for_pain_is_a_pain_opioid(client):
    cards = cards_for(client, "os_buprenorphine_patch_for_pain")
    assert {"opioid.third-line", "opioid.extended-release"} <= rule_ids(cards)
    er = card_for(cards, "opioid.extended-release")
    assert er["indicator"] == "warning"  # not a tolerant-only product
    assert "MedicationRequest/draft-butrans" in deleted([er])
    assert "current opioids 0 of the tolerance threshold" in er["detail"]
    # Buprenorphine has no MME factor: said as such, never as "at least 0".
    assert "MME/day could not be calculated: buprenorphine has no CDC 2022 conversion factor" in er["detail"]
    assert "at least 0" not in text(cards)


def test_opioid_for_a_patient_on_buprenorphine_coordinates_and_continues_the_moud(client):
    body = mutate(load_fixture("pv_buprenorphine_naloxone_stable_moud"), add_request(
        medication("oxy", "1049621", "oxycodone hydrochloride 5 MG Oral Tablet", authored="2026-11-25")))
    cards = cards_for(client, body)
    card = card_for(cards, "opioid.use-disorder")
    assert card["indicator"] == "warning"
    assert "Continue the medication for opioid use disorder" in card["detail"]
    assert "MOUD prescriber" in card["detail"]
    assert "Review or stop** the current buprenorphine" not in text(cards)


# -- §1 MOUD: methadone ------------------------------------------------------------------------------
def test_methadone_with_oud_on_record_is_moud_the_benzodiazepine_is_the_target(client):
    cards = cards_for(client, "os_benzodiazepine_draft_with_methadone_and_oud")
    card = card_for(cards, "opioid.benzodiazepine")
    assert card["indicator"] == "warning"  # MOUD is not in MME/day: no critical tier from it
    assert "keep the MOUD" in card["detail"]  # the benzodiazepine section of the draft's one card
    assert ("methadone with opioid use disorder on the problem list: treated as treatment for OUD; "
            "if it is for pain it would be 141 MME/day") in card["detail"]
    assert deleted(cards) == {"MedicationRequest/draft-alprazolam"}
    assert any(NALOXONE in codes_of(created(c)) for c in cards)
    assert "Review or stop" not in text(opioid_cards(cards))


def test_methadone_with_oud_in_remission_is_still_moud(client):
    def remission(body):
        oud = entries(body, "conditions")[1]
        oud["clinicalStatus"]["coding"][0]["code"] = "remission"
    card = card_for(cards_for(client, mutate(load_fixture("os_benzodiazepine_draft_with_methadone_and_oud"),
                                             remission)), "opioid.benzodiazepine")
    assert card["indicator"] == "warning" and "treated as treatment for OUD" in card["detail"]


def test_methadone_without_oud_is_a_pain_opioid(client):
    body = mutate(load_fixture("os_benzodiazepine_draft_with_methadone_and_oud"),
                  lambda b: b["prefetch"]["conditions"]["entry"].pop(1))
    card = card_for(cards_for(client, body), "opioid.benzodiazepine")
    assert card["indicator"] == "critical" and "141 MME/day" in card["summary"]
    assert "treated as treatment for OUD" not in card["detail"]


# -- §1 MOUD: naltrexone, and opioid.antagonist ---------------------------------------------------------
def test_draft_opioid_while_naltrexone_is_current(client):
    cards = cards_for(client, "os_oxycodone_with_naltrexone_current")
    card = card_for(cards, "opioid.antagonist")
    assert card["indicator"] == "warning"
    assert "blocks the opioid's analgesia" in card["detail"] and "overdose" in card["detail"]
    assert "MedicationRequest/draft-oxy" in deleted(cards)
    assert "opioid.use-disorder" not in rule_ids(cards)  # opioid.antagonist speaks instead



@pytest.mark.parametrize("given,blocked", [("2026-11-10", True), ("2026-10-15", False)])
def test_extended_release_naltrexone_injection_blocks_for_30_days(client, given, blocked):
    vivitrol = "naltrexone 380 MG Extended Release Injectable Suspension"
    body = mutate(load_fixture("os_oxycodone_with_naltrexone_current"), replace_request(
        "naltrexone", status="completed", authoredOn=given, medicationCodeableConcept={"text": vivitrol},
        dosageInstruction=[{"text": "380 mg IM every 4 weeks"}], dispenseRequest={}))
    assert ("opioid.antagonist" in rule_ids(cards_for(client, body))) is blocked

def test_sequestered_naltrexone_in_abuse_deterrent_morphine_is_not_an_antagonist(client):
    embeda = "Abuse-Deterrent morphine sulfate 50 MG / naltrexone hydrochloride 2 MG Extended Release Oral Capsule"
    body = mutate(load_fixture("os_oxycodone_with_naltrexone_current"), replace_request(
        "naltrexone", medicationCodeableConcept=coded("863852", embeda),
        dosageInstruction=[{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "capsule"}}]}]))
    cards = cards_for(client, body)
    assert "opioid.antagonist" not in rule_ids(cards)
    card = card_for(cards, "opioid.mme")  # the morphine is a pain opioid: 50 + 30 MME/day
    assert card["summary"].startswith("Opioid dose 80 MME/day")


def test_draft_naltrexone_for_a_patient_taking_an_opioid(client):
    cards = cards_for(client, "os_naltrexone_draft_with_current_opioid")
    card = card_for(cards, "opioid.antagonist")
    assert card["indicator"] == "warning"
    assert "precipitates opioid withdrawal" in card["detail"] and "7–10 opioid-free days" in card["detail"]
    assert deleted(cards) == {"MedicationRequest/draft-naltrexone"}


def test_draft_naltrexone_for_a_patient_on_buprenorphine_moud(client):
    body = mutate(load_fixture("os_naltrexone_draft_with_current_opioid"), replace_request(
        "oxy", medicationCodeableConcept=coded("1010604", "buprenorphine 8 MG / naloxone 2 MG Sublingual Film")))
    card = card_for(cards_for(client, body), "opioid.antagonist")
    assert "longer after buprenorphine or methadone" in card["detail"]
    assert "medication for opioid use disorder" in card["detail"]


# -- §1 opioid tolerant, opioid.extended-release ----------------------------------------------------------
def test_tolerant_patient_may_start_an_extended_release_opioid(client):
    cards = cards_for(client, "os_extended_release_oxycodone_tolerant_patient")
    assert "opioid.extended-release" not in rule_ids(cards)  # oxycodone 40 mg/day ≥ 30 mg for ≥ 7 days


def test_below_the_tolerance_threshold_an_ordinary_er_strength_is_a_warning(client):
    body = mutate(load_fixture("os_extended_release_oxycodone_tolerant_patient"), replace_request(
        "oxy", medicationCodeableConcept=coded("1049621", "oxycodone hydrochloride 5 MG Oral Tablet")))
    card = card_for(cards_for(client, body), "opioid.extended-release")
    assert card["indicator"] == "warning"
    assert "current opioids 0.67 of the tolerance threshold; tolerance needs ≥ 1 for a week" in card["detail"]


def test_tolerance_needs_a_week_a_renewal_continues_last_months_order(client):
    fixture = load_fixture("os_extended_release_oxycodone_tolerant_patient")
    new = mutate(fixture, replace_request("oxy", authoredOn="2026-11-28"))  # 3 days: not yet a week
    assert card_for(cards_for(client, new), "opioid.extended-release")["indicator"] == "warning"
    earlier = medication("oxy-october", "1049683", "oxycodone hydrochloride 10 MG Oral Tablet", status="completed",
                         authored="2026-10-29", dispenseRequest={
                             "quantity": {"value": 120, "unit": "tablet"},
                             "expectedSupplyDuration": {"value": 30, "unit": "days",
                                                        "system": "http://unitsofmeasure.org", "code": "d"}})
    renewed = mutate(new, add_request(earlier))  # 30 days from 29 October reach the 28 November renewal
    assert "opioid.extended-release" not in rule_ids(cards_for(client, renewed))


def test_stale_opioid_entry_does_not_make_a_patient_tolerant(client):
    body = mutate(load_fixture("os_extended_release_oxycodone_tolerant_patient"),
                  replace_request("oxy", authoredOn="2024-06-01"))  # active, no end, never renewed
    assert "opioid.extended-release" in rule_ids(cards_for(client, body))


def test_oxycontin_60_mg_for_a_patient_who_is_not_tolerant_is_critical(client):
    cards = cards_for(client, "os_oxycontin_60mg_not_tolerant")
    card = card_for(cards, "opioid.extended-release")
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Oxycodone ER 60 mg for a patient who is not opioid tolerant")
    assert "current opioids 0.67 of the tolerance threshold" in card["detail"]
    assert "MedicationRequest/draft-oxycontin-60" in deleted([card])


def test_hydromorphone_er_for_a_patient_who_is_not_tolerant_is_critical(client):
    body = mutate(load_fixture("os_oxycontin_60mg_not_tolerant"), replace_draft(medicationCodeableConcept=coded(
        "902729", "24 HR hydromorphone hydrochloride 12 MG Extended Release Oral Tablet"),
        dosageInstruction=[{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                            "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}]))
    assert card_for(cards_for(client, body), "opioid.extended-release")["indicator"] == "critical"


def test_tolerant_only_strength_is_critical_even_with_cancer(client):
    def metastases(body):
        body["prefetch"]["conditions"]["entry"].append({"resource": {
            "resourceType": "Condition", "id": "mets", "subject": {"reference": "Patient/os-oxycontin-60"},
            "clinicalStatus": {"coding": [{"code": "active"}]},
            "code": {"coding": [{"system": ICD, "code": "C79.51", "display": "Secondary malignant neoplasm of bone"}]},
            "onsetDateTime": "2026-05-01"}})
    cards = cards_for(client, mutate(load_fixture("os_oxycontin_60mg_not_tolerant"), metastases))
    assert card_for(cards, "opioid.extended-release")["indicator"] == "critical"
    assert "opioid.mme" not in rule_ids(cards)  # the §1 exclusion still silences the rest


def test_fentanyl_patch_after_tramadol_20_mme_is_critical(client):
    cards = cards_for(client, "os_fentanyl_patch_after_tramadol")
    card = card_for(cards, "opioid.extended-release")
    assert card["indicator"] == "critical"
    assert card["summary"].startswith("Fentanyl patch 25 mcg/h for a patient who is not opioid tolerant")
    assert "transdermal fentanyl is contraindicated" in card["detail"]
    assert "MedicationRequest/draft-fentanyl" in deleted([card])


# -- §1 overdose history ----------------------------------------------------------------------------------
def test_resolved_overdose_gets_naloxone(client):
    card = card_for(cards_for(client, "pv_opioid_with_resolved_overdose"), "opioid.naloxone")
    assert "T40.2X1A" in card["detail"] and "still history" in card["detail"]
    assert NALOXONE in codes_of(created(card))


def test_snomed_overdose_at_any_status_gets_naloxone_refuted_does_not(client):
    def snomed(status, verification="confirmed"):
        def change(body):
            c = entries(body, "conditions")[1]
            c["code"] = {"coding": [{"system": SCT, "code": "1149222004", "display": "Overdose"}], "text": "Overdose"}
            c["clinicalStatus"]["coding"][0]["code"] = status
            c["verificationStatus"]["coding"][0]["code"] = verification
        return change
    fixture = load_fixture("pv_opioid_with_resolved_overdose")
    card = card_for(cards_for(client, mutate(fixture, snomed("inactive"))), "opioid.naloxone")
    assert "SNOMED CT 1149222004" in card["detail"]
    assert "opioid.naloxone" not in rule_ids(cards_for(client, mutate(fixture, snomed("inactive", "refuted"))))


# -- opioid.third-line reads current treatment -------------------------------------------------------------
def test_patient_on_long_acting_morphine_is_not_starting_opioids(client):
    cards = cards_for(client, "os_oxycodone_for_patient_on_long_acting_morphine")
    assert "opioid.third-line" not in rule_ids(cards)
    assert "first treatment" not in text(cards)
    assert card_for(cards, "opioid.mme")["summary"].startswith("Opioid dose 120 MME/day")


def test_a_possibly_stale_opioid_does_not_count_as_being_on_opioids(client):
    body = mutate(load_fixture("os_oxycodone_for_patient_on_long_acting_morphine"),
                  replace_request("ms-contin", authoredOn="2024-06-01"))
    card = card_for(cards_for(client, body), "opioid.third-line")
    assert "on the medication list since 2024, not renewed since: confirm the patient still takes it" in card["detail"]
    assert "Found: older list entries only, not renewed (confirm them with the patient)" in card["detail"]
    assert "first treatment" not in card["detail"]  # never beside an opioid on the list


def test_current_nsaid_prescribed_months_ago_is_current_treatment(client):
    cards = cards_for(client, "os_oxycodone_with_current_nsaid_since_march")
    assert "opioid.third-line" not in rule_ids(cards)
    assert "no NSAID" not in text(cards)


def test_without_any_treatment_third_line_says_what_it_looked_for(client):
    body = mutate(load_fixture("os_oxycodone_with_current_nsaid_since_march"),
                  lambda b: b["prefetch"]["medicationRequests"]["entry"].clear())
    card = card_for(cards_for(client, body), "opioid.third-line")
    assert "Looked for:" in card["detail"] and "Found: none" in card["detail"]


# -- MME arithmetic ---------------------------------------------------------------------------------------
def test_ingredient_level_code_with_a_dose_in_mg_is_counted(client):
    card = card_for(cards_for(client, "os_oxycodone_ingredient_code_dose_in_mg"), "opioid.mme")
    assert card["summary"].startswith("Opioid dose 60 MME/day")
    assert "oxycodone: 40 mg/day × 1.5 = 60 MME/day" in card["detail"]


def test_mme_card_text_follows_the_site_parameters(make_app):
    client = make_app({"rules": {"parameters": {"MME_WARN": 50, "MME_HIGH": 60}}}).test_client()
    card = card_for(cards_for(client, "os_oxycodone_ingredient_code_dose_in_mg"), "opioid.mme")
    assert "high" in card["summary"] and "at or above 60 MME/day" in card["detail"]
    assert "90" not in card["detail"]


OPIOID_SCENARIOS = ["pv_buprenorphine_naloxone_stable_moud", "os_buprenorphine_patch_for_pain",
                    "os_benzodiazepine_draft_with_methadone_and_oud", "os_oxycodone_with_naltrexone_current",
                    "os_naltrexone_draft_with_current_opioid", "os_extended_release_oxycodone_tolerant_patient",
                    "os_oxycontin_60mg_not_tolerant", "os_fentanyl_patch_after_tramadol",
                    "pv_opioid_with_resolved_overdose", "os_oxycodone_for_patient_on_long_acting_morphine",
                    "os_oxycodone_with_current_nsaid_since_march", "os_oxycodone_ingredient_code_dose_in_mg",
                    "os_text_only_opioid", "os_opioid_without_dosage", "os_opioid_with_opioid_use_disorder"]


@pytest.mark.parametrize("name", OPIOID_SCENARIOS)
def test_at_least_0_mme_never_appears(client, name):
    assert "at least 0 " not in text(cards_for(client, name))

