"""Suggestions: CDS Hooks 2.0 actions carrying FHIR R4 resources (status draft, subject = patient).

Orderable items come from knowledge/orderables.toml. Each suggestion has a `key` naming what it
orders, so cards can tell when two findings would offer the same thing (the card rules).
"""

from __future__ import annotations

import copy
import datetime as dt
from dataclasses import dataclass, field

from . import knowledge
from .config import ConfigError

SNOMED = "http://snomed.info/sct"
CATEGORIES = {
    "imaging": {"coding": [{"system": SNOMED, "code": "363679005", "display": "Imaging"}], "text": "Imaging"},
    "laboratory": {"coding": [{"system": SNOMED, "code": "108252007", "display": "Laboratory procedure"}],
                   "text": "Laboratory"},
    "referral": {"coding": [{"system": SNOMED, "code": "3457005", "display": "Patient referral"}],
                 "text": "Referral"},
    "assessment": {"text": "Assessment"},
}
UCUM = "http://unitsofmeasure.org"


@dataclass
class Suggestion:
    key: str  # what it orders or changes, e.g. "imaging:MR:thoracic", "med:198014", "delete:MedicationRequest/1"
    label: str
    actions: list[dict]
    recommended: bool = False
    what: str = ""  # how other cards name it ("MRI thoracic spine without contrast")


@dataclass
class Ctx:
    """What builders need besides the orderable: the patient, today, the triggering condition."""

    patient_id: str
    today: dt.date
    reason_ids: list[str] = field(default_factory=list)


def _subject(ctx: Ctx) -> dict:
    return {"reference": f"Patient/{ctx.patient_id}"}


def _reason(ctx: Ctx) -> dict:
    return {"reasonReference": [{"reference": f"Condition/{cid}"} for cid in ctx.reason_ids[:3]]} \
        if ctx.reason_ids else {}


def service_item(key: str) -> dict:
    return knowledge.orderables()["services"][key]


def medication_item(key: str) -> dict:
    return knowledge.orderables()["medications"][key]


def service_request(key: str, ctx: Ctx, *, priority: str | None = None, within_days: int | None = None,
                    note: str | None = None) -> dict:
    item = service_item(key)
    resource = {
        "resourceType": "ServiceRequest",
        "status": "draft",
        "intent": "order",
        "category": [copy.deepcopy(CATEGORIES[item["category"]])],
        "code": {"coding": [dict(item["code"])], "text": item["label"]},
        "subject": _subject(ctx),
        **_reason(ctx),
    }
    if priority:
        resource["priority"] = priority
    window = (0, within_days) if within_days else item.get("within_days")
    if window:
        resource["occurrencePeriod"] = {"start": (ctx.today + dt.timedelta(days=window[0])).isoformat(),
                                        "end": (ctx.today + dt.timedelta(days=window[1])).isoformat()}
    if note:
        resource["note"] = [{"text": note}]
    return resource


ROUTES = {"oral": {"system": SNOMED, "code": "26643006", "display": "Oral route"},
          "nasal": {"system": SNOMED, "code": "46713006", "display": "Nasal route"}}


def medication_request(key: str, ctx: Ctx) -> dict:
    item = medication_item(key)
    dosage: dict = {"text": item["text"]}
    if "timing" in item:
        t = item["timing"]
        repeat = {"frequency": t["frequency"], "period": t["period"], "periodUnit": t["period_unit"]}
        if "when" in t:
            repeat["when"] = list(t["when"])
        dosage["timing"] = {"repeat": repeat}
    dosage["asNeededBoolean"] = bool(item.get("as_needed", False))
    if "route" in item:
        dosage["route"] = {"coding": [dict(ROUTES[item["route"]])], "text": ROUTES[item["route"]]["display"]}
    if "dose" in item:
        dosage["doseAndRate"] = [{"doseQuantity": {"value": item["dose"]["value"], "unit": item["dose"]["unit"]}}]
    if "max_per_day" in item:
        dosage["maxDosePerPeriod"] = {
            "numerator": {"value": item["max_per_day"], "unit": item["dose"]["unit"]},
            "denominator": {"value": 1, "unit": "day", "system": UCUM, "code": "d"}}
    resource = {
        "resourceType": "MedicationRequest",
        "status": "draft",
        "intent": "order",
        "medicationCodeableConcept": {"coding": [dict(item["code"])], "text": item["code"]["display"]},
        "subject": _subject(ctx),
        "dosageInstruction": [dosage],
        **_reason(ctx),
    }
    dispense: dict = {}
    if "quantity" in item:
        dispense["quantity"] = {"value": item["quantity"], "unit": item.get("dose", {}).get("unit", "unit")}
    if "supply_days" in item:
        dispense["expectedSupplyDuration"] = {"value": item["supply_days"], "unit": "days", "system": UCUM,
                                              "code": "d"}
    if dispense:
        resource["dispenseRequest"] = dispense
    return resource


