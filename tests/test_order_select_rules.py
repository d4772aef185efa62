"""Every order-select rule of the imaging rules (imaging.avoid-early) and §3.4–§3.7, positive and
negative, through the HTTP API; the suggestions a clinician can accept in one click."""

from __future__ import annotations

from conftest import card_of, cards_for, codes_of, created, entries, load_fixture, mutate, rules_of

ACETAMINOPHEN, PANTOPRAZOLE, NALOXONE, NAPROXEN, CYCLO5 = "198440", "314200", "1725059", "198014", "828320"


def actions(card, kind):
    return [a for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == kind]


def draft_entry(body):
    return body["context"]["draftOrders"]["entry"][0]["resource"]


def drop_statements(body):
    body["prefetch"]["medicationStatements"]["entry"] = []


def set_birth(date):
    return lambda b: b["prefetch"]["patient"].update(birthDate=date)


# -- §3.2 -----------------------------------------------------------------------------------
def test_early_imaging_without_red_flags_warns_and_offers_deleting_the_draft(client):
    card = card_of(cards_for(client, "os_early_mri_without_red_flags"), "imaging.avoid-early")
    assert card["indicator"] == "warning"
    assert actions(card, "delete") == [{"type": "delete", "description": "Remove the draft order for MR Lumbar spine WO contrast",
                                        "resourceId": "ServiceRequest/draft-mri"}]
    assert {r["code"] for r in card["overrideReasons"]} >= {"red-flag-documented", "pre-procedural-planning"}


def test_early_imaging_with_red_flag_gets_the_red_flag_not_the_warning(client):
    rules = rules_of(cards_for(client, "os_early_mri_with_cancer_history"))
    assert "red-flag.malignancy" in rules and "imaging.avoid-early" not in rules


def test_imaging_after_four_weeks_is_fine(client):
    body = mutate(load_fixture("os_early_mri_without_red_flags"),
                  lambda b: entries(b, "conditions")[0].update(onsetDateTime="2026-01-10"))
    assert "imaging.avoid-early" not in rules_of(cards_for(client, body))


# -- §3.4 NSAIDs -------------------------------------------------------------------------------
def test_gi_bleed_recent_is_critical_remove_or_replace_never_protect(client):
    card = card_of(cards_for(client, "os_nsaid_with_recent_gi_bleed"), "nsaid.gi-bleed")
    assert card["indicator"] == "critical" and card["selectionBehavior"] == "any"
    replace = card["suggestions"][0]["actions"]
    assert [a["type"] for a in replace] == ["delete", "create"]
    assert replace[0]["resourceId"] == "MedicationRequest/draft-nsaid"
    assert codes_of([replace[1]["resource"]]) == {ACETAMINOPHEN}
    # The card says to remove the NSAID, so it does not also offer a PPI that would keep it going.
    assert PANTOPRAZOLE not in codes_of(created(card))
    assert "Not offered: Pantoprazole" in card["detail"]


def test_history_of_ulcer_is_only_a_warning(client):
    assert card_of(cards_for(client, "os_nsaid_with_history_of_ulcer"), "nsaid.gi-bleed")["indicator"] == "warning"


def test_no_gi_card_without_gi_history(client):
    body = mutate(load_fixture("os_nsaid_with_recent_gi_bleed"), lambda b: b["prefetch"]["conditions"]["entry"].pop(1))
    assert "nsaid.gi-bleed" not in rules_of(cards_for(client, body))


def test_nsaid_with_anticoagulant_is_critical(client):
    card = card_of(cards_for(client, "os_nsaid_with_anticoagulant"), "nsaid.anticoagulant")
    assert card["indicator"] == "critical" and "apixaban" in card["detail"]


def test_anticoagulant_draft_with_current_nsaid_fires_the_other_way_and_keeps_the_draft(client):
    card = card_of(cards_for(client, "os_anticoagulant_draft_with_current_nsaid"), "nsaid.anticoagulant")
    assert card["indicator"] == "critical"
    assert not actions(card, "delete")  # the apixaban draft is not the culprit
    assert codes_of(created(card)) == {ACETAMINOPHEN}
    assert "ibuprofen 800 MG Oral Tablet: review or stop" in card["detail"]


