"""The imaging rules — imaging and procedures."""

from __future__ import annotations

from dataclasses import replace

from .. import orders
from ..facts import LOINC_PAIN, Facts
from . import OS, PV, Finding, ctx, detail, rule
from .common import (bp_text, imaging, regions_text, surgery_referral, surgery_referral_on_record, thoracic_note,
                     thoracic_pain_explained_by)

PAIN_WINDOW_DAYS = 30  # a pain score counts for a month (part of the surgical-referral definition)
CONSERVATIVE_CLASSES = ("nsaid", "skeletal_muscle_relaxant", "acetaminophen", "opioid", "gabapentinoid",
                        "snri", "tca")


def _study_key(study) -> set[str]:
    """Suggestion keys that order the same study as a selected imaging order (modality and region)."""
    regions = [r for r in ("thoracic", "lumbar") if f"spine_imaging_{r}" in study.valuesets] or ["thoracic", "lumbar"]
    return {f"imaging:{study.modality}:{r}" for r in regions}


def _suggested_today(f: Facts, found: dict) -> set[str]:
    """Imaging the patient-view findings suggest for this patient today: the red flags (any level),
    the thoracic differential and persistent radiculopathy, as they would be without the drafted study
    (a card never suggests the study being ordered). Order-select never removes such a study."""
    from . import CATALOGUE  # noqa: PLC0415 (the rules are registered by now)
    chart = replace(f, selected_imaging=[])
    pv_found: dict = {}
    for entry in CATALOGUE:
        if entry.family in {"red-flag", "thoracic"} or entry.id == "imaging.persistent-radiculopathy":
            finding = entry.evaluate(chart, pv_found)
            if finding is not None:
                pv_found[entry.id] = finding
    return {s.key for x in pv_found.values() for s in x.suggestions}


def _red_flag_at_warning(found: dict) -> bool:
    return any(r.startswith("red-flag.") and x.indicator in {"warning", "critical"} for r, x in found.items())


@rule("imaging.avoid-early", title="Early spine imaging without red flags", hooks=(OS,),
      sources=("ACP-IMG2011", "ACR-LBP", "NICE-NG59"),
      trigger="a selected spine-imaging order while back pain is < PERSISTENT_WEEKS old, with no red flag at "
              "warning or critical, unless a patient-view finding suggests that study today",
      levels=("warning",), suggests="remove the draft imaging order")
def avoid_early(f: Facts, found: dict) -> Finding | None:
    if not f.selected_imaging or not f.acute or _red_flag_at_warning(found):
        return None
    today = _suggested_today(f, found)
    studies = [p for p in f.selected_imaging if not _study_key(p) & today]
    if not studies:
        return None
    study = studies[0]
    weeks = f.params["PERSISTENT_WEEKS"]
    return Finding(
        "warning",
        f"Spine imaging at {f.duration_days} days without red flags: not recommended before {weeks:g} weeks",
        detail([f"Selected order: {study.text or study.ref}", f"Back pain: {bp_text(f)} ({f.episode_text})",
                "No red flag on record (cauda equina, infection, malignancy, fracture, neurological deficit)"],
               f"imaging in the first {weeks:g} weeks without red flags does not improve outcomes, finds incidental "
               f"changes and leads to more procedures. Reassess at {weeks:g}–6 weeks (this service uses {weeks:g} "
               f"weeks; ACR 2021 says 6 weeks of optimal management).{thoracic_note(f)}",
               "ACP: imaging for low back pain (2011) — strong recommendation, moderate-quality evidence; ACR 2021 "
               "'usually not appropriate'."),
        [orders.remove_draft(study.ref, study.text or "spine imaging")], about=(study.ref,),
    )


@rule("imaging.persistent-radiculopathy", title="Persistent radiculopathy: MRI", hooks=(PV,),
      sources=("ACR-LBP", "NASS-LDH", "NICE-NG59"),
      trigger="radiculopathy ≥ PERSISTENT_WEEKS, no red flag already suggesting MRI, no spine MRI/CT since onset",
      levels=("info",),
      suggests="MRI without contrast (region); CT if MRI is contraindicated; with and without contrast after "
               "spine surgery")