def _service_key(key: str) -> str:
    item = service_item(key)
    if item.get("modality"):
        return f"imaging:{item['modality']}:{item['region']}"
    return f"service:{item['code']['code']}"


def order_service(key: str, ctx: Ctx, *, label: str | None = None, recommended: bool = True, **kwargs) -> Suggestion:
    item = service_item(key)
    resource = service_request(key, ctx, **kwargs)
    text = label or item["label"]
    return Suggestion(_service_key(key), text, [{"type": "create", "description": f"Order: {text}",
                                                 "resource": resource}], recommended, item["label"])


def order_medications(keys: list[str], ctx: Ctx, *, label: str | None = None, recommended: bool = True) -> Suggestion:
    """One suggestion that creates one or more medication orders together."""
    items = [medication_item(k) for k in keys]
    actions = [{"type": "create", "description": f"Prescribe {i['label']}", "resource": medication_request(k, ctx)}
               for k, i in zip(keys, items)]
    text = label or " with ".join(i["label"] for i in items)
    key = "med:" + "+".join(i["code"]["code"] for i in items)
    return Suggestion(key, text, actions, recommended, " with ".join(i["label"] for i in items))


def remove_draft(ref: str, name: str, *, recommended: bool = True) -> Suggestion:
    return Suggestion(f"delete:{ref}", f"Remove the draft order: {name}",
                      [{"type": "delete", "description": f"Remove the draft order for {name}", "resourceId": ref}],
                      recommended, f"removing the draft {name}")


def replace_draft(ref: str, name: str, keys: str | list[str], ctx: Ctx, *, recommended: bool = False) -> Suggestion:
    """One suggestion: delete the draft and create the replacement order(s)."""
    keys = [keys] if isinstance(keys, str) else keys
    items = [medication_item(k) for k in keys]
    what = " with ".join(i["label"] for i in items)
    actions = [{"type": "delete", "description": f"Remove the draft order for {name}", "resourceId": ref}]
    actions += [{"type": "create", "description": f"Prescribe {i['label']}", "resource": medication_request(k, ctx)}
                for k, i in zip(keys, items)]
    return Suggestion(f"replace:{ref}:" + "+".join(i["code"]["code"] for i in items),
                      f"Replace {name} with {what}", actions, recommended, f"replacing {name} with {what}")


def replace_service_draft(ref: str, name: str, key: str, ctx: Ctx, **kwargs) -> Suggestion:
    """One suggestion: delete a draft study and order the one the card asks for instead (e.g. the
    same MRI without and with contrast), so that accepting it never orders both."""
    item = service_item(key)
    actions = [{"type": "delete", "description": f"Remove the draft order for {name}", "resourceId": ref},
               {"type": "create", "description": f"Order: {item['label']}", "resource": service_request(key, ctx, **kwargs)}]
    return Suggestion(_service_key(key), f"Replace {name} with {item['label']}", actions, True, item["label"])


def update_draft(ref: str, resource: dict, label: str, *, recommended: bool = False) -> Suggestion:
    return Suggestion(f"update:{ref}", label,
                      [{"type": "update", "description": label, "resource": resource}], recommended, label)


class OrderableError(ConfigError):
    """A knowledge-base orderable whose FHIR resource does not validate: the service must not start."""


def validate_orderables() -> int:
    """Build every orderable as the cards would and validate it against the FHIR R4B models, so that
    a broken entry in orderables.toml stops the start with its name instead of reaching an EHR."""
    from fhir.resources.R4B import get_fhir_model_class  # noqa: PLC0415 (only at start-up)
    ctx = Ctx("validation", dt.date(2026, 1, 1), ["condition"])
    builders = [(f"medications.{k}", lambda k=k: medication_request(k, ctx)) for k in knowledge.orderables()["medications"]]
    builders += [(f"services.{k}", lambda k=k: service_request(k, ctx)) for k in knowledge.orderables()["services"]]
    for name, build in builders:
        try:
            resource = build()
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except Exception as exc:  # a KeyError in the TOML entry or a pydantic ValidationError alike
            first = str(exc).splitlines()[0][:200]
            raise OrderableError(f"orderable {name} in orderables.toml is not a valid FHIR resource: {first}") from None
    return len(builders)