def test_low_dose_aspirin_is_an_antiplatelet_not_a_second_nsaid(client):
    cards = cards_for(client, "os_nsaid_with_low_dose_aspirin")
    assert card_of(cards, "nsaid.anticoagulant")["indicator"] == "warning"
    assert "nsaid.duplicate" not in rules_of(cards)


def test_high_dose_aspirin_counts_as_an_nsaid(client):
    def high(b):
        stmt = entries(b, "medicationStatements")[0]
        stmt["dosage"] = [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                           "doseAndRate": [{"doseQuantity": {"value": 8, "unit": "tablet"}}]}]  # 8 × 81 × 4 = 2.6 g
    assert "nsaid.duplicate" in rules_of(cards_for(client, mutate(load_fixture("os_nsaid_with_low_dose_aspirin"), high)))


def test_nsaid_with_ssri_suggests_a_ppi_or_info_when_protected(client):
    card = card_of(cards_for(client, "os_nsaid_with_ssri"), "nsaid.ssri-snri")
    assert card["indicator"] == "warning" and PANTOPRAZOLE in codes_of(created(card))
    protected = card_of(cards_for(client, "os_nsaid_with_ssri_and_ppi"), "nsaid.ssri-snri")
    assert protected["indicator"] == "info" and "omeprazole" in protected["detail"]


def test_nsaid_with_corticosteroid(client):
    card = card_of(cards_for(client, "os_nsaid_with_corticosteroid"), "nsaid.corticosteroid")
    assert card["indicator"] == "warning"
    assert "nsaid.corticosteroid" not in rules_of(cards_for(client, mutate(load_fixture("os_nsaid_with_corticosteroid"), drop_statements)))


def test_renal_critical_warning_and_comparator(client):
    critical = card_of(cards_for(client, "os_nsaid_with_egfr_24"), "nsaid.renal")
    assert critical["indicator"] == "critical"
    assert critical["summary"] == "NSAID with eGFR 24: avoid — risk of acute kidney injury"
    assert card_of(cards_for(client, "os_nsaid_with_egfr_45"), "nsaid.renal")["indicator"] == "warning"
    assert "nsaid.renal" not in rules_of(cards_for(client, "os_nsaid_with_egfr_above_60_comparator"))


def test_nsaid_cards_say_when_kidney_function_could_not_be_checked(client):
    body = load_fixture("os_nsaid_with_heart_failure")
    body["prefetch"]["observations"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "forbidden"}]}
    card = card_of(cards_for(client, body), "nsaid.heart-failure")
    assert "Kidney function could not be checked" in card["detail"]


def test_heart_failure_and_cardiovascular(client):
    assert card_of(cards_for(client, "os_nsaid_with_heart_failure"), "nsaid.heart-failure")["indicator"] == "warning"
    cv = card_of(cards_for(client, "os_nsaid_with_prior_mi"), "nsaid.cardiovascular")
    assert "shortest" in cv["detail"] and "Naproxen" in cv["detail"]
    assert "nsaid.cardiovascular" not in rules_of(cards_for(client, "os_nsaid_with_heart_failure"))


def test_pregnancy_tiers(client):
    assert card_of(cards_for(client, "os_nsaid_at_24_weeks_pregnancy"), "nsaid.pregnancy")["indicator"] == "critical"
    assert card_of(cards_for(client, "os_nsaid_in_early_pregnancy"), "nsaid.pregnancy")["indicator"] == "warning"


def test_early_pregnancy_code_plus_elapsed_weeks_reaches_20(client):
    body = load_fixture("os_nsaid_in_early_pregnancy")
    entries(body, "conditions")[1]["onsetDateTime"] = "2025-12-10"  # Z3A.10 recorded 11.7 weeks ago
    assert card_of(cards_for(client, body), "nsaid.pregnancy")["indicator"] == "critical"


def test_pregnancy_code_older_than_42_weeks_does_not_count(client):
    body = load_fixture("os_nsaid_in_early_pregnancy")
    entries(body, "conditions")[1]["onsetDateTime"] = "2024-12-01"
    assert "nsaid.pregnancy" not in rules_of(cards_for(client, body))


