"""Benchmark scenarios: fixture patients scaled up to a given number of prefetch resources with a
realistic mix — the patient's real record plus inactive and irrelevant entries (resolved and
unrelated conditions, completed prescriptions of other drugs, unrelated observations, routine
procedures), as an EHR would send them."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

FILLER_CONDITIONS = [("I10", "Essential (primary) hypertension"), ("E11.9", "Type 2 diabetes mellitus without complications"),
                     ("E78.5", "Hyperlipidemia, unspecified"), ("J45.909", "Unspecified asthma, uncomplicated"),
                     ("M54.16", "Radiculopathy, lumbar region"), ("K21.9", "Gastro-esophageal reflux disease"),
                     ("F41.1", "Generalized anxiety disorder"), ("Z87.891", "Personal history of nicotine dependence")]
FILLER_DRUGS = [("314076", "lisinopril 10 MG Oral Tablet"), ("860975", "metformin hydrochloride 500 MG Oral Tablet"),
                ("617311", "atorvastatin 40 MG Oral Tablet"), ("197807", "ibuprofen 800 MG Oral Tablet"),
                ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet"), ("198051", "omeprazole 20 MG Delayed Release Oral Capsule"),
                ("308136", "amlodipine 2.5 MG Oral Tablet")]
FILLER_OBS = [("8480-6", "Systolic blood pressure", 128, "mm[Hg]"), ("29463-7", "Body weight", 80, "kg"),
              ("2345-7", "Glucose", 104, "mg/dL"), ("98979-8", "eGFR CKD-EPI 2021", 88, "mL/min/{1.73_m2}"),
              ("8310-5", "Body temperature", 36.8, "Cel"), ("72514-3", "Pain severity 0-10", 4, "{score}")]
FILLER_PROCS = [("430193006", "Medication reconciliation"), ("710824005", "Assessment of health and social care needs"),
                ("171207006", "Depression screening"), ("91251008", "Physical therapy procedure")]


def load(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def _entries(body: dict, key: str) -> list:
    value = body["prefetch"].get(key)
    return value.setdefault("entry", []) if isinstance(value, dict) else []


def count_resources(body: dict) -> int:
    n = 1 if isinstance(body["prefetch"].get("patient"), dict) else 0
    return n + sum(len(_entries(body, k)) for k in body["prefetch"] if k != "patient")


def scaled(name: str, total: int, seed: int = 7) -> dict:
    """The fixture with filler added until the prefetch holds `total` resources (old dates: inactive)."""
    body = copy.deepcopy(load(name))
    rnd = random.Random(seed)
    pid = body["context"]["patientId"]
    subject = {"reference": f"Patient/{pid}"}
    i = 0
    while count_resources(body) < total:
        i += 1
        year = rnd.randint(2005, 2025)
        date = f"{year}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
        kind = i % 4
        if kind == 0:
            code, display = rnd.choice(FILLER_CONDITIONS)
            # An old back-pain episode is resolved; the rest are a mix of active and past problems.
            status = "resolved" if code.startswith("M54") else rnd.choice(["resolved", "inactive", "active"])
            res = {"resourceType": "Condition", "id": f"fill-c{i}", "subject": subject,
                   "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": status}]},
                   "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": code, "display": display}], "text": display},
                   "onsetDateTime": date, "recordedDate": date}
            if status != "active":
                res["abatementDateTime"] = date
            _entries(body, "conditions").append({"resource": res})
        elif kind == 1:
            code, display = rnd.choice(FILLER_DRUGS)
            res = {"resourceType": "MedicationRequest", "id": f"fill-m{i}", "status": "completed", "intent": "order",
                   "subject": subject, "authoredOn": date,
                   "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": code, "display": display}]},
                   "dosageInstruction": [{"timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                                          "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "tablet"}}]}],
                   "dispenseRequest": {"expectedSupplyDuration": {"value": 30, "unit": "days", "code": "d"}}}
            _entries(body, "medicationRequests").append({"resource": res})
        elif kind == 2:
            code, display, value, unit = rnd.choice(FILLER_OBS)
            res = {"resourceType": "Observation", "id": f"fill-o{i}", "status": "final", "subject": subject,
                   "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
                   "effectiveDateTime": date, "valueQuantity": {"value": value, "unit": unit, "code": unit}}
            _entries(body, "observations").append({"resource": res})
        else:
            code, display = rnd.choice(FILLER_PROCS)
            res = {"resourceType": "Procedure", "id": f"fill-p{i}", "status": "completed", "subject": subject,
                   "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
                   "performedDateTime": date}
            _entries(body, "procedures").append({"resource": res})
    return body


def order_select_three_drafts() -> dict:
    """Order-select with three draft orders (two selected) on a 300-resource record."""
    body = scaled("os_opioid_with_benzodiazepine", 300)
    drafts = body["context"]["draftOrders"]["entry"]
    extra = copy.deepcopy(drafts[0]["resource"])
    extra.update(id="draft-naproxen", medicationCodeableConcept={"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "198014"}]})
    third = copy.deepcopy(drafts[0]["resource"])
    third.update(id="draft-cyclo", medicationCodeableConcept={"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "828348"}]})
    drafts += [{"resource": extra}, {"resource": third}]
    body["context"]["selections"] = ["MedicationRequest/draft-oxy", "MedicationRequest/draft-cyclo"]
    return body
