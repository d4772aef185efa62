"""Every patient-view rule of the red-flag rules to the care-plan rules: a positive and a negative scenario through the
HTTP API, asserting what the clinician sees (rule ids, indicators, suggested orders, figures)."""

from __future__ import annotations

from conftest import (card_of, cards_for, codes_of, created, entries, load_fixture, mutate, rules_of)

MRI_LUMBAR_WO, MRI_THORACIC_WO = "30679-5", "36532-0"
MRI_LUMBAR_W_WO, MRI_THORACIC_W_WO = "24967-2", "24981-3"
XR_LUMBAR, XR_THORACIC = "24972-2", "24983-9"
NAPROXEN, ACETAMINOPHEN, PANTOPRAZOLE = "198014", "198440", "314200"
PT, CBT = "91251008", "228557008"


def set_as_of(body, date):
    body["extension"]["radiculopathy-cds.as-of"] = date


# -- §3.1 red flags ----------------------------------------------------------------------------
def test_cauda_equina_fires_without_back_pain(client):
    cards = cards_for(client, "pv_cauda_equina_without_back_pain")
    assert rules_of(cards) == ["red-flag.cauda-equina"]
    card = cards[0]
    assert card["indicator"] == "critical"
    orders = created(card, "ServiceRequest")
    assert MRI_LUMBAR_WO in codes_of(orders)
    assert {o["priority"] for o in orders} == {"stat"}
    assert "spine-surgery-referral" in codes_of(orders)
    assert "G83.4" in card["detail"]


def test_cauda_equina_not_recent_does_not_fire(client):
    body = load_fixture("pv_cauda_equina_without_back_pain")
    set_as_of(body, "2026-04-15")  # recorded 2026-02-26: more than 30 days ago
    assert cards_for(client, body) == []


def test_bladder_dysfunction_with_back_pain_is_cauda_equina(client):
    cards = cards_for(client, "pv_back_pain_with_urinary_retention")
    card = card_of(cards, "red-flag.cauda-equina")
    assert card["indicator"] == "critical" and cards[0] is card
    assert "R33.9" in card["detail"]


def test_bladder_dysfunction_without_back_pain_does_not_fire(client):
    body = mutate(load_fixture("pv_back_pain_with_urinary_retention"),
                  lambda b: b["prefetch"]["conditions"]["entry"].pop(0))
    assert cards_for(client, body) == []


def test_spinal_infection_is_critical_with_mri_contrast_esr_crp(client):
    cards = cards_for(client, "pv_back_pain_spinal_infection")
    card = card_of(cards, "red-flag.infection")
    assert card["indicator"] == "critical"
    assert {MRI_LUMBAR_W_WO, "30341-2", "1988-5"} <= codes_of(created(card))
    # The red flag already suggests an MRI: the persistent-radiculopathy rule stays silent.
    assert "imaging.persistent-radiculopathy" not in rules_of(cards)


def test_fever_in_fahrenheit_gives_infection_warning(client):
    card = card_of(cards_for(client, "pv_back_pain_with_fever"), "red-flag.infection")
    assert card["indicator"] == "warning"
    assert "38.6 °C" in card["detail"]  # 101.5 °F converted


def test_old_fever_does_not_fire(client):
    body = load_fixture("pv_back_pain_with_fever")
    for obs in entries(body, "observations"):
        if obs["code"]["coding"][0]["code"] == "8310-5":
            obs["effectiveDateTime"] = "2026-02-10"
    assert "red-flag.infection" not in rules_of(cards_for(client, body))


def test_risk_factor_alone_drops_to_info_after_mri(client):
    cards = cards_for(client, "pv_immunosuppressed_after_mri")
    assert [c["indicator"] for c in cards] == ["info"]
    plan = card_of(cards, "red-flag.infection")
    assert plan["source"]["topic"]["code"] == "care-plan"
    assert MRI_LUMBAR_W_WO not in codes_of(created(plan))  # MRI on record: not suggested again


def test_risk_factor_alone_before_mri_is_warning(client):
    body = mutate(load_fixture("pv_immunosuppressed_after_mri"), lambda b: b["prefetch"]["procedures"].update(entry=[]))
    card = card_of(cards_for(client, body), "red-flag.infection")
    assert card["indicator"] == "warning"
    assert MRI_LUMBAR_W_WO in codes_of(created(card))