def test_cirrhosis(client):
    card = card_of(cards_for(client, "os_nsaid_with_decompensated_cirrhosis"), "nsaid.cirrhosis")
    assert card["indicator"] == "critical"
    body = load_fixture("os_nsaid_with_decompensated_cirrhosis")
    entries(body, "conditions")[1]["code"]["coding"][0].update(code="K74.60")
    assert card_of(cards_for(client, body), "nsaid.cirrhosis")["indicator"] == "warning"


def test_lithium_matched_on_the_drug_name(client):
    card = card_of(cards_for(client, "os_nsaid_with_lithium_text_only"), "nsaid.lithium-methotrexate")
    assert "matched on the drug name" in card["detail"]


def test_duplicate_nsaids(client):
    card = card_of(cards_for(client, "os_naproxen_with_current_ibuprofen"), "nsaid.duplicate")
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/draft-naproxen"
    body = mutate(load_fixture("os_naproxen_with_current_ibuprofen"), lambda b: b["prefetch"]["medicationRequests"].update(entry=[]))
    assert "nsaid.duplicate" not in rules_of(cards_for(client, body))


def test_older_adult_nsaid_sbd_coded(client):
    card = card_of(cards_for(client, "os_nsaid_older_adult_sbd"), "nsaid.older-adult")
    assert card["indicator"] == "warning" and "age 71" in card["summary"]
    assert {ACETAMINOPHEN, PANTOPRAZOLE} <= codes_of(created(card))
    younger = mutate(load_fixture("os_nsaid_older_adult_sbd"), set_birth("1980-01-01"))
    assert "nsaid.older-adult" not in rules_of(cards_for(client, younger))


def test_radiculopathy_evidence_is_a_section_of_the_nsaid_card_not_a_card(client):
    cards = cards_for(client, "os_nsaid_with_egfr_45")
    assert len(cards) == 1 and rules_of(cards) == ["nsaid.renal", "nsaid.radiculopathy-evidence"]
    assert "small, inconsistent benefit" in cards[0]["detail"]
    body = load_fixture("os_nsaid_with_egfr_45")
    entries(body, "conditions")[0]["code"]["coding"][0].update(code="M54.50")
    assert "nsaid.radiculopathy-evidence" not in rules_of(cards_for(client, body))


def test_evidence_note_alone_is_a_card_only_when_configured(make_app):
    body = mutate(load_fixture("os_nsaid_with_egfr_45"), lambda b: b["prefetch"]["observations"].update(entry=[]))
    assert cards_for(make_app().test_client(), body) == []
    card, = cards_for(make_app({"cards": {"evidence_alone": True}}).test_client(), body)
    assert card["indicator"] == "info" and card["source"]["topic"]["code"] == "nsaid.radiculopathy-evidence"


def test_indication_on_the_order_sets_back_pain(client):
    rules = rules_of(cards_for(client, "os_nsaid_indication_only"))
    assert rules == ["nsaid.renal", "nsaid.radiculopathy-evidence"]


def test_nsaid_contraindication_is_never_answered_with_naproxen(client):
    for name in ("os_nsaid_with_egfr_24", "os_nsaid_with_anticoagulant", "os_nsaid_at_24_weeks_pregnancy"):
        for card in cards_for(client, name):
            assert NAPROXEN not in codes_of(created(card)), name


# -- §3.5 muscle relaxants ----------------------------------------------------------------------
def test_muscle_relaxant_older_adult(client):
    cards = cards_for(client, "os_cyclobenzaprine_older_adult")
    card = card_of(cards, "muscle-relaxant.older-adult")
    assert card["indicator"] == "warning" and "91251008" in codes_of(created(card))
    younger = mutate(load_fixture("os_cyclobenzaprine_older_adult"), set_birth("1980-01-01"))
    assert "muscle-relaxant.older-adult" not in rules_of(cards_for(client, younger))


