"""Facts: the one place codes are looked up. Turns a PatientRecord into answers rules can ask for
(`facts.has("gi_bleed_ulcer")`, `facts.current_of("nsaid")`), following the clinical definitions.

Incoming FHIR is read as plain JSON, tolerantly: every accessor accepts wrong types and missing
fields, and one malformed resource only loses that resource.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Iterable

from .drugs import (NOT_GIVEN, Drug, drug_from_resource, extended_release_injection, request_is_current, stale_since,
                    statement_is_current)
from .fhir_json import (Coded, as_list, coded, concept_text, finite, first_date, markdown_text, parse_date,
                        period_start, raw_codes, reference_key, status_code)
from .record import PatientRecord
from .terminology import CPT, ICD10CM, LOINC, SNOMED, Terminology

BP_SETS = ("thoracic_radiculopathy", "thoracic_back_pain", "lumbar_lumbosacral_radiculopathy_sciatica",
           "radiculopathy_site_unspecified", "low_back_pain_nonspecific", "disc_disorder_without_radiculopathy",
           "spinal_stenosis", "neuro_deficit_critical")
RADIC_SETS = ("thoracic_radiculopathy", "lumbar_lumbosacral_radiculopathy_sciatica", "radiculopathy_site_unspecified")
LUMBAR_RADIC_SETS = ("lumbar_lumbosacral_radiculopathy_sciatica",)
ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}

LOINC_EGFR = ("98979-8", "62238-1", "33914-3", "48642-3", "48643-1")
LOINC_TEMPERATURE = "8310-5"
LOINC_PAIN = ("72514-3", "75893-8", "38208-5")  # 38208-5 "Pain severity - Reported" (Synthea uses it)
LOINC_STARTBACK = "91351-7"
LOINC_PEG = ("91147-9", "91148-7")

# Conditions kept at any clinical status (the clinical definitions "Overdose history and substance use", MOUD).
HISTORY_SETS = frozenset({"opioid_overdose_history", "substance_use_opioid_stimulant", "opioid_use_disorder"})



# -- tolerant readers ------------------------------------------------------------------------
def unique(items: list) -> list:
    """Keep the first of items that describe the same resource (a condition in two value sets)."""
    seen, out = set(), []
    for item in items:
        key = getattr(item, "id", None) or id(item)
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


# -- facts about single resources ---------------------------------------------------------
@dataclass
class ConditionFact:
    id: str | None
    valuesets: frozenset[str]
    codes: list[Coded]
    text: str
    onset: dt.date | None
    recorded: dt.date | None
    from_indication: bool = False

    @property
    def start(self) -> dt.date | None:
        return self.onset or self.recorded

    @property
    def label(self) -> str:
        """How the detail names it: 'Lumbar radiculopathy (SNOMED CT 128196005)'."""
        coded = self.codes[0] if self.codes else None
        name = self.text or (coded.display if coded else "") or "condition"
        if coded:
            system = {ICD10CM: "ICD-10-CM", SNOMED: "SNOMED CT"}.get(coded.system, coded.system)
            return f"{name} ({system} {coded.as_recorded or coded.code})"
        return name


@dataclass
class ProcedureFact:
    ref: str
    valuesets: frozenset[str]
    modality: str | None  # "MR", "CT", "XR" for imaging
    date: dt.date | None
    text: str
    codes: frozenset[str] = frozenset()  # the codes it carries (tells one study from another)


@dataclass
class Lab:
    code: str
    value: float
    comparator: str | None
    unit: str
    date: dt.date
    ref: str
    psychosocial: float | None = None  # STarT Back: the psychosocial subscore, when the record carries it

    def below(self, threshold: float) -> bool:
        # ">60" is not below 60; "<30" is below 30 and below 60.
        if self.comparator in {">", ">="}:
            return False
        if self.comparator == "<":
            return self.value <= threshold
        return self.value < threshold

    @property
    def shown(self) -> str:
        return f"{self.comparator or ''}{self.value:g}"


# -- the facts of one evaluation ------------------------------------------------------------
@dataclass
class Facts:
    today: dt.date
    params: dict[str, float]
    hook: str
    patient_id: str
    birth_date: dt.date | None
    conditions: list[ConditionFact]
    current: list[Drug]  # current medications (incl. unselected draft orders on order-select)
    selected: list[Drug]  # selected draft medication orders
    record_drugs: list[Drug]  # medications on record (any status but entered-in-error)
    procedures: list[ProcedureFact]
    selected_imaging: list[ProcedureFact]
    labs: dict[str, list[Lab]]
    unreadable_labs: list[tuple[str, str]]  # (LOINC code, description) of results that could not be read
    unavailable: dict[str, str]
    what_if: bool = False  # a copy made to check a suggested drug as if it were ordered
    terminology: Terminology | None = None  # the code lists these facts were classified with

    def as_if_ordered(self, ordered: list["Drug"], also_current: list["Drug"] = ()) -> "Facts":
        """These facts with `ordered` as the selected orders of an order-select call (and
        `also_current` taken as current): how a suggested drug is checked against every rule."""
        return replace(self, hook="order-select", selected=list(ordered), selected_imaging=[],
                       current=self.current + list(also_current), what_if=True)

    # -- opioid figures (computed once per evaluation; the rules only read them) ------------------
    @cached_property
    def mme_total(self):
        """MME/day over every current and draft opioid order, selected or not."""
        from . import mme  # noqa: PLC0415 (mme reads Drug from this module)
        return mme.total_mme(self.terminology, self.current_of("opioid") + self.selected_of("opioid"))

    @cached_property
    def opioid_tolerance(self):
        """Opioid tolerance by the FDA thresholds, from the current (not stale, not MOUD) opioids."""
        from . import mme  # noqa: PLC0415
        return mme.tolerance(self.terminology, self.current, self.record_drugs, self.today)

    def product_strength(self, drug: "Drug", ingredient: str) -> tuple[float, str] | None:
        """(strength, unit) of one ingredient per unit of the product (OMTK, else the drug name)."""
        from . import mme  # noqa: PLC0415
        return mme.product_strength(self.terminology, drug, ingredient)
    # Conditions of HISTORY_SETS at any clinical status (resolved, inactive, remission), not refuted.
    history_conditions: list[ConditionFact] = field(default_factory=list)

    # -- patient -----------------------------------------------------------------------------
    @cached_property
    def age(self) -> int | None:
        b = self.birth_date
        if not b:
            return None
        return self.today.year - b.year - ((self.today.month, self.today.day) < (b.month, b.day))

    @property
    def older_adult(self) -> bool:
        return self.age is not None and self.age >= self.params["OLDER_AGE"]

    # -- conditions --------------------------------------------------------------------------
    def conditions_in(self, *valuesets: str, within_days: int | None = None,
                      include_indications: bool = True) -> list[ConditionFact]:
        out = []
        for c in self.conditions:
            if not include_indications and c.from_indication:
                continue
            if not c.valuesets.intersection(valuesets):
                continue
            if within_days is not None:
                start = c.start
                if c.from_indication or start is None or (self.today - start).days > within_days:
                    continue
            out.append(c)
        return out

    def ever_recorded(self, *valuesets: str) -> list[ConditionFact]:
        """Conditions of the value sets at any clinical status and date, unless refuted or entered in
        error (the clinical definitions: an overdose that has resolved is still history). Only HISTORY_SETS."""
        return self.conditions_in(*valuesets, include_indications=False) + [
            c for c in self.history_conditions if c.valuesets.intersection(valuesets)]

    def has(self, *valuesets: str, within_days: int | None = None) -> bool:
        return bool(self.conditions_in(*valuesets, within_days=within_days))

    @cached_property
    def bp_conditions(self) -> list[ConditionFact]:
        # neuro_deficit_critical counts as back pain except for paraplegia (G82.2x).
        other_bp = set(BP_SETS) - {"neuro_deficit_critical"}
        return [c for c in self.conditions_in(*BP_SETS)
                if c.valuesets & other_bp or "paraplegia" not in c.valuesets]

    @property
    def has_bp(self) -> bool:
        return bool(self.bp_conditions)

    @cached_property
    def radic_conditions(self) -> list[ConditionFact]:
        return self.conditions_in(*RADIC_SETS)

    @property
    def has_radic(self) -> bool:
        return bool(self.radic_conditions)

    @staticmethod
    def _is_thoracic(c: ConditionFact) -> bool:
        return any(v.startswith("thoracic_") and v != "thoracic_differential" for v in c.valuesets) \
            or "thoracic_region" in c.valuesets

    @cached_property
    def region(self) -> str:
        return "thoracic" if any(self._is_thoracic(c) for c in self.bp_conditions) else "lumbar"

    @cached_property
    def imaging_regions(self) -> tuple[str, ...]:
        """Regions to image: both when radicular codes are in both regions."""
        thoracic = any(self._is_thoracic(c) for c in self.radic_conditions)
        lumbar = any(c.valuesets.intersection(LUMBAR_RADIC_SETS) and not self._is_thoracic(c)
                     for c in self.radic_conditions)
        if thoracic and lumbar:
            return ("thoracic", "lumbar")
        return (self.region,)

    @staticmethod
    def onset_of(conditions: list[ConditionFact]) -> tuple[dt.date | None, bool]:
        """(earliest onset, True when only a recorded date was available); indications have none."""
        dated = [c for c in conditions if not c.from_indication]
        onsets = [c.onset for c in dated if c.onset]
        if onsets:
            return min(onsets), False
        recorded = [c.recorded for c in dated if c.recorded]
        return (min(recorded), True) if recorded else (None, False)

    def days_since_onset(self, conditions: list[ConditionFact]) -> int | None:
        start = self.onset_of(conditions)[0]
        return (self.today - start).days if start else None

    @cached_property
    def onset(self) -> tuple[dt.date | None, bool]:
        """The episode: (start of the earliest back-pain condition, recorded-date-only flag)."""
        return self.onset_of(self.bp_conditions)

    @property
    def onset_date(self) -> dt.date | None:
        return self.onset[0]

    @cached_property
    def duration_days(self) -> int | None:
        start = self.onset_date
        return (self.today - start).days if start else None

    def duration_at_least_weeks(self, weeks: float) -> bool:
        return self.duration_days is not None and self.duration_days >= weeks * 7

    def duration_below_weeks(self, weeks: float) -> bool:
        return self.duration_days is not None and self.duration_days < weeks * 7

    @property
    def persistent(self) -> bool:
        return self.duration_at_least_weeks(self.params["PERSISTENT_WEEKS"])

    @property
    def acute(self) -> bool:
        return self.duration_below_weeks(self.params["PERSISTENT_WEEKS"])

    @property
    def chronic(self) -> bool:
        return self.duration_days is not None and self.duration_days > self.params["CHRONIC_WEEKS"] * 7

    @property
    def episode_text(self) -> str:
        """'onset 2026-01-05, 6 weeks ago' (or 'onset not recorded; recorded 2026-01-05 ...')."""
        start, recorded_only = self.onset
        if not start:
            return "onset unknown"
        weeks = self.duration_days // 7
        days = self.duration_days
        years = days // 365
        if years >= 2:  # "617 weeks ago" reads badly: long episodes in years
            ago = f"{years} years ago"
        elif days >= 14:
            ago = f"{weeks} week{'s' if weeks != 1 else ''} ago"
        else:
            ago = f"{days} day{'s' if days != 1 else ''} ago"
        if recorded_only:
            return f"onset not recorded; first recorded {start.isoformat()}, {ago}"
        return f"onset {start.isoformat()}, {ago}"

    # -- medications -------------------------------------------------------------------------
    def current_of(self, *classes: str, stale: bool = True) -> list[Drug]:
        """Current drugs of these classes; `stale=False` leaves out possibly stale list entries (they
        may add a finding, never fire a patient-view card alone or switch off a 'no current X' trigger)."""
        return [d for d in self.current if d.classes.intersection(classes) and (stale or not d.possibly_stale)]

    def selected_of(self, *classes: str) -> list[Drug]:
        return [d for d in self.selected if d.classes.intersection(classes)]

    def current_pain_opioids(self) -> list[Drug]:
        """Current non-MOUD opioids, not possibly stale (an old entry never makes a patient 'on opioids'
        or opioid tolerant, the clinical definitions)."""
        return [d for d in self.current_of("opioid", stale=False) if d.pain_opioid]

    def on_record(self, *classes: str, within_days: int | None = None,
                  since: dt.date | None = None) -> list[Drug]:
        out = []
        for d in self.record_drugs:
            if not d.classes.intersection(classes):
                continue
            if d.date is None:
                # Undated: counts only while it is a current medication.
                if any(c.ref == d.ref for c in self.current):
                    out.append(d)
                continue
            if within_days is not None and (self.today - d.date).days > within_days:
                continue
            if since is not None and d.date < since:
                continue
            out.append(d)
        return out

    def procedures_in(self, *valuesets: str, since: dt.date | None = None,
                      modalities: Iterable[str] | None = None, within_days: int | None = None) -> list[ProcedureFact]:
        mods = set(modalities) if modalities else None
        out = []
        for p in self.procedures:
            if not p.valuesets.intersection(valuesets):
                continue
            if mods is not None and p.modality not in mods:
                continue
            if since is not None and (p.date is None or p.date < since):
                continue
            if within_days is not None and (p.date is None or (self.today - p.date).days > within_days):
                continue
            out.append(p)
        return out

    def spine_imaging_since_onset(self, modalities: Iterable[str] | None = None) -> list[ProcedureFact]:
        return self.procedures_in("spine_imaging_lumbar", "spine_imaging_thoracic", "spine_imaging_any",
                                  since=self.onset_date, modalities=modalities)

    # -- labs --------------------------------------------------------------------------------
    def latest_lab(self, *codes: str, within_days: int | None = None) -> Lab | None:
        found = [lab for code in codes for lab in self.labs.get(code, [])
                 if within_days is None or (self.today - lab.date).days <= within_days]
        if not found:
            return None
        return max(found, key=lambda lab: lab.date)

    @cached_property
    def egfr(self) -> Lab | None:
        """Latest eGFR within the look-back; on the same date the race-free 98979-8 is preferred."""
        labs = [lab for code in LOINC_EGFR for lab in self.labs.get(code, [])
                if (self.today - lab.date).days <= self.params["LAB_LOOKBACK_DAYS"]]
        if not labs:
            return None
        return max(labs, key=lambda lab: (lab.date, lab.code == "98979-8"))

    def unreadable_note(self, *what: str) -> str:
        """Said in the card that needed the value: results of these kinds ("eGFR", "temperature",
        "pain" or LOINC codes) that were in the record but could not be read."""
        kinds = {"eGFR": LOINC_EGFR, "temperature": (LOINC_TEMPERATURE,), "pain": LOINC_PAIN}
        codes = {c for w in what for c in kinds.get(w, (w,))}
        items = [text for code, text in self.unreadable_labs if code in codes]
        return ("\n\nIn the record but not readable (ignored): " + "; ".join(items) + ".") if items else ""

    @property
    def egfr_unknown_reason(self) -> str | None:
        if self.egfr is not None:
            return None
        if "observations" in self.unavailable:
            return "the laboratory results could not be obtained"
        return None


# -- building Facts from a record -------------------------------------------------------------
def _in_sets(lookup, concept: object) -> bool:
    """Whether any coding of the concept is in a value set of `lookup` (a Terminology *_sets_raw)."""
    if not isinstance(concept, dict):
        return False
    coding = concept.get("coding")
    if isinstance(coding, dict):
        coding = [coding]
    return isinstance(coding, list) and any(
        isinstance(c, dict) and lookup(c.get("system"), c.get("code")) for c in coding)


def condition_is_active(res: dict) -> bool:
    verification = status_code(res.get("verificationStatus"))
    if verification in EXCLUDED_VERIFICATION:
        return False
    clinical = status_code(res.get("clinicalStatus"))
    if clinical is None:
        return not any(k.startswith("abatement") for k in res)
    return clinical in ACTIVE_CLINICAL


def _condition_fact(T: Terminology, res: dict, birth: dt.date | None, from_indication=False) -> ConditionFact | None:
    codes = coded(res.get("code"))
    sets: frozenset[str] = frozenset()
    for k in codes:
        sets = sets | T.condition_valuesets(k.system, k.code)
    if not sets:
        return None  # in no value set: no rule can use it
    onset = parse_date(res.get("onsetDateTime")) or period_start(res.get("onsetPeriod"))
    if onset is None and birth:
        onset = _onset_from_age(res.get("onsetAge"), birth)
    if onset is None:
        onset = parse_date(res.get("onsetString")) if isinstance(res.get("onsetString"), str) else None
    recorded = parse_date(res.get("recordedDate")) or parse_date(res.get("dateRecorded")) \
        or parse_date(res.get("assertedDate"))
    rid = res.get("id") if isinstance(res.get("id"), str) else None
    code = res.get("code") if isinstance(res.get("code"), dict) else {}
    return ConditionFact(rid, sets, codes, markdown_text(code.get("text")), onset, recorded, from_indication)


AGE_UNITS_PER_YEAR = {"a": 1, "mo": 12, "wk": 52.18, "d": 365.25}


def _onset_from_age(age: object, birth: dt.date) -> dt.date | None:
    """birthDate + onsetAge; None when the age is not a number of a known unit or gives no real date."""
    if not isinstance(age, dict) or not finite(age.get("value")):
        return None
    unit = age.get("code")
    per_year = AGE_UNITS_PER_YEAR.get(unit, 1) if isinstance(unit, str) else 1
    try:
        return birth + dt.timedelta(days=int(float(age["value"]) / per_year * 365.25))
    except (OverflowError, ValueError):
        return None  # an age of 1e300 years: no date


def _modality(valuesets: frozenset[str], codes: list[Coded], text: str, T: Terminology) -> str | None:
    if not any(v.startswith("spine_imaging") for v in valuesets):
        return None
    for k in codes:
        if k.system == CPT and k.code.isascii() and k.code.isdigit():
            n = int(k.code)
            if 72141 <= n <= 72158:
                return "MR"
            if 72125 <= n <= 72133:
                return "CT"
            return "XR"
    label = (text + " " + " ".join(k.display or T.procedure_display.get((k.system, k.code), "") for k in codes)).upper()
    for mod in ("MR", "CT", "XR"):
        if re.search(rf"\b{mod}I?\b", label):
            return mod
    return None


EXCLUDED_PROCEDURE = {"entered-in-error", "not-done"}
EXCLUDED_SERVICE_REQUEST = {"entered-in-error", "revoked", "draft"}


def build_facts(record: PatientRecord, T: Terminology, *, today: dt.date, params: dict[str, float],
                hook: str) -> Facts:
    patient = record.patient or {}
    birth = parse_date(patient.get("birthDate"))
    if birth and birth > today:
        birth = None  # a birth date after today cannot be read as an age

    conditions, history = [], []
    for res in record.conditions:
        if not _in_sets(T.condition_sets_raw, res.get("code")):
            continue  # cheap rejection first: most of a long problem list is in no value set
        if condition_is_active(res):
            fact = _condition_fact(T, res, birth)
            if fact and fact.valuesets:
                conditions.append(fact)
        elif status_code(res.get("verificationStatus")) not in EXCLUDED_VERIFICATION:
            fact = _condition_fact(T, res, birth)
            if fact and fact.valuesets.intersection(HISTORY_SETS):
                history.append(fact)

    # Draft orders: the selected ones are what the card is about; the others count as current.
    selected_refs = set(record.selections)
    selected: list[Drug] = []
    current: list[Drug] = []
    selected_imaging: list[ProcedureFact] = []
    for res in record.draft_orders:
        rtype, rid = res.get("resourceType"), res.get("id")
        ref = f"{rtype}/{rid}"
        is_selected = ref in selected_refs
        if rtype in {"MedicationRequest", "MedicationOrder"}:
            drug = drug_from_resource(T, res, record, ref, is_draft=True, selected=is_selected)
            if drug is not None:
                (selected if is_selected else current).append(drug)
            if is_selected:
                conditions.extend(_indications(T, res, record, birth))
        elif rtype in {"ServiceRequest", "ProcedureRequest"} and is_selected:
            fact = _procedure_fact(T, res, ref)
            if fact.valuesets:
                selected_imaging.append(fact)
            conditions.extend(_indications(T, res, record, birth))

    record_drugs: list[Drug] = []
    for res in record.medication_requests:
        ref = f"{res.get('resourceType')}/{res.get('id')}"
        drug = drug_from_resource(T, res, record, ref)
        if drug is None or status_code(res.get("status")) == "entered-in-error":
            continue
        record_drugs.append(drug)
        if request_is_current(res, today):
            current.append(drug)
    for res in record.medication_statements:
        ref = f"MedicationStatement/{res.get('id')}"
        drug = drug_from_resource(T, res, record, ref)
        if drug is None or status_code(res.get("status")) == "entered-in-error":
            continue
        record_drugs.append(drug)
        if statement_is_current(res):
            current.append(drug)
    stale_days = params.get("STALE_ORDER_DAYS", 400)
    for drug in current:
        if not drug.is_draft:
            drug.listed_since = stale_since(drug.resource, drug, today, stale_days)
            drug.possibly_stale = drug.listed_since is not None
    current += _recent_moud_injections(record_drugs, current, today)
    _mark_methadone_moud(T, current, conditions + history)

    procedures = []
    for res in record.procedures:
        if not _in_sets(T.procedure_sets_raw, res.get("code")):
            continue
        if status_code(res.get("status")) not in EXCLUDED_PROCEDURE:
            fact = _procedure_fact(T, res, f"Procedure/{res.get('id')}")
            if fact.valuesets:
                procedures.append(fact)
    for res in record.service_requests:
        if not _in_sets(T.procedure_sets_raw, res.get("code")):
            continue
        if status_code(res.get("status")) not in EXCLUDED_SERVICE_REQUEST:
            fact = _procedure_fact(T, res, f"ServiceRequest/{res.get('id')}")
            if fact.valuesets:
                procedures.append(fact)

    labs, unreadable = _labs(record.observations)
    return Facts(today=today, params=params, hook=hook, patient_id=record.patient_id, birth_date=birth,
                 conditions=conditions, current=current, selected=selected, record_drugs=record_drugs,
                 procedures=procedures, selected_imaging=selected_imaging, labs=labs,
                 unreadable_labs=unreadable, unavailable=dict(record.unavailable), history_conditions=history,
                 terminology=T)


MOUD_INJECTION_DAYS = 30  # The clinical definitions: an extended-release naltrexone/buprenorphine injection lasts a month


def _recent_moud_injections(record_drugs: list[Drug], current: list[Drug], today: dt.date) -> list[Drug]:
    """Extended-release MOUD injections dated within 30 days are current even when their order is
    completed: the drug is still in the body."""
    refs = {d.ref for d in current}
    return [d for d in record_drugs if d.ref not in refs and extended_release_injection(d) and d.date
            and 0 <= (today - d.date).days <= MOUD_INJECTION_DAYS
            and status_code(d.resource.get("status")) not in NOT_GIVEN]


def _mark_methadone_moud(T: Terminology, current: list[Drug], conditions: list[ConditionFact]) -> None:
    """The clinical definitions: a current (never a selected) methadone is MOUD while an opioid use disorder is on
    record at any status (remission included), or when its own reason code names one."""
    oud = next((c for c in conditions if "opioid_use_disorder" in c.valuesets and not c.from_indication), None)
    for drug in current:
        if drug.selected or drug.moud or drug.ingredients_names != ("methadone",):
            continue
        reason = ""
        if any("opioid_use_disorder" in T.condition_valuesets(k.system, k.code)
               for concept in as_list(drug.resource.get("reasonCode")) for k in coded(concept)):
            reason = "opioid use disorder as its reason"
        elif oud is not None:
            reason = "opioid use disorder on the problem list"
        if reason:
            drug.classes = drug.classes | {"moud"}
            drug.moud_reason = reason


def _indications(T: Terminology, order: dict, record: PatientRecord, birth) -> list[ConditionFact]:
    """An order's reasonCode / reasonReference that name a back-pain condition (no onset)."""
    out = []
    for concept in as_list(order.get("reasonCode")):
        fact = _condition_fact(T, {"code": concept}, birth, from_indication=True)
        if fact:
            out.append(fact)
    for ref in as_list(order.get("reasonReference")):
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(target, str):
            continue
        cond = None
        if target.startswith("#"):
            cond = next((c for c in as_list(order.get("contained")) if isinstance(c, dict)
                         and c.get("id") == target[1:]), None)
        else:
            key = reference_key(target)
            cond = next((c for c in record.conditions if f"Condition/{c.get('id')}" == key), None)
        if isinstance(cond, dict) and condition_is_active(cond):
            fact = _condition_fact(T, {"code": cond.get("code")}, birth, from_indication=True)
            if fact:
                out.append(fact)
    return out