def test_metastases_with_radiculopathy_is_critical_whole_spine_within_24h(client):
    cards = cards_for(client, "pv_spinal_metastases_with_radiculopathy")
    card = cards[0]
    assert card["source"]["topic"]["code"] == "red-flag.malignancy" and card["indicator"] == "critical"
    orders = created(card, "ServiceRequest")
    assert codes_of(orders) == {"mri-cervical-spine-w-wo", MRI_THORACIC_W_WO, MRI_LUMBAR_W_WO}  # the whole spine
    assert all(o["occurrencePeriod"] == {"start": "2026-03-01", "end": "2026-03-02"} for o in orders)
    assert "C79.51" in card["detail"] and card["detail"].count("C79.51") == 1


def test_history_of_cancer_is_malignancy_warning(client):
    card = card_of(cards_for(client, "pv_back_pain_history_of_cancer"), "red-flag.malignancy")
    assert card["indicator"] == "warning"
    assert MRI_LUMBAR_W_WO in codes_of(created(card))


def test_no_cancer_no_malignancy_card(client):
    body = mutate(load_fixture("pv_back_pain_history_of_cancer"),
                  lambda b: b["prefetch"]["conditions"]["entry"].pop(1))
    assert "red-flag.malignancy" not in rules_of(cards_for(client, body))


def test_osteoporosis_gives_fracture_warning_with_xray(client):
    card = card_of(cards_for(client, "pv_back_pain_osteoporosis"), "red-flag.fracture")
    assert card["indicator"] == "warning"
    assert codes_of(created(card)) == {XR_LUMBAR}


def test_age_over_70_alone_is_fracture_info(client):
    cards = cards_for(client, "pv_low_back_pain_acute_older_adult")
    plan = card_of(cards, "red-flag.fracture")
    assert plan["indicator"] == "info"
    assert XR_LUMBAR in codes_of(created(plan))


def test_age_over_70_with_imaging_on_record_no_fracture_card(client):
    def add_xray(b):
        b["prefetch"]["procedures"]["entry"].append({"resource": {
            "resourceType": "Procedure", "id": "xr", "status": "completed", "subject": {"reference": "Patient/pv-lbp-older"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "24972-2"}]}, "performedDateTime": "2026-02-26"}})
    body = mutate(load_fixture("pv_low_back_pain_acute_older_adult"), add_xray)
    assert "red-flag.fracture" not in rules_of(cards_for(client, body))


def test_foot_drop_gives_neuro_deficit_warning(client):
    card = card_of(cards_for(client, "pv_radiculopathy_with_foot_drop"), "red-flag.neuro-deficit")
    assert card["indicator"] == "warning"
    assert {MRI_LUMBAR_WO, "spine-surgery-referral"} <= codes_of(created(card))


def test_cord_compression_is_neuro_deficit_critical(client):
    cards = cards_for(client, "pv_thoracic_cord_compression")
    assert cards[0]["source"]["topic"]["code"] == "red-flag.neuro-deficit"
    assert cards[0]["indicator"] == "critical"
    assert MRI_THORACIC_WO in codes_of(created(cards[0]))


def test_old_motor_deficit_does_not_fire(client):
    body = load_fixture("pv_radiculopathy_with_foot_drop")
    entries(body, "conditions")[1]["onsetDateTime"] = "2025-10-01"
    assert "red-flag.neuro-deficit" not in rules_of(cards_for(client, body))


def test_thoracic_differential_info_names_known_differential(client):
    cards = cards_for(client, "pv_thoracic_radiculopathy_6_weeks")
    plan = card_of(cards, "thoracic.differential")
    assert plan["indicator"] == "info"
    assert "herpes zoster" in plan["detail"].lower()
    assert "B02.29" in plan["detail"]  # the zoster code the record already holds
    assert MRI_THORACIC_WO in codes_of(created(plan))  # duration ≥ 4 weeks


def test_thoracic_pain_at_58_is_info_with_no_mri_before_four_weeks(client):
    """Revision 2, one voice per order: age alone is a reason for a low threshold, not an early MRI."""
    cards = cards_for(client, "pv_thoracic_back_pain_age_58")
    plan = card_of(cards, "thoracic.differential")
    assert plan["indicator"] == "info" and [c["indicator"] for c in cards] == ["info"]
    assert "age 58" in plan["detail"] and "Low threshold for imaging" in plan["detail"]
    assert not [r for c in cards for r in created(c, "ServiceRequest") if "MR" in r["code"]["coding"][0]["display"]]


def test_no_thoracic_differential_for_lumbar(client):
    assert "thoracic.differential" not in rules_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"))


