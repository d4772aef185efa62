"""The two CDS services as data (discovery entries and prefetch templates) and the pipeline that
answers a call: record → facts → rules → cards."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable

from . import knowledge, terminology
from .cards import BuiltCard, build_cards
from .config import Settings
from .engine import evaluate
from .facts import Facts, LOINC_EGFR, LOINC_PAIN, LOINC_PEG, LOINC_STARTBACK, LOINC_TEMPERATURE, build_facts
from .fhir_client import FhirClient
from .record import PatientRecord, load_record
from .rules import OS, PV, Finding

OBSERVATION_CODES = ",".join(f"http://loinc.org|{c}" for c in
                             (*LOINC_EGFR, LOINC_TEMPERATURE, *LOINC_PAIN, LOINC_STARTBACK, *LOINC_PEG))

# Prefetch keys and templates: only {{context.patientId}} is used, so every EHR can fill them.
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "conditions": "Condition?patient={{context.patientId}}",
    "medicationRequests": "MedicationRequest?patient={{context.patientId}}&_include=MedicationRequest:medication",
    "medicationStatements": "MedicationStatement?patient={{context.patientId}}"
                            "&_include=MedicationStatement:medication",
    "observations": f"Observation?patient={{{{context.patientId}}}}&code={OBSERVATION_CODES}",
    "procedures": "Procedure?patient={{context.patientId}}",
    "serviceRequests": "ServiceRequest?patient={{context.patientId}}",
}
# DESIGN.md: Patient, Conditions and medications are required (412 when unobtainable); the rest
# is optional and the rules that need it say what was missing. Sites can change the list.
REQUIRED = ("patient", "conditions", "medicationRequests", "medicationStatements")

USAGE = ("Prefetch keys: " + ", ".join(PREFETCH) + ". Patient, Condition, MedicationRequest and "
         "MedicationStatement are required (prefetched, or readable from fhirServer with the "
         "fhirAuthorization token: scopes patient/Patient.read, patient/Condition.read, "
         "patient/MedicationRequest.read, patient/MedicationStatement.read, patient/Observation.read, "
         "patient/Procedure.read, patient/ServiceRequest.read). Observations, Procedures and "
         "ServiceRequests are optional.")


@dataclass(frozen=True)
class HookProfile:
    """How one hook differs from the others: the one place hooks differ.

    `rules` names the catalogue hook whose rules apply (order-sign runs the order rules, with every
    draft being signed as a selected order); `evidence_notes` says whether evidence-only notes may
    be shown (never at signing, when the decision is made)."""
    hook: str
    rules: str
    evidence_notes: bool = True
    after: str | None = None  # the hook whose findings about the same draft are not shown again here


PROFILES = {p.hook: p for p in (HookProfile("patient-view", PV), HookProfile("order-select", OS),
                                HookProfile("order-sign", OS, evidence_notes=False, after="order-select"))}


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str

    @property
    def profile(self) -> HookProfile:
        return PROFILES[self.hook]

    def discovery(self) -> dict:
        return {"hook": self.hook, "id": self.id, "title": self.title, "description": self.description,
                "prefetch": dict(PREFETCH), "usageRequirements": USAGE}


SERVICES = {
    s.id: s for s in (
        Service("radiculopathy-patient-view", "patient-view",
                "Back pain with radiculopathy: red flags and care plan",
                "On chart open, for patients with thoracic (mid-back) or lumbar back pain with or without "
                "radiculopathy: red flags, imaging, first-, second- and third-line treatment and drug-safety "
                "warnings for current medications, with guideline sources."),
        Service("radiculopathy-order-select", "order-select",
                "Back pain with radiculopathy: order safety",
                "When an opioid, NSAID, muscle relaxant, gabapentinoid, antidepressant or spine imaging order "
                "is selected for a patient with back pain: interactions, renal, hepatic and age cautions, "
                "MME/day, early-imaging advice, with one-click alternatives."),
        Service("radiculopathy-order-sign", "order-sign",
                "Back pain with radiculopathy: order safety at signing",
                "When orders are signed for a patient with back pain: the order-select checks applied to every "
                "draft medication and spine imaging order being signed, pairs among the drafts included (an "
                "opioid, a benzodiazepine and a muscle relaxant together), one card per order."),
    )
}


def service_for_hook(hook: object) -> Service | None:
    """The service that answers a hook."""
    return next((s for s in SERVICES.values() if s.hook == hook), None)


def knowledge_version() -> dict:
    return {"terminology": dict(terminology.VERSION), "rules": knowledge.CATALOGUE_VERSION}


@dataclass
class Evaluation:
    record: PatientRecord
    cards: list[BuiltCard]
    facts: Facts | None = None


def evaluate_request(service: Service, request: dict, settings: Settings, client: FhirClient,
                     today: dt.date, screen: Callable[[list[Finding], Facts], list[Finding]] | None = None
                     ) -> Evaluation:
    """`screen` may withhold findings before they become cards (remembered overrides, overrides.py)."""
    required = frozenset(settings.prefetch.required)
    record = load_record(request=request, prefetch_templates=PREFETCH, required=required, client=client,
                         fhir_settings=settings.fhir)
    profile = service.profile
    facts = build_facts(record, terminology.load(), today=today, params=settings.params, hook=profile.rules)
    findings = evaluate(facts, profile.rules, settings)
    if screen is not None:
        findings = screen(findings, facts)
    cards = build_cards(findings, facts, profile.rules, merge=settings.merge_info,
                        evidence_alone=settings.evidence_alone, evidence_notes=profile.evidence_notes)
    return Evaluation(record, cards, facts)