def persistent_radiculopathy(f: Facts, found: dict) -> Finding | None:
    days = f.days_since_onset(f.radic_conditions)
    if not f.has_radic or days is None or days < f.params["PERSISTENT_WEEKS"] * 7:
        return None
    for rule_id, finding in found.items():
        if rule_id.startswith("red-flag.") and rule_id != "red-flag.fracture" and any(
                s.key.startswith("imaging:MR") for s in finding.suggestions):
            return None
    if f.spine_imaging_since_onset(modalities=("MR", "CT")):
        return None
    surgery = f.conditions_in("prior_spine_surgery")
    study = "mri_w_wo" if surgery else "mri_wo"
    explained = thoracic_pain_explained_by(f)
    regions = tuple(r for r in f.imaging_regions if not (explained and r == "thoracic"))
    suggestions = imaging(f, study, regions=regions) if regions else []
    if not suggestions:
        return None
    ct = " or ".join(f"CT {r} spine (LOINC {'30620-9' if r == 'lumbar' else '30597-9'})" for r in f.imaging_regions)
    facts = [f"{c.label}" for c in f.radic_conditions] + [f"{days // 7} weeks since onset"]
    facts += [f"prior spine surgery: {c.label}" for c in surgery]
    return Finding(
        "info",
        f"Radiculopathy for {days // 7} weeks: MRI {regions_text(f)} spine if intervention is considered",
        detail(facts, f"MRI of the {regions_text(f)} spine without contrast "
               + ("(without and with contrast after spine surgery) " if surgery else "")
               + f"when symptoms persist and the patient is a candidate for injection or surgery. If MRI is "
               f"contraindicated: {ct}. The seed guidance uses {f.params['PERSISTENT_WEEKS']:g} weeks; ACR 2021 asks "
               f"for 6 weeks of optimal management first.{thoracic_note(f)}",
               "ACR Appropriateness Criteria (2021): 'usually appropriate' for persistent radiculopathy in surgical "
               "or intervention candidates; NASS: MRI is the study of choice."),
        suggestions,
    )


@rule("procedure.epidural-referral", title="Epidural steroid injection referral", hooks=(PV,),
      sources=("NASS-LDH", "NICE-NG59", "FDA-ESI"),
      trigger="radiculopathy ≥ PERSISTENT_WEEKS after conservative treatment on record since onset, and no "
              "epidural injection or spine surgery referral on record since onset",
      levels=("info",), suggests="referral for epidural steroid injection")
def epidural_referral(f: Facts, found: dict) -> Finding | None:
    days = f.days_since_onset(f.radic_conditions)
    if not f.has_radic or days is None or days < f.params["PERSISTENT_WEEKS"] * 7:
        return None
    tried = [d for d in f.on_record(*CONSERVATIVE_CLASSES, since=f.onset_date) if not d.moud]  # MOUD is no pain trial
    therapies = f.procedures_in("nonpharm_procedures", since=f.onset_date)
    if not tried and not therapies:
        return None
    if f.procedures_in("epidural_injection", since=f.onset_date) or surgery_referral_on_record(f):
        return None
    facts = [c.label for c in f.radic_conditions] + [f"{days // 7} weeks since onset"]
    facts += [f"tried: {d.label}" for d in tried[:3]] + [f"tried: {p.text or p.ref}" for p in therapies[:2]]
    blood_thinners = f.current_of("anticoagulant", "antiplatelet_p2y12", "antiplatelet_aspirin")
    hold = ("\n\n**Current anticoagulant/antiplatelet:** " + "; ".join(d.label for d in blood_thinners)
            + " — hold or continue per pain-procedure (ASRA) guidance, with the prescriber.") if blood_thinners else ""
    thoracic = (" Thoracic epidural evidence is sparse; the benefit is extrapolated from lumbar trials."
                if f.region == "thoracic" else "")
    return Finding(
        "info",
        f"Radicular pain {days // 7} weeks despite treatment: consider epidural steroid injection referral",
        detail(facts, "for persistent lumbar radicular pain, a transforaminal epidural steroid injection with a "
               "non-particulate steroid (dexamethasone) gives short-term relief. Transforaminal injection at T8–L2 "
               f"carries a rare risk of spinal cord infarction (FDA 2014).{thoracic}{hold}",
               "NASS guideline: moderate evidence for short-term benefit; NICE NG59 considers epidurals for acute, "
               "severe sciatica."),
        [orders.order_service("epidural_referral", ctx(f))],
    )


@rule("procedure.surgical-referral", title="Spine surgery referral", hooks=(PV,),
      sources=("NASS-LDH", "NICE-NG59", "JENSEN2019"),
      trigger="radiculopathy > CHRONIC_WEEKS with latest pain score ≥ SEVERE_PAIN (≤ 30 days); or spinal stenosis > "
              "CHRONIC_WEEKS with neurogenic claudication or pain ≥ SEVERE_PAIN; and no spine surgery referral "
              "since onset",
      levels=("info",), suggests="spine surgery referral")
