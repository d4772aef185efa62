"""Property-based tests (hypothesis): whatever the body or the FHIR shapes, the service answers
200 or a 4xx/412 OperationOutcome — never a 500, never a hang."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import OS, PV, check_response, load_fixture

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda children: st.one_of(
    st.lists(children, max_size=4), st.dictionaries(st.text(max_size=8), children, max_size=4)), max_leaves=12)

FIELDS = ["code", "coding", "system", "display", "text", "clinicalStatus", "verificationStatus", "onsetDateTime",
          "onsetPeriod", "onsetAge", "recordedDate", "abatementDateTime", "subject", "patient", "reference", "status",
          "medicationCodeableConcept", "medicationReference", "contained", "dosageInstruction", "dosage", "timing",
          "repeat", "frequency", "frequencyMax", "period", "periodUnit", "doseAndRate", "doseQuantity", "doseRange",
          "high", "value", "unit", "maxDosePerPeriod", "asNeededBoolean", "dispenseRequest", "expectedSupplyDuration",
          "quantity", "validityPeriod", "authoredOn", "effectiveDateTime", "valueQuantity", "valueString",
          "comparator", "performedDateTime", "performedPeriod", "reasonCode", "reasonReference", "birthDate", "id"]
CODES = st.sampled_from(["M54.16", "M5416", "128196005", "197807", "1049621", "245134", "98979-8", "8310-5",
                         "http://hl7.org/fhir/sid/icd-10-cm", "http://snomed.info/sct", "http://loinc.org",
                         "http://www.nlm.nih.gov/research/umls/rxnorm", "active", "d", "h", "mg", "Patient/p1"])
fhir_values = st.recursive(st.one_of(json_scalars, CODES), lambda children: st.one_of(
    st.lists(children, max_size=3), st.dictionaries(st.sampled_from(FIELDS), children, max_size=4)), max_leaves=8)
CONTENT_TYPES = ["Condition", "MedicationRequest", "MedicationStatement", "MedicationOrder", "Observation",
                 "Procedure", "ServiceRequest", "Medication", "Patient"]


def resources_of(types):
    return st.fixed_dictionaries({"resourceType": st.sampled_from(types), "id": st.one_of(st.text(max_size=6), st.integers())},
                                 optional={f: fhir_values for f in FIELDS[:30:3]})


def bundles_of(types):
    return st.builds(lambda rs: {"resourceType": "Bundle", "entry": [{"resource": r} for r in rs]},
                     st.lists(resources_of(types), max_size=3))


resources = resources_of(CONTENT_TYPES + ["OperationOutcome", "Bundle"])
bundles = bundles_of(CONTENT_TYPES + ["OperationOutcome", "Bundle"])
content_bundles = bundles_of(CONTENT_TYPES)  # no failure markers: a valid request must get 200
KEYS = ["patient", "conditions", "medicationRequests", "medicationStatements", "observations", "procedures",
        "serviceRequests"]

FUZZ = settings(max_examples=100, deadline=2000, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                       HealthCheck.too_slow])


def _check(response):
    assert response.status_code in {200, 400, 404, 412, 413}, response.get_data(as_text=True)
    body = response.get_json()
    if response.status_code == 200:
        check_response(body)
    else:
        assert body["resourceType"] == "OperationOutcome"


@FUZZ
@given(body=json_values)
def test_any_json_body(client, body):
    _check(client.post(PV, data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(hook=st.sampled_from(["patient-view", "order-select", "x"]), hook_instance=json_values, context=json_values,
       prefetch=st.one_of(json_values, st.dictionaries(st.sampled_from(KEYS), st.one_of(st.none(), bundles, resources))),
       extra=st.dictionaries(st.sampled_from(["fhirServer", "fhirAuthorization", "extension"]), json_values, max_size=2))
def test_request_shapes(client, hook, hook_instance, context, prefetch, extra):
    body = {"hook": hook, "hookInstance": hook_instance, "context": context, "prefetch": prefetch, **extra}
    _check(client.post(PV if hook != "order-select" else OS, data=json.dumps(body), content_type="application/json"))


@FUZZ
@given(prefetch=st.fixed_dictionaries({k: st.one_of(st.none(), content_bundles) for k in KEYS[1:]}),
       drafts=st.lists(resources_of(CONTENT_TYPES), max_size=4))
def test_fhir_resource_shapes_in_valid_requests(client, prefetch, drafts):
    pv = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    pv["prefetch"].update(prefetch)
    response = client.post(PV, data=json.dumps(pv), content_type="application/json")
    assert response.status_code == 200
    check_response(response.get_json())
    os_body = load_fixture("os_opioid_with_benzodiazepine")
    os_body["prefetch"].update(prefetch)
    os_body["context"]["draftOrders"]["entry"] += [{"resource": d} for d in drafts]
    os_body["context"]["selections"] += [f"{d['resourceType']}/{d['id']}" for d in drafts
                                         if isinstance(d["id"], str) and re.fullmatch(r"[A-Za-z0-9.-]{1,64}", d["id"])]
    response = client.post(OS, data=json.dumps(os_body), content_type="application/json")
    assert response.status_code == 200  # a valid request stays valid whatever its FHIR content
    check_response(response.get_json())


@FUZZ
@given(feedback=json_values)
def test_any_feedback_body(client, feedback):
    _check(client.post(PV + "/feedback", data=json.dumps({"feedback": feedback}), content_type="application/json"))