# -- §3.2 imaging and procedures ------------------------------------------------------------------
def test_persistent_radiculopathy_suggests_mri_without_contrast(client):
    plan = card_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"), "imaging.persistent-radiculopathy")
    assert MRI_LUMBAR_WO in codes_of(created(plan))
    assert "30620-9" in plan["detail"]  # CT named for MRI contraindication


def test_persistent_radiculopathy_thoracic_gets_thoracic_mri(client):
    plan = card_of(cards_for(client, "pv_thoracic_radiculopathy_6_weeks"), "imaging.persistent-radiculopathy")
    assert MRI_THORACIC_WO in codes_of(created(plan)) and MRI_LUMBAR_WO not in codes_of(created(plan))
    assert "extrapolated" in plan["detail"]


def test_radicular_codes_in_both_regions_image_both(client):
    plan = card_of(cards_for(client, "pv_thoracic_and_lumbar_radiculopathy"), "imaging.persistent-radiculopathy")
    assert {MRI_THORACIC_WO, MRI_LUMBAR_WO} <= codes_of(created(plan))


def test_after_spine_surgery_mri_with_contrast(client):
    plan = card_of(cards_for(client, "pv_radiculopathy_after_spine_surgery"), "imaging.persistent-radiculopathy")
    assert MRI_LUMBAR_W_WO in codes_of(created(plan)) and MRI_LUMBAR_WO not in codes_of(created(plan))


def test_no_mri_before_four_weeks_or_when_mri_on_record(client):
    assert "imaging.persistent-radiculopathy" not in rules_of(cards_for(client, "pv_sciatica_snomed_10_days"))
    assert "imaging.persistent-radiculopathy" not in rules_of(cards_for(client, "pv_radiculopathy_epidural_on_record"))


def test_epidural_referral_after_conservative_treatment_names_anticoagulant(client):
    plan = card_of(cards_for(client, "pv_radiculopathy_8_weeks_after_nsaid"), "procedure.epidural-referral")
    assert "epidural-steroid-injection-referral" in codes_of(created(plan))
    assert "apixaban" in plan["detail"] and "T8–L2" in plan["detail"]


def test_no_epidural_referral_without_treatment_or_after_injection(client):
    assert "procedure.epidural-referral" not in rules_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"))
    assert "procedure.epidural-referral" not in rules_of(cards_for(client, "pv_radiculopathy_epidural_on_record"))


def test_surgical_referral_for_severe_radicular_pain_beyond_12_weeks(client):
    plan = card_of(cards_for(client, "pv_radiculopathy_16_weeks_severe_pain"), "procedure.surgical-referral")
    assert "spine-surgery-referral" in codes_of(created(plan))
    assert "pain score 8/10" in plan["detail"]


def test_surgical_referral_for_neurogenic_claudication(client):
    plan = card_of(cards_for(client, "pv_stenosis_neurogenic_claudication_16_weeks"), "procedure.surgical-referral")
    assert plan["summary"] == "Chronic lumbar spinal stenosis since Nov 2025: care plan"


def test_no_surgical_referral_with_mild_pain_or_referral_on_record(client):
    body = load_fixture("pv_radiculopathy_16_weeks_severe_pain")
    entries(body, "observations")[0]["valueQuantity"]["value"] = 4
    assert "procedure.surgical-referral" not in rules_of(cards_for(client, body))

    def add_referral(b):
        b["prefetch"]["serviceRequests"]["entry"].append({"resource": {
            "resourceType": "ServiceRequest", "id": "ref", "status": "active", "intent": "order",
            "subject": {"reference": "Patient/pv-surgery"}, "authoredOn": "2026-01-05",
            "code": {"coding": [{"system": "urn:radiculopathy-cds:order", "code": "spine-surgery-referral"}]}}})
    body = mutate(load_fixture("pv_radiculopathy_16_weeks_severe_pain"), add_referral)
    assert "procedure.surgical-referral" not in rules_of(cards_for(client, body))


# -- §3.3 first line, non-drug care, monitoring -------------------------------------------------------
def test_first_line_naproxen_when_nsaid_allowed(client):
    plan = card_of(cards_for(client, "pv_sciatica_snomed_10_days"), "first-line.conservative")
    meds = codes_of(created(plan, "MedicationRequest"))
    assert NAPROXEN in meds and ACETAMINOPHEN not in meds and PANTOPRAZOLE not in meds
    assert PT in codes_of(created(plan, "ServiceRequest"))