def surgical_referral(f: Facts, found: dict) -> Finding | None:
    if surgery_referral_on_record(f):
        return None
    pain = f.latest_lab(*LOINC_PAIN, within_days=PAIN_WINDOW_DAYS)
    severe = pain is not None and pain.value >= f.params["SEVERE_PAIN"]
    chronic_days = f.params["CHRONIC_WEEKS"] * 7
    radic_days = f.days_since_onset(f.radic_conditions)
    stenosis = f.conditions_in("spinal_stenosis", include_indications=False)
    stenosis_days = f.days_since_onset(stenosis)
    facts, radicular = [], False
    if f.has_radic and radic_days is not None and radic_days > chronic_days and severe:
        facts, radicular = [c.label for c in f.radic_conditions] + [f"{radic_days // 7} weeks since onset"], True
    elif stenosis and stenosis_days is not None and stenosis_days > chronic_days and (
            f.has("neurogenic_claudication") or severe):
        facts = [c.label for c in stenosis] + [f"{stenosis_days // 7} weeks since onset"]
    if not facts:
        return None
    if severe:
        facts.append(f"pain score {pain.value:g}/10 on {pain.date.isoformat()}")
    weeks = f"{f.params['CHRONIC_WEEKS']:g} weeks"
    if radicular:
        return Finding(
            "info", f"Persistent disabling radicular pain beyond {weeks}: spine surgery referral",
            detail(facts, "refer for a surgical opinion; discectomy relieves radicular pain faster than continued "
                   f"conservative care. Shared decision: outcomes converge by 1–2 years.{f.unreadable_note('pain')}",
                   "NASS guideline: lumbar disc herniation with radiculopathy — discectomy gives faster relief than "
                   "medical care (Grade B); NICE NG59."),
            surgery_referral(f))
    return Finding(
        "info", f"Spinal stenosis with neurogenic claudication or severe pain beyond {weeks}: spine surgery referral",
        detail(facts, "refer for a surgical opinion on decompression when claudication or pain limits walking "
               "despite conservative care; a shared decision, as symptoms can stay stable for years."
               f"{f.unreadable_note('pain')}",
               "NICE NG59: consider spinal decompression for spinal stenosis when non-surgical treatment has "
               "not helped."),
        surgery_referral(f), sources=("NICE-NG59", "JENSEN2019"))


@rule("imaging.nonspecific", title="Spine MRI or CT for non-specific back pain", hooks=(OS,),
      sources=("ACP-IMG2011", "ACR-LBP", "NICE-NG59"),
      trigger="a selected spine MRI or CT for back pain ≥ PERSISTENT_WEEKS without radiculopathy, spinal stenosis, "
              "prior spine surgery or a red flag at warning or critical, and no management on record since onset "
              "(NSAID, muscle relaxant, other analgesic or non-drug therapy)",
      levels=("warning",), suggests="remove the draft imaging order; physical therapy referral")
def nonspecific(f: Facts, found: dict) -> Finding | None:
    studies = [p for p in f.selected_imaging if p.modality in {"MR", "CT"}]
    if not studies or not f.persistent or f.has_radic or _red_flag_at_warning(found):
        return None
    if f.conditions_in("spinal_stenosis", "prior_spine_surgery"):
        return None
    if f.on_record(*CONSERVATIVE_CLASSES, since=f.onset_date) or f.procedures_in("nonpharm_procedures",
                                                                                  since=f.onset_date):
        return None
    today = _suggested_today(f, found)
    studies = [p for p in studies if not _study_key(p) & today]
    if not studies:
        return None
    study = studies[0]
    return Finding(
        "warning",
        "Spine MRI/CT for non-specific back pain with no treatment yet: manage first, image if it persists",
        detail([f"Selected order: {study.text or study.ref}", f"Back pain: {bp_text(f)} ({f.episode_text})",
                "no radiculopathy, spinal stenosis, prior spine surgery or red flag on record",
                "no NSAID, muscle relaxant, other analgesic or physical therapy on record since onset"],
               "routine imaging of non-specific back pain does not improve outcomes at any duration. MRI is for "
               "symptoms that persist after about 6 weeks of management in a candidate for intervention; disc "
               "bulges without nerve-root compression are common and non-specific.",
               "ACP: imaging for low back pain (2011) — routine imaging does not improve outcomes; ACR 2021."),
        [orders.remove_draft(study.ref, study.text or "spine imaging"),
         orders.order_service("physical_therapy", ctx(f), recommended=False)],
        selection="any", about=(study.ref,),
    )
