"""The 19 Synthea patients (tests/data/synthea): no cards without back pain, few cards with it."""

from __future__ import annotations

import json
import statistics

import pytest

from conftest import OS, PV, SYNTHEA as SYNTHEA_DIR, check_response, post, rules_of

SYNTHEA = sorted(SYNTHEA_DIR.glob("*.json"))
KEY_OF = {"Condition": "conditions", "MedicationRequest": "medicationRequests", "Medication": "medicationRequests",
          "MedicationStatement": "medicationStatements", "Observation": "observations",
          "Procedure": "procedures", "ServiceRequest": "serviceRequests"}


def synthea_request(path) -> dict:
    bundle = json.loads(path.read_text())
    prefetch = {k: {"resourceType": "Bundle", "type": "searchset", "entry": []} for k in set(KEY_OF.values())}
    patient_id = None
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "Patient":
            prefetch["patient"], patient_id = resource, resource["id"]
        else:
            prefetch[KEY_OF[resource["resourceType"]]]["entry"].append({"resource": resource})
    return {"hook": "patient-view", "hookInstance": f"synthea-{path.stem}",
            "context": {"userId": "Practitioner/synthea", "patientId": patient_id}, "prefetch": prefetch}


@pytest.fixture
def synthea_client(make_app):
    return make_app({"as_of": "2026-06-01"}).test_client()


def test_all_nineteen_patients_are_there():
    assert len(SYNTHEA) == 19


def _cards(client, path) -> list[dict]:
    response = post(client, PV, synthea_request(path))
    assert response.status_code == 200
    return check_response(response.get_json())["cards"]


BACK_PAIN = [p for p in SYNTHEA if not p.stem.startswith(("negative-", "near-miss-"))]
DRAFTS = {  # what a prescriber might select on these charts (RxNorm clinical drugs)
    "oxycodone": ("1049621", "oxycodone hydrochloride 5 MG Oral Tablet", 1, 4),
    "naproxen": ("198014", "naproxen 500 MG Oral Tablet", 1, 2),
    "gabapentin": ("310431", "gabapentin 300 MG Oral Capsule", 1, 3),
}


def order_select_request(path, drug: str) -> dict:
    body = synthea_request(path)
    code, display, dose, per_day = DRAFTS[drug]
    patient_id = body["context"]["patientId"]
    draft = {"resourceType": "MedicationRequest", "id": f"draft-{drug}", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": "2026-06-01",
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                       "code": code, "display": display}], "text": display},
             "dosageInstruction": [{"timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                                    "doseAndRate": [{"doseQuantity": {"value": dose, "unit": "tablet"}}]}],
             "dispenseRequest": {"expectedSupplyDuration": {"value": 7, "unit": "days"}}}
    body.update(hook="order-select", hookInstance=f"synthea-{path.stem}-{drug}")
    body["context"].update(selections=[f"MedicationRequest/draft-{drug}"],
                           draftOrders={"resourceType": "Bundle", "type": "collection", "entry": [{"resource": draft}]})
    return body


@pytest.mark.parametrize("path", [p for p in SYNTHEA if p not in BACK_PAIN], ids=lambda p: p.stem)
def test_no_back_pain_no_cards(synthea_client, path):
    assert _cards(synthea_client, path) == []
    for drug in DRAFTS:
        response = post(synthea_client, OS, order_select_request(path, drug))
        assert response.status_code == 200 and response.get_json() == {"cards": []}


def test_back_pain_chart_open_alert_burden(synthea_client, capsys):
    """Median ≤ 2 cards per chart-open and never more than 2 warning or critical cards; each chart
    ends with its care plan. The distribution is printed for the clinical review."""
    shown = {}
    for path in BACK_PAIN:
        cards = _cards(synthea_client, path)
        shown[path.stem] = cards
        assert cards and cards[-1]["source"]["topic"]["code"] == "care-plan", (path.stem, rules_of(cards))
        assert cards[-1]["summary"].startswith("Chronic low back pain since")
    counts = sorted(len(c) for c in shown.values())
    alerts = {name: [c["source"]["topic"]["code"] for c in cards if c["indicator"] != "info"]
              for name, cards in shown.items()}
    with capsys.disabled():
        print("\nSynthea chart-open cards (patient: indicators → rules):")
        for name, cards in shown.items():
            print(f"  {name}: {len(cards)} cards, {[c['indicator'] for c in cards]} → {rules_of(cards)}")
        print(f"  distribution: {counts}; median {statistics.median(counts)}")
    assert statistics.median(counts) <= 2, counts
    over = {name: a for name, a in alerts.items() if len(a) > 2}
    assert over == MORE_THAN_TWO_ALERTS, over


# Charts where a correct reading of the catalogue gives three warnings (each rule's own card); named
# here, and in the note on the issue, rather than bending a rule to fit the alert budget.
MORE_THAN_TWO_ALERTS = {
    # 97-year-old on tacrolimus (an immunosuppressant: red-flag.infection) and three long-acting opioids
    # at ≥ 95 MME/day (a tramadol without a dose could not be counted) with no naloxone on record.
    "positive-561f242f": ["red-flag.infection", "opioid.mme", "opioid.naloxone"],
    # 69-year-old with opioid abuse on OxyContin, a fentanyl patch and hydrocodone ER (95 MME/day), no
    # MOUD and no naloxone: the dose, the rescue drug and the use disorder are three separate actions.
    "positive-7753b010": ["opioid.mme", "opioid.naloxone", "opioid.use-disorder"],
}


@pytest.mark.parametrize("drug", sorted(DRAFTS))
def test_a_draft_order_gets_its_own_card_and_at_most_a_critical_red_flag(synthea_client, drug, capsys):
    burden = {}
    for path in BACK_PAIN:
        response = post(synthea_client, OS, order_select_request(path, drug))
        assert response.status_code == 200
        cards = check_response(response.get_json())["cards"]
        burden[path.stem] = [(c["indicator"], c["source"]["topic"]["code"]) for c in cards]
        own = [c for c in cards if not c["source"]["topic"]["code"].startswith("red-flag.")]
        flags = [c for c in cards if c["source"]["topic"]["code"].startswith("red-flag.")]
        assert len(own) <= 1 and all(c["indicator"] == "critical" for c in flags), (path.stem, burden[path.stem])
        assert len(cards) <= 2
    with capsys.disabled():
        print(f"\nSynthea draft {drug}: " + "; ".join(f"{k}: {v}" for k, v in burden.items()))


def test_synthea_opioid_patient_mme_figure(synthea_client):
    path = next(p for p in SYNTHEA if p.stem == "positive-7753b010")
    card = next(c for c in _cards(synthea_client, path) if c["source"]["topic"]["code"] == "opioid.mme")
    # OxyContin 10 mg daily (15) + fentanyl 25 mcg/hr (60) + hydrocodone ER 10 mg q12h PRN (20).
    assert card["summary"].startswith("Opioid dose 95 MME/day")
    assert "25 mcg/hr × 2.4 = 60 MME/day" in card["detail"]
