"""PatientRecord: the patient's FHIR resources for one hook call, from prefetch or the FHIR server.

Prefetch semantics (CDS Hooks 2.0 "Prefetch"):
- a key that is present is used as given;
- a missing key is fetched from fhirServer (with the fhirAuthorization token when given);
- a null key means "no data" and is never fetched;
- an OperationOutcome (or a Bundle holding only one) means that key failed: fetched again when a
  fhirServer is given, else unobtainable;
- a Bundle with a `next` link is completed from the fhirServer.
Only the keys still needed are fetched, concurrently, within one time budget. A required key that
cannot be had raises DataUnavailable (the HTTP layer answers 412).
"""

from __future__ import annotations

import logging
import re
import time
import weakref
from dataclasses import dataclass, field
from urllib.parse import quote

from .fhir_client import FhirClient, FhirFetchError, NotAwaited
from .fhir_json import reference_key

log = logging.getLogger(__name__)

_MISSING = object()


class DataUnavailable(Exception):
    def __init__(self, problems: dict[str, str]):
        self.problems = problems
        super().__init__("; ".join(f"{k}: {v}" for k, v in problems.items()))


@dataclass
class PatientRecord:
    patient_id: str
    patient: dict | None = None
    conditions: list[dict] = field(default_factory=list)
    medication_requests: list[dict] = field(default_factory=list)  # incl. DSTU2 MedicationOrder
    medication_statements: list[dict] = field(default_factory=list)
    observations: list[dict] = field(default_factory=list)
    procedures: list[dict] = field(default_factory=list)
    service_requests: list[dict] = field(default_factory=list)
    medications: dict[str, dict] = field(default_factory=dict)  # "Medication/id" -> Medication
    draft_orders: list[dict] = field(default_factory=list)
    selections: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # optional key -> why it is missing
    fetch_count: int = 0
    fetch_seconds: float = 0.0


_TYPE_TO_LIST = {
    "Condition": "conditions",
    "MedicationRequest": "medication_requests",
    "MedicationOrder": "medication_requests",
    "MedicationStatement": "medication_statements",
    "Observation": "observations",
    "Procedure": "procedures",
    "ServiceRequest": "service_requests",
    "ProcedureRequest": "service_requests",
}


FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


def is_failure(value: object) -> bool:
    """An OperationOutcome, or a Bundle whose only content is one, stands for a failed prefetch."""
    if not isinstance(value, dict):
        return True
    rtype = value.get("resourceType")
    if rtype == "OperationOutcome":
        return True
    if rtype == "Bundle":
        entries = value.get("entry")
        if isinstance(entries, list) and entries and all(
                isinstance(e, dict) and isinstance(e.get("resource"), dict)
                and e["resource"].get("resourceType") == "OperationOutcome" for e in entries):
            return True
    return not isinstance(rtype, str)


def has_next(bundle: dict) -> bool:
    links = bundle.get("link")
    return bundle.get("resourceType") == "Bundle" and isinstance(links, list) and any(
        isinstance(l, dict) and l.get("relation") == "next" for l in links)


def fill_template(template: str, context: dict) -> str:
    """Replace {{context.x}} tokens (root-level primitives only, per the spec), URL-encoded."""
    out = template
    for key, value in context.items():
        token = "{{context.%s}}" % key
        if token in out and isinstance(value, (str, int)):
            out = out.replace(token, quote(str(value), safe=""))
    return out


def _references_patient(resource: dict, patient_id: str) -> bool:
    """True unless the resource names a different subject/patient (no subject = the searched patient)."""
    ref_holder = resource.get("subject", resource.get("patient"))
    if ref_holder is None:
        return True
    if not isinstance(ref_holder, dict):
        return False
    ref = ref_holder.get("reference")
    if not isinstance(ref, str):
        return True  # identifier- or display-only reference: cannot tell, keep
    if ref == "Patient/" + patient_id:
        return True
    return reference_key(ref.rstrip("/")) == f"Patient/{patient_id}"


def _resources(value: dict):
    if value.get("resourceType") == "Bundle":
        entries = value.get("entry")
        for entry in entries if isinstance(entries, list) else []:  # "entry": 1.5 holds nothing
            if isinstance(entry, dict) and isinstance(entry.get("resource"), dict):
                yield entry["resource"]
    else:
        yield value


