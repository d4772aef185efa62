"""The MME/day calculator (the opioid rules) on real FHIR MedicationRequest JSON, with exact figures."""

from __future__ import annotations

import pytest

from cds_service import mme, terminology
from cds_service.drugs import drug_from_resource as _drug
from cds_service.record import PatientRecord

T = terminology.load()
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def order(rxcui=None, text=None, dosage=None, **extra) -> dict:
    concept = {"text": text} if text else {}
    if rxcui:
        concept["coding"] = [{"system": RX, "code": rxcui}]
    res = {"resourceType": "MedicationRequest", "id": extra.pop("id", "m1"), "status": "active", "intent": "order",
           "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": concept}
    if dosage is not None:
        res["dosageInstruction"] = dosage if isinstance(dosage, list) else [dosage]
    res.update(extra)
    return res


def every(n_hours, dose=1, unit="tablet", prn=False, **repeat):
    rep = {"frequency": 1, "period": n_hours, "periodUnit": "h", **repeat}
    return {"timing": {"repeat": rep}, "asNeededBoolean": prn,
            "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}]}


def daily(times, dose=1, unit="tablet"):
    return {"timing": {"repeat": {"frequency": times, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [{"doseQuantity": {"value": dose, "unit": unit}}]}


def calc(*resources) -> mme.MmeTotal:
    record = PatientRecord(patient_id="p")
    drugs = [_drug(T, r, record, f"MedicationRequest/{r['id']}") for r in resources]
    return mme.total_mme(T, drugs)


def test_fentanyl_25_mcg_patch_is_60_mme():
    t = calc(order("245134", dosage=every(72, unit="patch")))
    assert t.total == 60 and t.complete
    assert "25 mcg/hr × 2.4 = 60 MME/day" in t.detail()


def test_fentanyl_75_mcg_patch_is_180_mme():
    assert calc(order("197696", dosage=every(72, unit="patch"))).total == 180


def test_two_patches_per_application_count_twice():
    assert calc(order("245134", dosage=every(72, dose=2, unit="patch"))).total == 120


def test_oxycodone_5mg_every_6h_prn_is_30():
    t = calc(order("1049621", dosage=every(6, prn=True)))
    assert t.total == 30
    assert "oxycodone hydrochloride 5 MG Oral Tablet: 20 mg/day × 1.5 = 30 MME/day" in t.detail()


def test_prn_counts_at_frequency_max():
    # 1–2 tablets every 4 h as needed (frequencyMax 2 per 4 h): 12 tablets × 5 mg × 1.5.
    t = calc(order("1049621", dosage=every(4, prn=True, frequencyMax=2)))
    assert t.total == 90


def test_dose_range_counts_at_its_high_end_and_combination_counts_opioid_only():
    dosage = {"timing": {"repeat": {"frequency": 1, "period": 4, "periodUnit": "h"}}, "asNeededBoolean": True,
              "doseAndRate": [{"doseRange": {"low": {"value": 1}, "high": {"value": 2, "unit": "tablet"}}}]}
    t = calc(order("856987", dosage=dosage))  # acetaminophen 300 / hydrocodone 5
    assert t.total == 60
    assert t.orders[0].ingredient == "hydrocodone" and len(t.orders) == 1


def test_timing_code_bid():
    dosage = {"timing": {"code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-GTSAbbreviation",
                                              "code": "BID"}]}},
              "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}
    assert calc(order("835603", dosage=dosage)).total == 20  # tramadol 50 mg × 2 × 0.2


def test_max_dose_per_period_caps_prn():
    dosage = every(4, prn=True) | {"maxDosePerPeriod": {"numerator": {"value": 4, "unit": "tablet"},
                                                         "denominator": {"value": 1, "unit": "d", "code": "d"}}}
    assert calc(order("1049621", dosage=dosage)).total == 30  # capped at 4 tablets a day


def test_max_dose_per_period_alone_gives_the_daily_amount():
    dosage = {"asNeededBoolean": True, "maxDosePerPeriod": {"numerator": {"value": 6, "unit": "tablet"},
                                                            "denominator": {"value": 1, "code": "d"}}}
    assert calc(order("1049621", dosage=dosage)).total == 45


def test_dose_in_mg_is_the_dose():
    assert calc(order("1049683", dosage=every(6, dose=10, unit="mg"))).total == 60


def test_methadone_and_codeine_factors():
    assert calc(order("864706", dosage=daily(3))).total == 141
    assert calc(order(None, text="codeine sulfate 30 MG Oral Tablet", dosage=daily(4))).total == 18


def test_several_identical_orders_each_count():
    a = order("1049621", id="a", dosage=daily(4))
    b = order("1049621", id="b", dosage=daily(4))
    t = calc(a, b)
    assert t.total == 60
    assert "2 orders of" in t.detail()


def test_missing_dose_or_frequency_is_not_a_guess():
    t = calc(order("1049621"), order("1049683", id="b", dosage=daily(4)))
    assert t.total == 60 and not t.complete
    assert t.shown == "at least 60 MME/day"
    assert "could not be calculated — the order has no dosage instructions" in t.detail()
    no_freq = calc(order("1049621", dosage={"doseAndRate": [{"doseQuantity": {"value": 1}}]}))
    assert no_freq.total == 0 and "the frequency is not given" in no_freq.detail()


def test_buprenorphine_and_parenteral_have_no_factor():
    # catalogue revision 2: sublingual buprenorphine/naloxone is MOUD, left out of MME/day and named.
    moud = calc(order("351266", dosage=daily(1)))
    assert moud.total == 0 and not moud.orders
    assert "buprenorphine for opioid use disorder: not counted in MME/day" in moud.detail()
    t = calc(order("1716057", dosage=daily(2)))  # buprenorphine buccal film for pain (Belbuca)
    assert t.total == 0 and "no CDC 2022 conversion factor" in t.detail()
    assert "at least 0" not in t.detail() and "MME/day could not be calculated" in t.detail()
    injectable = calc(order(None, text="morphine sulfate 4 MG/ML Injectable Solution", dosage=every(4)))
    assert injectable.total == 0 and "injectable" in injectable.detail()


def test_name_fallback_parses_the_strength():
    t = calc(order(None, text="Oxycodone HCl 5 MG Oral Tablet", dosage=daily(4)))
    assert t.total == 30


@pytest.mark.parametrize("rxcui,expected", [("1860157", 30), ("835603", 40)])
def test_extended_release_and_tramadol(rxcui, expected):
    assert calc(order(rxcui, dosage=daily(2 if rxcui == "1860157" else 4))).total == expected