def test_cyclobenzaprine_mild_hepatic_replaced_with_5mg(client):
    card = card_of(cards_for(client, "os_cyclobenzaprine_10mg_with_cirrhosis"), "muscle-relaxant.hepatic")
    assert card["indicator"] == "warning"
    first = card["suggestions"][0]["actions"]
    assert [a["type"] for a in first] == ["delete", "create"] and codes_of([first[1]["resource"]]) == {CYCLO5}


def test_cyclobenzaprine_hepatic_failure_critical_and_steatosis_exempt(client):
    assert card_of(cards_for(client, "os_cyclobenzaprine_with_hepatic_failure"), "muscle-relaxant.hepatic")["indicator"] == "critical"
    assert "muscle-relaxant.hepatic" not in rules_of(cards_for(client, "os_cyclobenzaprine_with_fatty_liver"))


def test_baclofen_renal(client):
    assert "eGFR 40" in card_of(cards_for(client, "os_baclofen_with_egfr_40"), "muscle-relaxant.renal")["summary"]
    body = load_fixture("os_baclofen_with_egfr_40")
    entries(body, "observations")[0]["valueQuantity"]["value"] = 75
    assert "muscle-relaxant.renal" not in rules_of(cards_for(client, body))


def test_sedation_note_rides_on_the_relaxant_card(client):
    card = card_of(cards_for(client, "os_cyclobenzaprine_older_adult"), "muscle-relaxant.sedation")
    assert card["source"]["topic"]["code"] == "muscle-relaxant.older-adult" and "drowsiness" in card["detail"]
    assert cards_for(client, "os_cyclobenzaprine_with_fatty_liver") == []  # the note alone is not a card
    assert "muscle-relaxant.sedation" not in rules_of(cards_for(client, "os_nsaid_with_egfr_45"))


def test_triple_threat_is_critical_and_single_depressant_warning(client):
    card = card_of(cards_for(client, "os_cyclobenzaprine_with_opioid_and_benzodiazepine"), "muscle-relaxant.cns-depressants")
    assert card["indicator"] == "critical" and card["summary"].startswith("3 CNS depressants")
    assert card_of(cards_for(client, "os_methocarbamol_with_gabapentin"), "muscle-relaxant.cns-depressants")["indicator"] == "warning"
    alone = mutate(load_fixture("os_methocarbamol_with_gabapentin"), drop_statements)
    assert "muscle-relaxant.cns-depressants" not in rules_of(cards_for(client, alone))


def test_cyclobenzaprine_serotonergic(client):
    assert "muscle-relaxant.serotonergic" in rules_of(cards_for(client, "os_cyclobenzaprine_with_sertraline"))
    assert "muscle-relaxant.serotonergic" not in rules_of(cards_for(client, "os_methocarbamol_with_gabapentin"))


# -- §3.6 second line ----------------------------------------------------------------------------
def test_gabapentin_with_opioid(client):
    card = card_of(cards_for(client, "os_gabapentin_with_opioid"), "gabapentinoid.cns-depressants")
    assert card["indicator"] == "warning"
    alone = mutate(load_fixture("os_gabapentin_with_opioid"), drop_statements)
    assert "gabapentinoid.cns-depressants" not in rules_of(cards_for(client, alone))


def test_gabapentin_above_renal_maximum_is_reduced_by_updating_the_draft(client):
    card = card_of(cards_for(client, "os_gabapentin_1800mg_with_egfr_25"), "gabapentinoid.renal")
    assert card["indicator"] == "warning"
    assert "1,800 mg/day" in card["detail"] and "700 mg/day" in card["detail"]
    update = actions(card, "update")[0]["resource"]
    assert update["id"] == "draft-gaba" and update["dosageInstruction"][0]["timing"]["repeat"]["frequency"] == 1
    assert update["medicationCodeableConcept"]["coding"][0]["code"] == "310433"  # the whole resource, changed


def test_gabapentin_within_maximum_no_card(client):
    body = load_fixture("os_gabapentin_1800mg_with_egfr_25")
    entries(body, "observations")[0]["valueQuantity"]["value"] = 70
    assert "gabapentinoid.renal" not in rules_of(cards_for(client, body))