def load_record(*, request: dict, prefetch_templates: dict[str, str], required: frozenset[str],
                client: FhirClient, fhir_settings: dict) -> PatientRecord:
    context = request["context"]
    patient_id = context["patientId"]
    prefetch = request.get("prefetch") if isinstance(request.get("prefetch"), dict) else {}
    base = request.get("fhirServer")
    auth = request.get("fhirAuthorization")
    token = auth.get("access_token") if isinstance(auth, dict) else None

    values: dict[str, dict | None] = {}
    problems: dict[str, str] = {}
    jobs = {}
    budget = client.budget()
    for key, template in prefetch_templates.items():
        value = prefetch.get(key, _MISSING)
        if value is None:
            values[key] = None
            continue
        if value is not _MISSING and not is_failure(value):
            if has_next(value) and base:
                jobs[key] = (lambda v=value: client.continue_bundle(base, token, v, budget))
            elif has_next(value):
                problems[key] = "the prefetched search has more pages and no fhirServer was given"
            else:
                values[key] = value
            continue
        if not base:
            problems[key] = ("the EHR could not prefetch it and sent no fhirServer" if value is not _MISSING
                             else "not prefetched and no fhirServer was given")
            continue
        url = fill_template(template, context)
        jobs[key] = (lambda u=url: client.read(base, token, u, budget))

    started = time.monotonic()
    if any(k in required for k in problems):
        jobs = {}  # the answer is 412 already: nothing worth fetching
    if jobs:
        for key, result in client.run_all(jobs, budget, required).items():
            if isinstance(result, NotAwaited):
                continue  # the answer is 412 already, for the key that failed
            if isinstance(result, FhirFetchError):
                problems[key] = str(result)  # the same for every cause; the log says which
                log.warning("FHIR fetch failed", extra={"fields": {"key": key, "reason": result.reason}})
            else:
                values[key] = result
    record = PatientRecord(patient_id=patient_id, fetch_count=len(jobs),
                           fetch_seconds=time.monotonic() - started if jobs else 0.0)

    hard = {k: v for k, v in problems.items() if k in required}
    if hard:
        budget.release()
        raise DataUnavailable(hard)
    if jobs:  # the worker's byte allowance is held for as long as the fetched data lives
        weakref.finalize(record, budget.release)
    record.unavailable = {k: v for k, v in problems.items() if k not in required}

    seen: set[tuple[str, str]] = set()

    def add(resource: dict, is_draft: bool = False) -> None:
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            return
        rid = resource.get("id")
        if isinstance(rid, str):
            if (rtype, rid) in seen:
                return
            seen.add((rtype, rid))
        if rtype == "Medication":
            if isinstance(rid, str):
                record.medications[f"Medication/{rid}"] = resource
            return
        if rtype == "Patient":
            if rid in (None, patient_id) and record.patient is None:
                record.patient = resource
            return
        if not _references_patient(resource, patient_id):
            return  # another patient's data: ignored, and nothing is said about it
        if is_draft:
            record.draft_orders.append(resource)
            return
        target = _TYPE_TO_LIST.get(rtype)
        if target:
            getattr(record, target).append(resource)

    # Draft orders first, so a draft that also arrives through prefetch counts once, as the draft.
    # order-select names its selections; at order-sign every draft is being signed.
    drafts = context.get("draftOrders")
    if isinstance(drafts, dict):
        for resource in _resources(drafts):
            add(resource, is_draft=True)
        selections = context.get("selections")
        # A draft without a valid id cannot be named in a suggestion (delete needs its id): never selected.
        record.selections = ([s for s in selections if isinstance(s, str)] if isinstance(selections, list) else
                             [f"{r.get('resourceType')}/{r['id']}" for r in record.draft_orders
                              if isinstance(r.get("id"), str) and FHIR_ID.fullmatch(r["id"])])
    for key in prefetch_templates:
        value = values.get(key)
        if isinstance(value, dict):
            for resource in _resources(value):
                if isinstance(resource, dict):
                    add(resource)
    return record
