"""Imperfect FHIR as real clients send it: one malformed resource only loses itself."""

from __future__ import annotations

from conftest import card_of, cards_for, load_fixture, rules_of

GARBAGE = [
    {"resourceType": "Condition", "id": "g1", "code": "M54.16", "onsetDateTime": "not a date"},
    {"resourceType": "Condition", "id": "g2", "code": {"coding": "M54.16"}, "clinicalStatus": 7},
    {"resourceType": "Condition", "id": "g3", "code": {"coding": [None, 3, {"system": 1, "code": ["x"]}]}},
    {"resourceType": "MedicationRequest", "id": "g4", "status": "active", "dosageInstruction": 5,
     "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": 197807}]}},
    {"resourceType": "MedicationRequest", "id": "g5", "status": ["active"], "medicationReference": "Medication/x",
     "subject": "Patient/pv-lumbar-6w", "dispenseRequest": {"validityPeriod": {"end": 20250101}}},
    {"resourceType": "Observation", "id": "g6", "status": "final", "valueQuantity": "high",
     "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]}, "effectiveDateTime": "2026-02-01"},
    {"resourceType": "Observation", "id": "g7", "code": {"coding": [{"system": "http://loinc.org", "code": "8310-5"}]},
     "valueQuantity": {"value": True, "unit": "Cel"}, "effectiveDateTime": "yesterday"},
    {"resourceType": "Procedure", "id": "g8", "code": None, "performedPeriod": "2026"},
    {"resourceType": 12},
    {"no": "resourceType"},
]


def test_malformed_resources_do_not_change_the_answer(client):
    clean = rules_of(cards_for(client, "pv_lumbar_radiculopathy_6_weeks"))
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    for key in ("conditions", "medicationRequests", "observations", "procedures"):
        body["prefetch"][key]["entry"] += [{"resource": g} for g in GARBAGE] + [{"fullUrl": "x"}, {"resource": None}, "junk"]
    assert rules_of(cards_for(client, body)) == clean


def test_unreadable_lab_is_ignored_and_said(client):
    body = load_fixture("os_nsaid_with_egfr_45")
    body["prefetch"]["observations"]["entry"].append({"resource": {
        "resourceType": "Observation", "id": "bad-egfr", "status": "final", "subject": {"reference": "Patient/os-egfr-45"},
        "code": {"coding": [{"system": "http://loinc.org", "code": "98979-8"}]}, "effectiveDateTime": "2026-02-25",
        "valueString": "see report"}})
    card = card_of(cards_for(client, body), "nsaid.renal")
    assert "eGFR 45" in card["summary"]  # the older readable value is used


def test_bundle_without_type_and_objects_where_arrays_belong(client):
    body = load_fixture("os_nsaid_with_egfr_24")
    del body["context"]["draftOrders"]["type"]
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    draft["category"] = {"coding": [{"code": "community"}]}
    draft["reasonCode"] = {"coding": [{"system": "http://snomed.info/sct", "code": "PLACEHOLDER"}]}
    draft["dosageInstruction"][0]["doseAndRate"] = draft["dosageInstruction"][0]["doseAndRate"][0]
    assert card_of(cards_for(client, body), "nsaid.renal")["indicator"] == "critical"


def test_medication_reference_to_a_prefetched_medication(client):
    body = load_fixture("pv_current_opioid_with_benzodiazepine")
    stmt = body["prefetch"]["medicationStatements"]["entry"][0]["resource"]
    concept = stmt.pop("medicationCodeableConcept")
    stmt["medicationReference"] = {"reference": "Medication/med-oxy"}
    body["prefetch"]["medicationStatements"]["entry"].append(
        {"resource": {"resourceType": "Medication", "id": "med-oxy", "code": concept}, "search": {"mode": "include"}})
    assert "60 MME/day" in card_of(cards_for(client, body), "opioid.mme")["summary"]


def test_dstu2_style_condition_fields(client):
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    cond = body["prefetch"]["conditions"]["entry"][0]["resource"]
    cond["clinicalStatus"] = "active"
    cond["verificationStatus"] = "confirmed"
    cond["patient"] = cond.pop("subject")
    assert "imaging.persistent-radiculopathy" in rules_of(cards_for(client, body))
