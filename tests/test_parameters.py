"""One place for every threshold: each rule parameter, changed in the site configuration, moves both
what fires and what the card says (a test per parameter, through the HTTP API)."""

from __future__ import annotations

import pytest

from conftest import card_of, cards_for, load_fixture, rules_of


@pytest.fixture
def cards_with(make_app):
    def run(fixture: str, **parameters):
        app = make_app({"rules": {"parameters": parameters}} if parameters else None)
        return cards_for(app.test_client(), load_fixture(fixture))
    return run


def test_persistent_weeks(cards_with):
    assert "imaging.persistent-radiculopathy" in rules_of(cards_with("pv_lumbar_radiculopathy_6_weeks"))
    later = cards_with("pv_lumbar_radiculopathy_6_weeks", PERSISTENT_WEEKS=8)
    assert "imaging.persistent-radiculopathy" not in rules_of(later) and "first-line.conservative" in rules_of(later)
    card = card_of(cards_with("os_early_mri_without_red_flags", PERSISTENT_WEEKS=3), "imaging.avoid-early")
    assert "not recommended before 3 weeks" in card["summary"] and "first 3 weeks" in card["detail"]


def test_older_age(cards_with):
    assert "nsaid.older-adult" in rules_of(cards_with("os_nsaid_older_adult_sbd"))
    assert "nsaid.older-adult" not in rules_of(cards_with("os_nsaid_older_adult_sbd", OLDER_AGE=90))
    card = card_of(cards_with("os_nsaid_older_adult_sbd", OLDER_AGE=60), "nsaid.older-adult")
    assert "at 60 and over" in card["detail"]


def test_egfr_avoid_and_caution(cards_with):
    assert card_of(cards_with("os_nsaid_with_egfr_45"), "nsaid.renal")["indicator"] == "warning"
    critical = card_of(cards_with("os_nsaid_with_egfr_45", EGFR_AVOID=50), "nsaid.renal")
    assert critical["indicator"] == "critical" and "avoid below eGFR 50" in critical["detail"]
    assert "nsaid.renal" not in rules_of(cards_with("os_nsaid_with_egfr_45", EGFR_CAUTION=40))
    baclofen = card_of(cards_with("os_baclofen_with_egfr_40", EGFR_CAUTION=70), "muscle-relaxant.renal")
    assert "avoid at eGFR < 70" in baclofen["detail"]
    assert "muscle-relaxant.renal" not in rules_of(cards_with("os_baclofen_with_egfr_40", EGFR_CAUTION=35))


def test_mme_warn_and_high(cards_with):
    card = card_of(cards_with("os_fentanyl_patch_25"), "opioid.mme")
    assert "**Opioid dose 60 MME/day" in card["detail"] and "at or above 90" not in card["detail"]
    assert "opioid.mme" not in rules_of(cards_with("os_fentanyl_patch_25", MME_WARN=70))
    high = card_of(cards_with("os_fentanyl_patch_25", MME_HIGH=60), "opioid.mme")
    assert "at or above 60 MME/day" in high["detail"]


def test_acute_opioid_max_days(cards_with):
    card = card_of(cards_with("os_opioid_14_day_supply_acute_pain"), "opioid.acute-duration")
    assert "rarely more than 7" in card["detail"] and "Limit oxycodone" in str(card["suggestions"])
    assert "opioid.acute-duration" not in rules_of(cards_with("os_opioid_14_day_supply_acute_pain",
                                                              ACUTE_OPIOID_MAX_DAYS=14))
    card = card_of(cards_with("os_opioid_14_day_supply_acute_pain", ACUTE_OPIOID_MAX_DAYS=5), "opioid.acute-duration")
    assert "rarely more than 5" in card["detail"]
    assert any("to 5 days' supply" in s["label"] for s in card["suggestions"])


def test_fever(cards_with):
    assert "red-flag.infection" in rules_of(cards_with("pv_back_pain_with_fever"))  # 101.5 °F = 38.6 °C
    assert "red-flag.infection" not in rules_of(cards_with("pv_back_pain_with_fever", FEVER_C=39.0))


def test_lab_lookback_days(cards_with):
    assert "nsaid.renal" in rules_of(cards_with("os_nsaid_with_egfr_45"))  # eGFR 40 days old
    assert "nsaid.renal" not in rules_of(cards_with("os_nsaid_with_egfr_45", LAB_LOOKBACK_DAYS=30))
    plan = card_of(cards_with("pv_sciatica_snomed_10_days", LAB_LOOKBACK_DAYS=1), "first-line.conservative")
    assert "in the last 1 days" in plan["detail"]


def test_fracture_age(cards_with):
    card = card_of(cards_with("pv_low_back_pain_acute_older_adult"), "red-flag.fracture")
    assert "age 72 (≥ 70)" in card["detail"]
    assert "red-flag.fracture" not in rules_of(cards_with("pv_low_back_pain_acute_older_adult", FRACTURE_AGE=80))
    assert "(≥ 65)" in card_of(cards_with("pv_low_back_pain_acute_older_adult", FRACTURE_AGE=65),
                                "red-flag.fracture")["detail"]


def test_thoracic_warn_age(cards_with):
    assert "age 58" in card_of(cards_with("pv_thoracic_back_pain_age_58"), "thoracic.differential")["detail"]
    plan = card_of(cards_with("pv_thoracic_back_pain_age_58", THORACIC_WARN_AGE=60), "thoracic.differential")
    assert "age 58" not in plan["detail"] and "Low threshold" not in plan["detail"]


def test_stale_order_days(cards_with):
    assert "nsaid.anticoagulant" not in rules_of(cards_with("pv_stale_warfarin_with_current_ibuprofen"))
    card = card_of(cards_with("pv_stale_warfarin_with_current_ibuprofen", STALE_ORDER_DAYS=5000), "nsaid.anticoagulant")
    assert "confirm the patient still takes it" not in card["detail"]


def test_chronic_weeks_and_severe_pain(cards_with):
    plan = card_of(cards_with("pv_radiculopathy_16_weeks_severe_pain"), "procedure.surgical-referral")
    assert "beyond 12 weeks" in plan["detail"]
    assert "procedure.surgical-referral" not in rules_of(cards_with("pv_radiculopathy_16_weeks_severe_pain",
                                                                    CHRONIC_WEEKS=20))
    assert "beyond 10 weeks" in card_of(cards_with("pv_radiculopathy_16_weeks_severe_pain", CHRONIC_WEEKS=10),
                                        "procedure.surgical-referral")["detail"]
    assert "procedure.surgical-referral" not in rules_of(cards_with("pv_radiculopathy_16_weeks_severe_pain",
                                                                    SEVERE_PAIN=9))  # the score is 8


def test_every_parameter_has_a_test_here():
    from cds_service.config import RULE_PARAMETERS
    import inspect
    import sys
    source = inspect.getsource(sys.modules[__name__])
    assert [p for p in RULE_PARAMETERS if f"{p}=" not in source] == []