def _procedure_fact(T: Terminology, res: dict, ref: str) -> ProcedureFact:
    codes = coded(res.get("code"))
    sets: frozenset[str] = frozenset()
    for k in codes:
        sets = sets | T.procedure_valuesets(k.system, k.code)
    code = res.get("code") if isinstance(res.get("code"), dict) else {}
    text = markdown_text(code.get("text")) or next((k.display for k in codes if k.display), "")
    date = first_date(res, "performedDateTime", "performedPeriod", "occurrenceDateTime", "occurrencePeriod",
                      "authoredOn", "performedString")
    # The ref stands in the detail when there is no text; an id of a selected draft is plain already.
    return ProcedureFact(markdown_text(ref), sets, _modality(sets, codes, text, T), date, text,
                         frozenset(k.code for k in codes))


_VALUE_STRING = re.compile(r"^\s*(<=|>=|<|>)?\s*(\d{1,9}(?:\.\d{1,9})?)\s*$", re.ASCII)


def _labs(observations: list[dict]) -> tuple[dict[str, list[Lab]], list[str]]:
    wanted = set(LOINC_EGFR) | {LOINC_TEMPERATURE, LOINC_STARTBACK, *LOINC_PAIN, *LOINC_PEG}
    labs: dict[str, list[Lab]] = {}
    unreadable: list[tuple[str, str]] = []  # (LOINC code, how the card names it)
    for res in observations:
        codes = [code for system, code in raw_codes(res.get("code")) if system == LOINC and code in wanted]
        if not codes or status_code(res.get("status")) in {"entered-in-error", "cancelled"}:
            continue
        date = first_date(res, "effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued")
        value = _observation_value(res)
        if value is None or date is None:
            unreadable.append((codes[0], f"{markdown_text(concept_text(res.get('code'))) or codes[0]} (LOINC "
                                         f"{codes[0]}, Observation/{markdown_text(str(res.get('id')))})"))
            continue
        number, comparator, unit = value
        if codes[0] == LOINC_TEMPERATURE:
            if unit.lower() in {"[degf]", "degf", "°f", "f"}:
                number, unit = (number - 32) * 5 / 9, "Cel"
            elif unit.lower() not in {"cel", "°c", "c", "degc"}:
                unreadable.append((codes[0], f"body temperature in an unknown unit (LOINC 8310-5, "
                                             f"Observation/{markdown_text(str(res.get('id')))})"))
                continue
        labs.setdefault(codes[0], []).append(
            Lab(codes[0], number, comparator, unit, date, f"Observation/{res.get('id')}",
                _psychosocial_subscore(res) if codes[0] == LOINC_STARTBACK else None))
    return labs, unreadable


def _psychosocial_subscore(res: dict) -> float | None:
    """The STarT Back psychosocial subscore from a component named so (coded or in text)."""
    for comp in as_list(res.get("component")):
        if isinstance(comp, dict) and "psychosocial" in concept_text(comp.get("code")).lower():
            value = _observation_value(comp)
            if value is not None:
                return value[0]
    return None


def _observation_value(res: dict) -> tuple[float, str | None, str] | None:
    q = res.get("valueQuantity")
    if isinstance(q, dict) and finite(q.get("value")):
        comparator = q.get("comparator") if isinstance(q.get("comparator"), str) else None
        unit = next((u for u in (q.get("code"), q.get("unit")) if isinstance(u, str) and u), "")
        return float(q["value"]), comparator if comparator in {"<", "<=", ">", ">="} else None, unit
    if isinstance(res.get("valueInteger"), int) and finite(res["valueInteger"]):
        return float(res["valueInteger"]), None, ""
    s = res.get("valueString")
    if isinstance(s, str):
        m = _VALUE_STRING.match(s)
        if m:
            return float(m.group(2)), m.group(1), ""
    return None