def test_first_line_older_adult_gets_naproxen_with_pantoprazole_in_one_suggestion(client):
    plan = card_of(cards_for(client, "pv_low_back_pain_acute_older_adult"), "first-line.conservative")
    both = [s for s in plan["suggestions"] if len(s["actions"]) == 2]
    assert len(both) == 1 and codes_of([a["resource"] for a in both[0]["actions"]]) == {NAPROXEN, PANTOPRAZOLE}


def test_first_line_acetaminophen_when_anticoagulated(client):
    plan = card_of(cards_for(client, "pv_low_back_pain_on_anticoagulant"), "first-line.conservative")
    meds = codes_of(created(plan, "MedicationRequest"))
    assert meds == {ACETAMINOPHEN}
    assert "apixaban" in plan["detail"] and "limited" in plan["detail"]


def test_first_line_nsaid_withheld_when_labs_unobtainable(client):
    plan = card_of(cards_for(client, "pv_low_back_pain_labs_unavailable"), "first-line.conservative")
    assert codes_of(created(plan, "MedicationRequest")) == {ACETAMINOPHEN}
    assert "eGFR" in plan["detail"] and "could not be obtained" in plan["detail"]


def test_no_first_line_card_when_already_on_nsaid_by_brand_name(client):
    assert cards_for(client, "pv_acute_back_pain_on_nsaid") == []


def test_nonpharm_therapy_after_four_weeks(client):
    plan = card_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"), "nonpharm.therapy")
    assert {PT, CBT} <= codes_of(created(plan))
    assert "manipulation" in plan["detail"]


def test_no_nonpharm_card_when_physical_therapy_on_record(client):
    assert "nonpharm.therapy" not in rules_of(cards_for(client, "pv_radiculopathy_8_weeks_after_nsaid"))


def test_start_back_between_10_days_and_4_weeks(client):
    plan = card_of(cards_for(client, "pv_sciatica_snomed_10_days"), "assessment.start-back")
    assert any(link["url"] == "https://www.keele.ac.uk/sbst/startbacktool/" for link in plan["links"])


def test_no_start_back_when_scored(client):
    assert "assessment.start-back" not in rules_of(cards_for(client, "pv_sciatica_startback_done"))


def test_start_back_for_mid_back_pain_says_it_was_validated_in_low_back_pain(client):
    plan = card_of(cards_for(client, "pv_thoracic_back_pain_age_58"), "assessment.start-back")
    assert "validated in low back pain" in plan["detail"]


def test_early_review_for_radiculopathy_in_first_two_weeks(client):
    plan = card_of(cards_for(client, "pv_sciatica_snomed_10_days"), "monitoring.early-review")
    review = [r for r in created(plan) if "back-pain-review" in codes_of([r])]
    assert review and review[0]["occurrencePeriod"] == {"start": "2026-03-08", "end": "2026-03-15"}


def test_no_early_review_without_risk(client):
    # Acute low back pain at 50, no radiculopathy, no pain score, no deficit.
    assert "monitoring.early-review" not in rules_of(cards_for(client, "pv_low_back_pain_on_anticoagulant"))


def test_reevaluate_orders_peg_panel(client):
    plan = card_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"), "monitoring.reevaluate")
    assert "91148-7" in codes_of(created(plan))


def test_no_reevaluate_with_recent_peg(client):
    assert "monitoring.reevaluate" not in rules_of(cards_for(client, "pv_radiculopathy_8_weeks_after_nsaid"))


# -- §1 scope ---------------------------------------------------------------------------------
def test_no_back_pain_no_cards(client):
    for name in ("pv_no_back_pain", "pv_resolved_radiculopathy", "pv_entered_in_error_radiculopathy",
                 "pv_other_patients_condition_ignored", "pv_paraplegia_without_back_pain"):
        assert cards_for(client, name) == [], name


def test_onset_not_recorded_is_said(client):
    plan = card_of(cards_for(client, "pv_radiculopathy_onset_not_recorded"), "nonpharm.therapy")
    assert "onset not recorded" in plan["detail"]


def test_icd10_with_and_without_dot_and_snomed_all_match(client):
    for name in ("pv_lumbar_radiculopathy_6_weeks", "pv_thoracic_radiculopathy_6_weeks", "pv_sciatica_snomed_10_days"):
        assert cards_for(client, name), name


def test_absent_clinical_status_counts_unless_abated(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    del entries(body, "conditions")[0]["clinicalStatus"]
    assert cards_for(client, body)
    entries(body, "conditions")[0]["abatementDateTime"] = "2026-02-20"
    assert cards_for(client, body) == []
