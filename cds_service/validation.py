"""Request and feedback bodies checked against the JSON Schemas in hooks/ (shipped in the package).

Messages name the field and the rule broken, never the value: a value may be an access token.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SCHEMAS = ("common.defs", "patient-view.schema", "order-select.schema", "order-sign.schema", "service-response.schema",
           "feedback.schema", "discovery-response.schema")


@lru_cache(maxsize=1)
def _schemas() -> dict[str, dict]:
    folder = resources.files("cds_service.hooks")
    return {name: json.loads(folder.joinpath(f"{name}.json").read_text(encoding="utf-8")) for name in SCHEMAS}


def _inline_refs(node, schemas_by_id: dict, home: str | None = None):
    """The schema with every $ref to another file replaced by what it points at: the same rules,
    without reference resolution on every request (it dominated validation time). `home` is the
    file an inlined piece came from, so its own local refs are inlined too."""
    if isinstance(node, list):
        return [_inline_refs(n, schemas_by_id, home) for n in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and "#/$defs/" in ref and (not ref.startswith("#") or home):
        base, name = ref.split("#/$defs/")
        base = base or home
        target = _inline_refs(schemas_by_id[base]["$defs"][name], schemas_by_id, base)
        rest = {k: _inline_refs(v, schemas_by_id, home) for k, v in node.items() if k != "$ref"}
        return {"allOf": [target], **rest} if rest else target
    return {k: _inline_refs(v, schemas_by_id, home) for k, v in node.items()}


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    schemas = _schemas()
    by_id = {s["$id"]: s for s in schemas.values()}
    registry = Registry().with_resources((s["$id"], Resource.from_contents(s)) for s in schemas.values())
    return Draft202012Validator(_inline_refs(schemas[name], by_id), registry=registry)


def _describe(error) -> str:
    path = ".".join(str(p) for p in error.absolute_path) or "body"
    v, value = error.validator, error.validator_value
    if v == "required":
        return error.message.replace(" is a required property", f" is required in {path}")
    if v == "dependentRequired":
        return "fhirAuthorization requires fhirServer" if "fhirAuthorization" in value else f"{path}: missing dependency"
    if v == "type":
        return f"{path} must be of type {value if isinstance(value, str) else ' or '.join(value)}"
    if v in {"pattern", "format"}:
        return f"{path} is not in the expected format"
    if v in {"minLength", "minItems", "minProperties"}:
        return f"{path} must not be empty"
    if v == "maxLength":
        return f"{path} is too long"
    if v == "const":
        return f"{path} must be {json.dumps(value)}"
    if v == "enum":
        return f"{path} must be one of {', '.join(map(str, value))}"
    if v == "additionalProperties":
        return f"{path} has properties that are not allowed"
    return f"{path} breaks the '{v}' rule"


def problems(name: str, instance: object, limit: int = 5) -> list[str]:
    errors = sorted(validator(name).iter_errors(instance), key=lambda e: (len(e.absolute_path), e.path))
    out = []
    for error in errors:
        text = _describe(error)
        if text not in out:
            out.append(text)
        if len(out) >= limit:
            break
    return out


def request_problems(hook: str, body: dict) -> list[str]:
    return problems(f"{hook}.schema", body)


def feedback_problems(body: dict) -> list[str]:
    found = problems("feedback.schema", body)
    # The schema's if/then reports "acceptedSuggestions is required"; say which outcome needs it.
    return [p.replace("'acceptedSuggestions' is required", "'acceptedSuggestions' is required when outcome is "
                      "accepted") for p in found]
