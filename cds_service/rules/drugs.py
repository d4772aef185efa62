"""Shared pieces of the drug-safety rules (the NSAID rules to the opioid rules): which drugs a rule is about,
pairs that fire both ways, and suggestions that respect §2 — a selected draft may be removed,
replaced or updated; a current drug is never changed, only reviewed, with alternatives created."""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

from .. import orders
from ..drugs import Drug
from ..facts import Facts
from . import PV, Finding, ctx, detail
from .suggest import acetaminophen_key


def subjects(f: Facts, *classes: str) -> list[Drug]:
    """The drugs a single-drug rule is about: selected drafts (order-select) or current ones (patient-view)."""
    # Patient-view: a possibly stale list entry never fires a card by itself.
    return f.selected_of(*classes) if f.hook != PV else f.current_of(*classes, stale=False)


@dataclass
class Pair:
    own: Drug  # the drug of the rule's family (the NSAID of an nsaid.* rule)
    other: Drug


def pairs(f: Facts, own_classes: tuple[str, ...], other_classes: tuple[str, ...], *, same=None) -> list[Pair]:
    """Pairs that fire both ways on order-select: own selected with other current or selected, or
    other selected with own current. On patient-view: both current."""
    found: dict[tuple[str, str], Pair] = {}

    def add(own: Drug, other: Drug):
        if own.ref == other.ref or (same and not same(own, other)):
            return
        found.setdefault((own.ref, other.ref), Pair(own, other))

    if f.hook != PV:
        for own in f.selected_of(*own_classes):
            for other in f.current_of(*other_classes) + f.selected_of(*other_classes):
                add(own, other)
        for other in f.selected_of(*other_classes):
            for own in f.current_of(*own_classes):
                add(own, other)
    else:
        for own in f.current_of(*own_classes, stale=False):
            for other in f.current_of(*other_classes, stale=False):
                add(own, other)
    return list(found.values())


def short_name(d: Drug) -> str:
    """How a summary names a drug: its ingredients ('oxycodone', 'alprazolam')."""
    return "/".join(i.name for i in d.ingredients) or d.name.split()[0].lower()


def paired(finding: Finding | None, found_pairs: list[Pair]) -> Finding | None:
    """Name the drugs of a pair rule on its finding (by ingredient, so a renewal is the same drug):
    a new drug in the pair is new information, which a remembered override does not cover."""
    if finding is not None:
        finding.partners = frozenset("+".join(sorted(d.ingredients_names)) or d.name.lower()
                                     for p in found_pairs for d in (p.own, p.other))
    return finding


def drug_line(d: Drug) -> str:
    role = "Selected order" if d.selected else ("Other draft order" if d.is_draft else "Current")
    return f"{role}: {d.label}"


TAPER_CLASSES = ("opioid", "benzodiazepine", "gabapentinoid")  # and baclofen: stopping abruptly harms


def _review_advice(d: Drug) -> str:
    if "moud" in d.classes:
        return "continue it (treatment of opioid use disorder is never stopped for this)"
    if d.classes & set(TAPER_CLASSES) or d.has_ingredient("baclofen"):
        return "review; taper, do not stop abruptly"
    return "review or stop"


def review_note(drugs: list[Drug]) -> str:
    current = [d for d in drugs if not d.selected]
    if not current:
        return ""
    lines = "; ".join(f"{d.name}: {_review_advice(d)}{d.stale_note}" for d in current)
    return f"\n\n**Current medication:** {lines}. This card does not change that order."


def drug_detail(why: list[str], advice: str, culprits: list[Drug], evidence: str, note: str = "") -> str:
    """The detail of every drug-safety card: why, the advice (with the review advice for current
    culprits), a family-specific note, the evidence."""
    return detail(why, advice, evidence, review_note(culprits) + note)


def drug_finding(f: Facts, level: str, summary: str, culprits: list[Drug], why: list[str], advice: str,
                 evidence: str, extra=(), selection: str = "at-most-one") -> Finding:
    """A drug-safety finding: the rule's own suggestions followed by removing the culprit drafts."""
    return Finding(level, summary, drug_detail(why, advice, culprits, evidence),
                   list(extra) + fix_suggestions(f, culprits), selection)


def fix_suggestions(f: Facts, culprits: list[Drug], *, remove: bool = True, replace_with: str | None = None,
                    add: tuple[str, ...] = ()) -> list[orders.Suggestion]:
    """Alternatives for the culprit drugs: on a selected draft, replace it (delete + create) or remove it;
    on a current drug, create the alternative; `add` creates a protective drug (e.g. a PPI)."""
    out: list[orders.Suggestion] = []
    if replace_with == "acetaminophen_500":
        replace_with = acetaminophen_key(f)  # 2 g a day at most with liver disease or alcohol use
    replacement_ok = replace_with is not None and not _already_taking(f, replace_with)
    for drug in culprits:
        if drug.selected:
            if replacement_ok:
                out.append(orders.replace_draft(drug.ref, drug.name, replace_with, ctx(f), recommended=True))
            if remove:
                out.append(orders.remove_draft(drug.ref, drug.name, recommended=not replacement_ok))
    if replacement_ok and not any(d.selected for d in culprits):
        out.append(orders.order_medications([replace_with], ctx(f)))
    for key in add:
        if not _already_taking(f, key):
            out.append(orders.order_medications([key], ctx(f), recommended=not out))
    return out


