"""Drug classification: a medication resource (any FHIR version, coded at any RxNorm level, or named
only in text) becomes a Drug with its ingredients, classes, route, dates and daily amount; which
entries are current, possibly stale or treatment for opioid use disorder (MOUD)."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Iterable

from . import dosing
from .fhir_json import (as_list, codings, coded, concept_text, first_date, markdown_text, parse_date, period_start,
                        reference_key, status_code)
from .record import PatientRecord
from .terminology import RXNORM, Ingredient, Terminology, er_from_name, normalise_system, route_from_name

CURRENT_STATEMENT = {"active", "intended", "on-hold"}
CURRENT_REQUEST = {"active", "on-hold"}
SYSTEMIC_ROUTES = {"oral", "injectable", "rectal", "nasal"}
CNS_ACTIVE = ("opioid", "benzodiazepine", "gabapentinoid", "ssri", "snri", "tca",
              "skeletal_muscle_relaxant", "z_drug")

NOT_GIVEN = {"cancelled", "entered-in-error", "not-taken", "draft", "unknown"}


@dataclass
class Drug:
    ref: str  # "MedicationRequest/123" or "MedicationStatement/abc"
    resource: dict
    name: str
    rxcui: str | None
    ingredients: tuple[Ingredient, ...]
    route: str | None
    er_la: bool
    by_name: bool
    classes: frozenset[str]
    date: dt.date | None
    is_draft: bool = False
    selected: bool = False
    dstu2: bool = False
    # "Possibly stale": an old current entry with nothing that ends it (see `_stale_since`). It may
    # add a finding on an order, never silence one, and never fires a patient-view card by itself.
    possibly_stale: bool = False
    listed_since: dt.date | None = None
    moud_reason: str = ""  # why a methadone order is treated as MOUD (an OUD condition or its reason code)

    @property
    def moud(self) -> bool:
        """Medication for opioid use disorder (the clinical definitions MOUD): buprenorphine, methadone or naltrexone."""
        return "moud" in self.classes

    @property
    def pain_opioid(self) -> bool:
        """An opioid that is not MOUD: the opioid the pain rules are about."""
        return "opioid" in self.classes and "moud" not in self.classes

    @property
    def systemic(self) -> bool:
        return self.route is None or self.route in SYSTEMIC_ROUTES

    def has_ingredient(self, *names: str) -> bool:
        return any(i.name in names for i in self.ingredients)

    @property
    def ingredients_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.ingredients)

    @property
    def label(self) -> str:
        code = f" (RxNorm {self.rxcui})" if self.rxcui else ""
        how = " — matched on the drug name" if self.by_name else ""
        return f"{self.name}{code}{how}{self.stale_note}"

    @property
    def stale_note(self) -> str:
        """What every card says of a possibly stale entry: it may no longer be taken."""
        if not self.possibly_stale:
            return ""
        since = f" since {self.listed_since.year}" if self.listed_since else ""
        return f" (on the medication list{since}, not renewed since: confirm the patient still takes it)"

    @property
    def dosages(self) -> list[dict]:
        """dosageInstruction (requests) or dosage (statements), as a list of objects."""
        raw = self.resource.get("dosageInstruction", self.resource.get("dosage"))
        return [d for d in as_list(raw) if isinstance(d, dict)]

    @cached_property
    def daily(self) -> dosing.DailyAmount:
        return dosing.daily_amount(self.dosages)

    def strength_mg(self, ingredient: str) -> float | None:
        """mg per dosage unit of one ingredient, parsed from the drug name (RxNorm style)."""
        for key, (value, unit) in dosing.strengths_from_name(self.name).items():
            if ingredient in key and unit == "MG":
                return value
        return None

    def daily_mg(self, ingredient: str) -> float | None:
        daily = self.daily
        if daily.per_day is None:
            return None
        if daily.is_mass_mg:
            return daily.per_day
        strength = self.strength_mg(ingredient)
        return daily.per_day * strength if strength is not None else None


def _medication_concept(res: dict, record: PatientRecord) -> tuple[dict | None, list[dict]]:
    """(CodeableConcept of the drug, ingredient concepts) from medicationCodeableConcept/Reference."""
    concept = res.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept, []
    ref = res.get("medicationReference")
    if isinstance(ref, dict):
        target = ref.get("reference")
        med = None
        if isinstance(target, str):
            if target.startswith("#"):
                med = next((c for c in as_list(res.get("contained"))
                            if isinstance(c, dict) and c.get("id") == target[1:]), None)
            else:
                med = record.medications.get(reference_key(target))
        if isinstance(med, dict):
            ingredients = [i.get("itemCodeableConcept") for i in as_list(med.get("ingredient"))
                           if isinstance(i, dict) and isinstance(i.get("itemCodeableConcept"), dict)]
            code = med.get("code") if isinstance(med.get("code"), dict) else None
            return code, ingredients
        if isinstance(ref.get("display"), str):
            return {"text": ref["display"]}, []
    return None, []


def _drug_classes(ingredients: Iterable[Ingredient], route: str | None, aspirin_mg_day: float | None,
                  aspirin_unit_mg: float | None) -> frozenset[str]:
    systemic = route is None or route in SYSTEMIC_ROUTES
    ings = list(ingredients)
    classes = set()
    for ing in ings:
        cls = ing.drug_class
        if cls == "gastroprotection":
            cls = "ppi" if ing.name.endswith("prazole") else ("misoprostol" if ing.name == "misoprostol" else "h2_blocker")
        elif cls == "interacting_other":
            cls = ing.name if ing.name in {"lithium", "methotrexate"} else cls
        elif cls == "nsaid" and not systemic:
            cls = "nsaid_non_systemic"
        elif cls == "systemic_corticosteroid" and not systemic:
            cls = "corticosteroid_non_systemic"
        elif cls == "antiplatelet_aspirin":
            # The clinical definitions: aspirin above 325 mg a day is an NSAID; at or below, an antiplatelet.
            dose = aspirin_mg_day if aspirin_mg_day is not None else aspirin_unit_mg
            if dose is not None and dose > 325 and systemic:
                cls = "nsaid"
        elif cls == "naloxone":
            # Only single-ingredient rescue products count, not buprenorphine/naloxone.
            if len(ings) > 1:
                continue
            cls = "naloxone_rescue"
        elif cls == "opioid_antagonist" and any(i.drug_class == "opioid" for i in ings):
            continue  # the sequestered naltrexone of abuse-deterrent morphine/oxycodone: not an antagonist
        classes.add(cls)
    if classes.intersection(CNS_ACTIVE):
        classes.add("cns_active")
    return frozenset(classes)


@dataclass(frozen=True)
class _Classified:
    rxcui: str | None
    name: str
    ingredients: tuple[Ingredient, ...]
    route: str | None
    er_la: bool
    by_name: bool


_CLASSIFIED: dict[tuple, _Classified] = {}  # the same drugs recur across records: classify each once


def _concept_key(concept: object) -> tuple:
    """What classification reads of a concept: its text and (system, code, display) codings."""
    if not isinstance(concept, dict):
        return ()
    text = concept.get("text") if isinstance(concept.get("text"), str) else None
    return (text,) + tuple((c.get("system"), c.get("code"), c.get("display")) for c in codings(concept)
                           if all(isinstance(c.get(k), (str, type(None))) for k in ("system", "code", "display")))


def _known_rxcui(T: Terminology, concept: object) -> str | None:
    """A known RxNorm code of the concept (clinical drug preferred to ingredient), read cheaply."""
    best = None
    for c in codings(concept):
        code = c.get("code")
        if isinstance(code, str) and code in T.drugs and normalise_system(c.get("system")) == RXNORM:
            if best is None or T.drugs[best].tty == "IN":
                best = code
    return best


def _classify(T: Terminology, concept: dict | None, ingredient_concepts: list[dict]) -> _Classified:
    rxcui = _known_rxcui(T, concept)
    key = ("rxnorm", rxcui) if rxcui else (_concept_key(concept), tuple(_concept_key(c) for c in ingredient_concepts))
    hit = _CLASSIFIED.get(key)
    if hit is not None:
        return hit
    entry = None
    for k in coded(concept):
        if k.system == RXNORM:
            candidate = T.drug(k.code)
            if candidate and (entry is None or (entry.tty == "IN" and candidate.tty != "IN")):
                entry = candidate
    if entry:
        result = _Classified(entry.rxcui, entry.name, entry.ingredients, entry.route, entry.er_la, False)
    else:
        text = " ".join(filter(None, [concept_text(concept)] + [concept_text(c) for c in ingredient_concepts]))
        ingredients: tuple[Ingredient, ...] = ()
        for c in ingredient_concepts:
            for k in coded(c):
                if k.system == RXNORM and T.drug(k.code):
                    ingredients += T.drug(k.code).ingredients
        by_name = False
        if not ingredients:
            ingredients = T.ingredients_in_text(text)
            by_name = bool(ingredients)
        name = markdown_text(concept.get("text") if isinstance(concept, dict) else None) \
            or next((k.display for k in coded(concept) if k.display), None) or markdown_text(text) \
            or "unnamed medication"
        rxcui = next((k.as_recorded for k in coded(concept) if k.system == RXNORM), None)
        result = _Classified(rxcui, name, tuple(ingredients), route_from_name(text), er_from_name(text), by_name)
    if len(_CLASSIFIED) > 50_000:
        _CLASSIFIED.clear()
    _CLASSIFIED[key] = result
    return result


def drug_of_order(resource: dict, ref: str) -> Drug | None:
    """A suggested MedicationRequest as a selected draft Drug, classified like any order."""
    from .terminology import load  # noqa: PLC0415 (the loader is cached)
    return drug_from_resource(load(), resource, PatientRecord(patient_id=""), ref, is_draft=True, selected=True)


def drug_from_resource(T: Terminology, res: dict, record: PatientRecord, ref: str, is_draft=False, selected=False) -> Drug | None:
    concept, ingredient_concepts = _medication_concept(res, record)
    if concept is None and not ingredient_concepts:
        return None
    c = _classify(T, concept, ingredient_concepts)
    if not c.ingredients:
        return None  # a drug the knowledge base does not know cannot fire or answer any rule
    ingredients, name, rxcui, route, er, by_name = c.ingredients, c.name, c.rxcui, c.route, c.er_la, c.by_name
    if route is None:
        for dosage in as_list(res.get("dosageInstruction", res.get("dosage"))):
            if isinstance(dosage, dict):
                route = route_from_name(concept_text(dosage.get("route")))
                if route:
                    break
    date = first_date(res, "authoredOn", "dateWritten", "effectiveDateTime", "effectivePeriod", "dateAsserted")
    drug = Drug(ref=ref, resource=res, name=name, rxcui=rxcui, ingredients=tuple(ingredients), route=route,
                er_la=er, by_name=by_name, classes=frozenset(), date=date, is_draft=is_draft, selected=selected,
                dstu2=res.get("resourceType") == "MedicationOrder")
    aspirin_day = drug.daily_mg("aspirin") if drug.has_ingredient("aspirin") else None
    aspirin_unit = drug.strength_mg("aspirin") if drug.has_ingredient("aspirin") else None
    drug.classes = _drug_classes(ingredients, route, aspirin_day, aspirin_unit)
    if _moud_product(drug):
        drug.classes = drug.classes | {"moud"}
    return drug


# The clinical definitions MOUD, product by product. The route column says "transmucosal" for sublingual and buccal
# alike, so the product name decides: buccal buprenorphine without naloxone (Belbuca) treats pain.
# A transmucosal buprenorphine whose name says neither is treated as MOUD: protecting a patient's OUD
# treatment from "stop" advice is the safer error (pain products are named buccal film).
_BUCCAL = re.compile(r"\b(buccal|belbuca)\b", re.I)
_BUP_IMPLANT_OR_ER = re.compile(r"\b(implant|probuphine|sublocade|brixadi|extended[- ]release)\b", re.I)
_BUP_ER_CONCENTRATION = re.compile(r"\b(\d+(?:\.\d+)?)\s*MG/ML\b", re.I)
_METHADONE_OUD_ONLY = re.compile(r"\b(tablet for oral suspension|dispersible|diskets)\b", re.I)


def _moud_product(drug: Drug) -> bool:
    names = [i.name for i in drug.ingredients]
    text = drug.name + " " + " ".join(concept_text(d.get("route")) for d in drug.dosages)
    if names == ["naltrexone"] and "opioid_antagonist" in drug.classes:
        return True  # oral or extended-release injection
    if "buprenorphine" in names:
        if "naloxone" in names:
            return True  # sublingual tablets and films, buccal film (Bunavail): all OUD products
        if drug.route == "transmucosal" or re.search(r"\bsublingual\b", text, re.I):
            return not _BUCCAL.search(text)
        if _BUP_IMPLANT_OR_ER.search(text):
            return True
        if drug.route == "injectable":
            # Extended-release injections are 50-356 mg/mL; the analgesic injection (Buprenex) is 0.3 mg/mL.
            m = _BUP_ER_CONCENTRATION.search(drug.name)
            return bool(m and float(m.group(1)) >= 50)
        if drug.route is None:
            # A name without a dose form ("buprenorphine 8 mg"): units of 2 mg or more exist only as OUD
            # products (pain products are micrograms: buccal film ≤ 0.9 mg, patches in mcg/h).
            unit = drug.strength_mg("buprenorphine")
            return unit is not None and unit >= 2
        return False
    return names == ["methadone"] and bool(_METHADONE_OUD_ONLY.search(drug.name))


def extended_release_injection(drug: Drug) -> bool:
    """A monthly/weekly MOUD injection: naltrexone or buprenorphine, injectable."""
    return drug.moud and drug.route == "injectable" and drug.has_ingredient("naltrexone", "buprenorphine")


def request_is_current(res: dict, today: dt.date) -> bool:
    if status_code(res.get("status")) not in CURRENT_REQUEST:
        return False
    end = request_end(res)
    return end is None or (today - end).days <= 7


def request_end(res: dict) -> dt.date | None:
    """When an order's validity or expected supply (with repeats) ends; None when it does not say."""
    dispense = res.get("dispenseRequest") if isinstance(res.get("dispenseRequest"), dict) else {}
    ends = []
    validity = dispense.get("validityPeriod")
    if isinstance(validity, dict) and parse_date(validity.get("end")):
        ends.append(parse_date(validity["end"]))
    start = period_start(validity) or parse_date(res.get("authoredOn") or res.get("dateWritten"))
    days = dosing.supply_days({"dispenseRequest": {"expectedSupplyDuration": dispense.get("expectedSupplyDuration")}}, None)
    if start and days is not None:
        repeats = dispense.get("numberOfRepeatsAllowed")
        repeats = repeats if isinstance(repeats, int) and repeats >= 0 else 0
        try:
            ends.append(start + dt.timedelta(days=days * (1 + repeats)))
        except OverflowError:
            pass  # a supply beyond the calendar: no end date
    return max(ends) if ends else None


def stale_since(res: dict, drug: Drug, today: dt.date, days: float) -> dt.date | None:
    """The clinical definitions "Possibly stale": the date the entry has been listed since, when it is that old."""
    if res.get("resourceType") == "MedicationStatement":
        dates = [d for d in (parse_date(res.get("effectiveDateTime")), period_start(res.get("effectivePeriod")),
                             parse_date((res.get("effectivePeriod") or {}).get("end")
                                        if isinstance(res.get("effectivePeriod"), dict) else None),
                             parse_date(res.get("dateAsserted"))) if d]
        if dates and (today - max(dates)).days > days:
            return min(dates)
        return None
    dispense = res.get("dispenseRequest") if isinstance(res.get("dispenseRequest"), dict) else {}
    validity = dispense.get("validityPeriod")
    if (isinstance(validity, dict) and parse_date(validity.get("end"))) or dispense.get("expectedSupplyDuration"):
        return None
    if drug.date and (today - drug.date).days > days:
        return drug.date
    return None


def statement_is_current(res: dict) -> bool:
    return status_code(res.get("status")) in CURRENT_STATEMENT