def test_pregabalin_dose_unknown_in_ckd_is_info(client):
    assert card_of(cards_for(client, "os_pregabalin_without_dose_in_ckd"), "gabapentinoid.renal")["indicator"] == "info"


def test_gabapentinoid_evidence_note(client):
    card = card_of(cards_for(client, "os_gabapentin_1800mg_with_egfr_25"), "gabapentinoid.evidence")
    assert "NICE" in card["detail"]


def test_duloxetine_with_tramadol_and_not_alone(client):
    assert "duloxetine.cautions" in rules_of(cards_for(client, "os_duloxetine_with_tramadol"))
    assert "duloxetine.cautions" not in rules_of(cards_for(client, mutate(load_fixture("os_duloxetine_with_tramadol"), drop_statements)))


def test_tca_older_adult_but_not_low_dose_doxepin(client):
    assert card_of(cards_for(client, "os_amitriptyline_older_adult"), "tca.older-adult")["indicator"] == "warning"
    assert cards_for(client, "os_low_dose_doxepin_older_adult") == []


# -- §3.7 opioids -------------------------------------------------------------------------------------
def test_opioid_first_treatment_replaced_with_naproxen(client):
    card = card_of(cards_for(client, "os_oxycodone_as_first_treatment"), "opioid.third-line")
    replace = card["suggestions"][0]["actions"]
    assert replace[0] == {"type": "delete", "description": "Remove the draft order for oxycodone hydrochloride 5 MG Oral Tablet",
                          "resourceId": "MedicationRequest/draft-oxy"}
    assert codes_of([replace[1]["resource"]]) == {NAPROXEN}
    assert "opioid.third-line" not in rules_of(cards_for(client, "os_oxycodone_after_nsaid_trial"))


def test_opioid_third_line_with_nsaid_contraindication_offers_no_naproxen(client):
    body = load_fixture("os_oxycodone_as_first_treatment")
    entries(body, "observations")[0]["valueQuantity"]["value"] = 22
    card = card_of(cards_for(client, body), "opioid.third-line")
    assert NAPROXEN not in codes_of(created(card)) and "eGFR 22" in card["detail"]


def test_opioid_with_benzodiazepine_at_90_mme(client):
    cards = cards_for(client, "os_opioid_with_benzodiazepine")
    card, = cards  # one card for the one selected order, its most serious finding first
    assert card["source"]["topic"]["code"] == "opioid.benzodiazepine" and card["indicator"] == "critical"
    assert rules_of(cards) == ["opioid.benzodiazepine", "opioid.mme", "opioid.naloxone"]
    assert "**Opioid dose 90 MME/day: high" in card["detail"]
    assert "60 mg/day × 1.5 = 90 MME/day" in card["detail"]
    assert NALOXONE in codes_of(created(card))


def test_benzodiazepine_draft_with_current_opioid_removes_the_benzodiazepine(client):
    card = card_of(cards_for(client, "os_benzodiazepine_draft_with_current_opioid"), "opioid.benzodiazepine")
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/draft-alprazolam"
    assert card["indicator"] == "warning"  # 30 MME/day


def test_fentanyl_patch_60_mme(client):
    card = card_of(cards_for(client, "os_fentanyl_patch_25"), "opioid.mme")
    assert "**Opioid dose 60 MME/day" in card["detail"]  # a section of the patch order's one card
    assert "25 mcg/hr × 2.4 = 60 MME/day" in card["detail"]


def test_two_identical_current_orders_each_count(client):
    # catalogue revision 2: the selected draft renews one of the current orders (same code and dose): counted once.
    card = card_of(cards_for(client, "os_two_concurrent_opioid_orders"), "opioid.mme")
    assert card["summary"].startswith("Opioid dose 60 MME/day")
    assert card["detail"].count("20 mg/day × 1.5 = 30 MME/day") == 2
    assert "2 orders of" in card["detail"] and "counted once" in card["detail"]


def test_combination_product_counts_the_opioid_only_at_the_high_end(client):
    card = card_of(cards_for(client, "os_hydrocodone_acetaminophen_combination"), "opioid.mme")
    assert card["summary"].startswith("Opioid dose 60 MME/day") and "60 mg/day × 1 = 60 MME/day" in card["detail"]


