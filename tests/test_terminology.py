"""The terminology layer (the value sets and drug classes every rule uses): packaged data in sync with its sources, code matching,
drug classes at any RxNorm level, the drug-name fallback and the aspirin/route adjustments."""

from __future__ import annotations

import filecmp
from pathlib import Path

import pytest

from cds_service import terminology
from cds_service.drugs import drug_from_resource as _drug
from cds_service.facts import condition_is_active
from cds_service.record import PatientRecord
from cds_service.terminology import ICD10CM, SNOMED, build

T = terminology.load()
RX = "http://www.nlm.nih.gov/research/umls/rxnorm"


def test_packaged_data_is_what_the_rebuild_script_makes(tmp_path):
    """`python -m cds_service.terminology.build` from the code lists in the repository
    (cds_service/terminology/sources/) makes exactly the packaged data."""
    assert build.main(["--out", str(tmp_path)]) == 0  # the default --codes is sources/
    data = Path(terminology.__file__).parent / "data"
    for name in ("condition_valuesets.csv", "procedure_valuesets.csv", "drugs.csv", "opioid_strength.csv"):
        assert filecmp.cmp(tmp_path / name, data / name, shallow=False), name


@pytest.mark.parametrize("system,code,valueset", [
    (ICD10CM, "M5416", "lumbar_lumbosacral_radiculopathy_sciatica"),
    (ICD10CM, "M5136", "disc_disorder_without_radiculopathy"),  # header code still seen in records
    (ICD10CM, "M545", "low_back_pain_nonspecific"),
    (SNOMED, "128196005", "lumbar_lumbosacral_radiculopathy_sciatica"),
    (ICD10CM, "D5701", "sickle_cell_disease"),
    (ICD10CM, "F1120", "opioid_use_disorder"),
])
def test_condition_codes(system, code, valueset):
    assert valueset in T.condition_valuesets(system, code)


def test_wrong_public_codes_do_not_match():
    assert not T.condition_valuesets(SNOMED, "128200000")  # complex regional pain syndrome
    assert not T.condition_valuesets(ICD10CM, "D573")  # sickle cell trait
    assert "active_malignancy" not in T.condition_valuesets(ICD10CM, "C449")


def drug(concept: dict, **extra):
    res = {"resourceType": "MedicationStatement", "id": "x", "status": "active",
           "subject": {"reference": "Patient/p"}, "medicationCodeableConcept": concept, **extra}
    return _drug(T, res, PatientRecord(patient_id="p"), "MedicationStatement/x")


@pytest.mark.parametrize("text,cls", [
    ("Alprazolam 0.5 mg tab", "benzodiazepine"), ("apixaban 5mg", "anticoagulant"),
    ("Tylenol extra strength", "acetaminophen"), ("amitriptyline 10 mg at night", "tca"),
    ("Lithium carbonate ER 450 mg", "lithium"), ("Advil", "nsaid"),
])
def test_name_fallback_catches_drugs_without_codes(text, cls):
    d = drug({"text": text})
    assert cls in d.classes and d.by_name


def test_rxnorm_at_any_level():
    assert "nsaid" in drug({"coding": [{"system": RX, "code": "197807"}]}).classes  # SCD
    assert "nsaid" in drug({"coding": [{"system": RX, "code": "201126"}]}).classes  # SBD
    assert "nsaid" in drug({"coding": [{"system": RX, "code": "5640"}]}).classes  # ingredient
    assert {"acetaminophen", "opioid"} <= drug({"coding": [{"system": RX, "code": "856987"}]}).classes  # combination
    assert "benzodiazepine" in drug({"coding": [{"system": RX, "code": "308048"}]}).classes  # supplement A


def test_aspirin_dose_decides_antiplatelet_or_nsaid():
    low = drug({"coding": [{"system": RX, "code": "243670"}]},
               dosage=[{"timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                        "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}])
    assert "antiplatelet_aspirin" in low.classes and "nsaid" not in low.classes
    high = drug({"text": "aspirin 325 MG Oral Tablet"},
                dosage=[{"timing": {"repeat": {"frequency": 4, "period": 1, "periodUnit": "d"}},
                         "doseAndRate": [{"doseQuantity": {"value": 2, "unit": "tablet"}}]}])
    assert "nsaid" in high.classes


def test_topical_nsaid_and_ophthalmic_steroid_are_not_systemic():
    assert "nsaid" not in drug({"text": "diclofenac sodium 1% topical gel"}).classes
    gel = [r for r, e in T.drugs.items() if "diclofenac" in e.name and e.route == "topical"][0]
    assert "nsaid" not in drug({"coding": [{"system": RX, "code": gel}]}).classes


def test_h2_blocker_does_not_protect_and_naloxone_combination_is_not_rescue():
    assert "h2_blocker" in drug({"text": "famotidine 20 mg"}).classes
    suboxone = drug({"coding": [{"system": RX, "code": "351266"}]})
    assert "naloxone_rescue" not in suboxone.classes and "opioid" in suboxone.classes
    assert "naloxone_rescue" in drug({"coding": [{"system": RX, "code": "1725059"}]}).classes


@pytest.mark.parametrize("status,verification,active", [
    ("active", "confirmed", True), ("recurrence", None, True), ("relapse", None, True),
    ("resolved", None, False), ("inactive", None, False), ("active", "refuted", False),
    ("active", "entered-in-error", False)])
def test_active_condition(status, verification, active):
    res = {"clinicalStatus": {"coding": [{"code": status}]}}
    if verification:
        res["verificationStatus"] = {"coding": [{"code": verification}]}
    assert condition_is_active(res) is active
    if not verification:  # STU3/DSTU2 give the status as a plain code
        assert condition_is_active({"clinicalStatus": status}) is active