_CLASS_OF_ORDERABLE = {"acetaminophen_500": "acetaminophen", "acetaminophen_500_liver": "acetaminophen",
                       "pantoprazole_40": "ppi",
                       "naloxone_nasal_4": "naloxone_rescue", "naproxen_500": "nsaid"}


def _already_taking(f: Facts, key: str) -> bool:
    """A current drug of the orderable's class (oxycodone/acetaminophen counts for acetaminophen)."""
    cls = _CLASS_OF_ORDERABLE.get(key)
    return bool(cls and f.current_of(cls, stale=False))


def protected(f: Facts) -> list[Drug]:
    """A current PPI or misoprostol (an H2 blocker does not protect; an old list entry does not either)."""
    return f.current_of("ppi", "misoprostol", stale=False)


# -- changing a draft ------------------------------------------------------------------------
def _r4_dosage(dosage: dict) -> dict:
    """A DSTU2/STU3 dosage in R4 shape (doseQuantity/doseRange moved into doseAndRate)."""
    out = {k: v for k, v in dosage.items() if k not in {"doseQuantity", "doseRange", "rateQuantity", "rateRatio"}}
    dose = {k: dosage[k] for k in ("doseQuantity", "doseRange") if k in dosage}
    if dose and "doseAndRate" not in out:
        out["doseAndRate"] = [dose]
    if isinstance(out.get("doseAndRate"), dict):
        out["doseAndRate"] = [out["doseAndRate"]]
    return out


def as_r4_request(drug: Drug, patient_id: str) -> dict:
    """A new R4 MedicationRequest (draft) for the drug of a draft order, keeping its dosage and dispense."""
    res = drug.resource
    concept = res.get("medicationCodeableConcept")
    if not isinstance(concept, dict):
        concept = {"text": drug.name}
        if drug.rxcui:
            concept["coding"] = [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": drug.rxcui,
                                  "display": drug.name}]
    out = {"resourceType": "MedicationRequest", "status": "draft", "intent": "order",
           "medicationCodeableConcept": copy.deepcopy(concept), "subject": {"reference": f"Patient/{patient_id}"},
           "dosageInstruction": [_r4_dosage(d) for d in drug.dosages]}
    dispense = res.get("dispenseRequest")
    if isinstance(dispense, dict):
        keep = {k: copy.deepcopy(v) for k, v in dispense.items()
                if k in {"quantity", "expectedSupplyDuration", "numberOfRepeatsAllowed"}}
        if keep:
            out["dispenseRequest"] = keep
    return out


def changed_draft(f: Facts, drug: Drug, change, label: str) -> orders.Suggestion:
    """Apply `change(resource)` to a selected draft: `update` for R4/STU3, or for a DSTU2
    MedicationOrder `delete` + `create` of an R4 MedicationRequest (never `update`, the card rules)."""
    if drug.dstu2:
        resource = as_r4_request(drug, f.patient_id)
        change(resource)
        return orders.Suggestion(f"update:{drug.ref}", label, [
            {"type": "delete", "description": f"Remove the draft order for {drug.name}", "resourceId": drug.ref},
            {"type": "create", "description": label, "resource": resource}], True, label)
    resource = copy.deepcopy(drug.resource)
    resource["status"] = "draft"
    change(resource)
    return orders.update_draft(drug.ref, resource, label, recommended=True)


def units_per_day(drug: Drug, strength_mg: float | None) -> float | None:
    daily = drug.daily
    if daily.per_day is None:
        return None
    if not daily.is_mass_mg:
        return daily.per_day
    return daily.per_day / strength_mg if strength_mg else None


JSON_SAFE_INTEGER = 2**53  # the largest integer every JSON reader keeps exactly (RFC 7493)


def limit_supply(days: int, per_day: float | None):
    def change(resource: dict) -> None:
        dispense = resource.setdefault("dispenseRequest", {})
        dispense["expectedSupplyDuration"] = {"value": days, "unit": "days", "system": "http://unitsofmeasure.org",
                                              "code": "d"}
        if per_day and per_day * days < JSON_SAFE_INTEGER:  # 1e300 tablets is no quantity to dispense
            quantity = dispense.get("quantity") if isinstance(dispense.get("quantity"), dict) else {}
            dispense["quantity"] = {**quantity, "value": math.ceil(per_day * days)}
        dispense.pop("numberOfRepeatsAllowed", None)
    return change