def test_sbd_coded_combination(client):
    card = card_of(cards_for(client, "os_sbd_oxycodone_acetaminophen"), "opioid.mme")
    assert "40 mg/day × 1.5 = 60 MME/day" in card["detail"]


def test_order_without_dosage_is_a_lower_bound(client):
    card = card_of(cards_for(client, "os_opioid_without_dosage"), "opioid.mme")
    assert card["summary"].startswith("Opioid dose at least 60 MME/day")
    assert "could not be calculated — the order has no dosage instructions" in card["detail"]


def test_below_50_mme_no_dose_card(client):
    assert "opioid.mme" not in rules_of(cards_for(client, "os_oxycodone_as_first_treatment"))  # 30 MME/day


def test_bone_metastases_silence_dose_duration_and_third_line(client):
    rules = rules_of(cards_for(client, "os_opioid_with_bone_metastases"))
    for silenced in ("opioid.third-line", "opioid.mme", "opioid.extended-release", "opioid.acute-duration"):
        assert silenced not in rules
    assert "opioid.naloxone" in rules  # The clinical definitions: no cancer exception for naloxone
    body = mutate(load_fixture("os_opioid_with_bone_metastases"), lambda b: b["prefetch"]["conditions"]["entry"].pop(1))
    rules = rules_of(cards_for(client, body))
    assert "opioid.mme" in rules and "opioid.acute-duration" in rules


def test_hospice_silences_benzodiazepine_and_naloxone_too(client):
    def hospice(b):
        b["prefetch"]["conditions"]["entry"].append({"resource": {
            "resourceType": "Condition", "id": "hospice", "subject": {"reference": "Patient/os-oxy-benzo"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "Z51.5"}]}}})
    rules = rules_of(cards_for(client, mutate(load_fixture("os_opioid_with_benzodiazepine"), hospice)))
    assert not [r for r in rules if r.startswith("opioid.")]


def test_minor_is_excluded_from_dose_rules(client):
    rules = rules_of(cards_for(client, mutate(load_fixture("os_opioid_with_benzodiazepine"), set_birth("2010-01-01"))))
    assert "opioid.mme" not in rules and "opioid.benzodiazepine" in rules


