"""The contract in hooks/*.schema.json against the spec-shaped examples in tests/data/conformance:
every valid example passes, every invalid one fails for the one reason its name gives."""

from __future__ import annotations

import json

import pytest

from conftest import CONFORMANCE, schema_validator

SCHEMA_OF_PREFIX = {"patient-view": "patient-view.schema", "order-select": "order-select.schema",
                    "response": "service-response.schema", "feedback": "feedback.schema",
                    "discovery": "discovery-response.schema"}
VALID = {"responses": "service-response.schema", "feedback": "feedback.schema",
         "discovery": "discovery-response.schema"}
# The JSON Schema keyword each invalid example breaks.
INVALID = {
    "discovery-missing-description": "required",
    "discovery-nested-prefetch-token": "pattern",
    "feedback-accepted-without-acceptedSuggestions": "required",
    "feedback-bad-outcome": "enum",
    "feedback-empty-overrideReason": "minProperties",
    "feedback-missing-card": "required",
    "order-select-missing-draftOrders": "required",
    "order-select-userId-wrong-type": "pattern",
    "patient-view-missing-patientId": "required",
    "request-fhirAuthorization-without-fhirServer": "dependentRequired",
    "request-missing-hookInstance": "required",
    "response-absolute-link-with-appContext": "not",
    "response-at-most-one-two-recommended": "maxContains",
    "response-create-action-without-resource": "required",
    "response-empty-links-array": "minItems",
    "response-empty-string-uuid": "minLength",
    "response-indicator-hard-stop": "enum",
    "response-missing-cards": "required",
    "response-missing-source": "required",
    "response-null-detail": "type",
    "response-overrideReason-without-display": "required",
    "response-suggestions-without-selectionBehavior": "dependentRequired",
    "response-summary-140-chars": "maxLength",
    "response-system-action-without-description": "required",
}


def keywords(schema: str, body) -> set[str]:
    """Every keyword that fails, nested ones included (allOf/if-then report through their branches)."""
    out, stack = set(), list(schema_validator(schema).iter_errors(body))
    while stack:
        error = stack.pop()
        out.add(error.validator)
        stack += error.context or []
    return out


def load(path):
    return json.loads(path.read_text())


def request_schema(body: dict) -> str:
    return f"{body['hook']}.schema"


@pytest.mark.parametrize("folder,schema", sorted(VALID.items()))
def test_valid_examples(folder, schema):
    paths = sorted((CONFORMANCE / folder).glob("*.json"))
    assert paths
    for path in paths:
        assert keywords(schema, load(path)) == set(), path.name


@pytest.mark.parametrize("path", sorted((CONFORMANCE / "requests").glob("*.json")), ids=lambda p: p.stem)
def test_request_examples_against_their_hook_schema(path):
    body = load(path)
    if body["hook"] == "order-sign":  # order-select's context without selections: every draft is being signed
        assert "selections" not in body["context"]
    broken = keywords(request_schema(body), body)
    assert broken == ({"required"} if path.stem == "patient-view-extension-only-userId" else set()), broken


def test_every_invalid_example_is_listed():
    assert {p.stem for p in (CONFORMANCE / "invalid").glob("*.json")} == set(INVALID)


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_examples_break_their_rule(name):
    body = load(CONFORMANCE / "invalid" / f"{name}.json")
    prefix = next(p for p in SCHEMA_OF_PREFIX if name.startswith(p)) if not name.startswith("request-") else None
    schema = SCHEMA_OF_PREFIX[prefix] if prefix else request_schema(body)
    assert INVALID[name] in keywords(schema, body)


def test_a_valid_example_becomes_invalid_with_one_defect():
    """The checks above can fail: the full card loses its required source."""
    body = load(CONFORMANCE / "responses" / "card-every-feature.json")
    assert keywords("service-response.schema", body) == set()
    del body["cards"][0]["source"]
    assert "required" in keywords("service-response.schema", body)