def test_sickle_cell_disease_excludes_but_trait_does_not(client):
    def add(code):
        def fn(b):
            b["prefetch"]["conditions"]["entry"].append({"resource": {
                "resourceType": "Condition", "id": "scd", "subject": {"reference": "Patient/os-oxy-14d"},
                "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code}]}}})
        return fn
    assert "opioid.acute-duration" not in rules_of(cards_for(client, mutate(load_fixture("os_opioid_14_day_supply_acute_pain"), add("D57.01"))))
    assert "opioid.acute-duration" in rules_of(cards_for(client, mutate(load_fixture("os_opioid_14_day_supply_acute_pain"), add("D57.3"))))


def test_extended_release_for_opioid_naive(client):
    card = card_of(cards_for(client, "os_extended_release_opioid_naive"), "opioid.extended-release")
    assert actions(card, "delete")[0]["resourceId"] == "MedicationRequest/draft-oxycontin"
    body = load_fixture("os_extended_release_opioid_naive")
    # catalogue revision 2: opioid tolerant (oxycodone 40 mg/day ≥ 30 mg for ≥ 7 days), not "any opioid in 90 days".
    body["prefetch"]["medicationRequests"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "old-oxy", "status": "active", "intent": "order",
        "subject": {"reference": "Patient/os-er-naive"}, "authoredOn": "2026-02-01",
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]},
        "dosageInstruction": [{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                               "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}]}]}})
    assert "opioid.extended-release" not in rules_of(cards_for(client, body))


def test_acute_supply_is_updated_to_seven_days(client):
    card = card_of(cards_for(client, "os_opioid_14_day_supply_acute_pain"), "opioid.acute-duration")
    assert "14 days' supply" in card["detail"]
    update = actions(card, "update")[0]["resource"]
    assert update["id"] == "draft-oxy"
    assert update["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert update["dispenseRequest"]["quantity"]["value"] == 28


def test_seven_day_supply_is_fine(client):
    body = load_fixture("os_opioid_14_day_supply_acute_pain")
    draft_entry(body)["dispenseRequest"]["quantity"]["value"] = 28
    assert "opioid.acute-duration" not in rules_of(cards_for(client, body))


def test_dstu2_draft_gets_delete_and_r4_create_never_update(client):
    card = card_of(cards_for(client, "os_dstu2_medication_order_opioid"), "opioid.acute-duration")
    assert not actions(card, "update")
    first = card["suggestions"][0]["actions"]
    assert first[0] == {"type": "delete", "description": "Remove the draft order for oxycodone hydrochloride 5 MG Oral Tablet",
                        "resourceId": "MedicationOrder/draft-oxy-dstu2"}
    r4 = first[1]["resource"]
    assert r4["resourceType"] == "MedicationRequest" and r4["subject"] == {"reference": "Patient/os-dstu2"}
    assert r4["dispenseRequest"]["expectedSupplyDuration"]["value"] == 7
    assert r4["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 1


def test_tramadol_with_sertraline(client):
    assert "opioid.serotonergic" in rules_of(cards_for(client, "os_tramadol_with_sertraline"))
    assert "opioid.serotonergic" not in rules_of(cards_for(client, "os_oxycodone_after_nsaid_trial"))


def test_opioid_use_disorder(client):
    cards = cards_for(client, "os_opioid_with_opioid_use_disorder")
    card = card_of(cards, "opioid.use-disorder")
    assert "OUD prescriber" in card["detail"]
    naloxone_cards = [c for c in cards if NALOXONE in codes_of(created(c))]
    assert len(naloxone_cards) == 1  # offered once, by opioid.naloxone


def test_contained_medication_and_text_only_drugs_are_read(client):
    assert "opioid.benzodiazepine" in rules_of(cards_for(client, "os_contained_medication_opioid"))
    card = card_of(cards_for(client, "os_text_only_opioid"), "opioid.benzodiazepine")
    assert "matched on the drug name" in card["detail"]
    assert "MME could not be calculated" in card["detail"]


# -- scope and current drugs -------------------------------------------------------------------------
def test_no_drug_yet_and_unrelated_orders_give_no_cards(client):
    assert cards_for(client, "os_draft_without_medication_yet") == []
    assert cards_for(client, "os_unrelated_order") == []  # history of cancer, but no red flags on lisinopril


def test_no_back_pain_no_order_select_cards(client):
    body = mutate(load_fixture("os_nsaid_with_egfr_24"), lambda b: b["prefetch"]["conditions"].update(entry=[]))
    assert cards_for(client, body) == []


def test_unselected_draft_counts_as_current(client):
    body = load_fixture("os_nsaid_with_egfr_45")
    body["context"]["draftOrders"]["entry"].append({"resource": {
        "resourceType": "MedicationRequest", "id": "draft-apixaban", "status": "draft", "intent": "order",
        "subject": {"reference": "Patient/os-egfr-45"},
        "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1364445"}]}}})
    assert card_of(cards_for(client, body), "nsaid.anticoagulant")["indicator"] == "critical"


def test_patient_view_current_nsaid_is_never_changed(client):
    cards = cards_for(client, "pv_current_nsaid_with_egfr_24")
    card = card_of(cards, "nsaid.renal")
    assert card["indicator"] == "critical"
    assert not actions(card, "delete") and not actions(card, "update")
    assert codes_of(created(card)) == {ACETAMINOPHEN}
    assert "review or stop" in card["detail"]


def test_patient_view_current_opioid_with_benzodiazepine(client):
    cards = cards_for(client, "pv_current_opioid_with_benzodiazepine")
    assert [c["source"]["topic"]["code"] for c in cards[:3]] == ["opioid.benzodiazepine", "opioid.mme", "opioid.naloxone"]
    assert cards[0]["indicator"] == "critical" and "60 MME/day" in cards[0]["summary"]
    assert not any(actions(c, "delete") for c in cards)
    assert "opioid.third-line" not in rules_of(cards)  # order-select only
