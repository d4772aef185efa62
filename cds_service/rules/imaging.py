"""RULES.md §3.2 — imaging and procedures."""

from __future__ import annotations

from .. import orders
from ..facts import LOINC_PAIN, Facts
from . import OS, PV, Finding, bullets, ctx, rule
from .common import bp_text, imaging, regions_text, surgery_referral, surgery_referral_on_record, thoracic_note

CONSERVATIVE_CLASSES = ("nsaid", "skeletal_muscle_relaxant", "acetaminophen", "opioid", "gabapentinoid",
                        "snri", "tca")


@rule("imaging.avoid-early", title="Early spine imaging without red flags", hooks=(OS,),
      sources=("ACP-IMG2011", "ACR-LBP", "NICE-NG59"),
      trigger="a selected spine-imaging order while back pain is < PERSISTENT_WEEKS old, with no red flag at "
              "warning or critical and no thoracic differential at warning",
      levels=("warning",), suggests="remove the draft imaging order")
def avoid_early(f: Facts, found: dict) -> Finding | None:
    if not f.selected_imaging or not f.acute:
        return None
    if any(r.startswith("red-flag.") and x.indicator in {"warning", "critical"} for r, x in found.items()):
        return None
    if found.get("thoracic.differential") and found["thoracic.differential"].indicator == "warning":
        return None
    study = f.selected_imaging[0]
    weeks = f.params["PERSISTENT_WEEKS"]
    return Finding(
        "warning",
        f"Spine imaging at {f.duration_days} days without red flags: not recommended before {weeks:g} weeks",
        f"**Why:**\n{bullets([f'Selected order: {study.text or study.ref}', f'Back pain: {bp_text(f)} ({f.episode_text})', 'No red flag on record (cauda equina, infection, malignancy, fracture, neurological deficit)'])}"
        f"\n\n**Recommendation:** imaging in the first {weeks:g} weeks without red flags does not improve "
        "outcomes, finds incidental changes and leads to more procedures. Reassess at "
        f"{weeks:g}–6 weeks (this service uses {weeks:g} weeks; ACR 2021 says 6 weeks of optimal management)."
        f"{thoracic_note(f)}\n\n**Evidence:** strong recommendation, moderate-quality evidence (ACP 2011); "
        "ACR 2021 'usually not appropriate'.",
        [orders.remove_draft(study.ref, study.text or "spine imaging")],
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
    suggestions = imaging(f, study)
    if not suggestions:
        return None
    ct = " or ".join(f"CT {r} spine (LOINC {'30620-9' if r == 'lumbar' else '30597-9'})" for r in f.imaging_regions)
    facts = [f"{c.label}" for c in f.radic_conditions] + [f"{days // 7} weeks since onset"]
    facts += [f"prior spine surgery: {c.label}" for c in surgery]
    return Finding(
        "info",
        f"Radiculopathy for {days // 7} weeks: MRI {regions_text(f)} spine if intervention is considered",
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** MRI of the {regions_text(f)} spine without contrast "
        + ("(without and with contrast after spine surgery) " if surgery else "")
        + f"when symptoms persist and the patient is a candidate for injection or surgery. If MRI is "
        f"contraindicated: {ct}. The seed guidance uses 4 weeks; ACR 2021 asks for 6 weeks of optimal "
        f"management first.{thoracic_note(f)}\n\n**Evidence:** ACR 2021 'usually appropriate' for persistent "
        "radiculopathy in surgical or intervention candidates; NASS: MRI is the study of choice.",
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
    tried = f.on_record(*CONSERVATIVE_CLASSES, since=f.onset_date)
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
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** for persistent lumbar radicular pain, a "
        "transforaminal epidural steroid injection with a non-particulate steroid (dexamethasone) gives "
        "short-term relief. Transforaminal injection at T8–L2 carries a rare risk of spinal cord infarction "
        f"(FDA 2014).{thoracic}{hold}\n\n**Evidence:** moderate evidence for short-term benefit (NASS); NICE "
        "NG59 considers epidurals for acute, severe sciatica.",
        [orders.order_service("epidural_referral", ctx(f))],
    )


@rule("procedure.surgical-referral", title="Spine surgery referral", hooks=(PV,),
      sources=("NASS-LDH", "NICE-NG59", "JENSEN2019"),
      trigger="radiculopathy > 12 weeks with latest pain score ≥ 7 (≤ 30 days); or spinal stenosis > 12 weeks with "
              "neurogenic claudication or pain ≥ 7; and no spine surgery referral since onset",
      levels=("info",), suggests="spine surgery referral")
def surgical_referral(f: Facts, found: dict) -> Finding | None:
    if surgery_referral_on_record(f):
        return None
    pain = f.latest_lab(*LOINC_PAIN, within_days=30)
    severe = pain is not None and pain.value >= 7
    radic_days = f.days_since_onset(f.radic_conditions)
    stenosis = f.conditions_in("spinal_stenosis", include_indications=False)
    stenosis_days = f.days_since_onset(stenosis)
    facts = []
    if f.has_radic and radic_days is not None and radic_days > 84 and severe:
        facts = [c.label for c in f.radic_conditions] + [f"{radic_days // 7} weeks since onset"]
    elif stenosis and stenosis_days is not None and stenosis_days > 84 and (
            f.has("neurogenic_claudication") or severe):
        facts = [c.label for c in stenosis] + [f"{stenosis_days // 7} weeks since onset"]
    if not facts:
        return None
    if severe:
        facts.append(f"pain score {pain.value:g}/10 on {pain.date.isoformat()}")
    suggestions = surgery_referral(f)
    return Finding(
        "info",
        "Persistent disabling radicular or stenosis symptoms beyond 12 weeks: spine surgery referral",
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** refer for a surgical opinion; discectomy relieves "
        "radicular pain faster than continued conservative care, and decompression helps neurogenic "
        "claudication. Shared decision: outcomes converge by 1–2 years.\n\n**Evidence:** NASS: discectomy "
        "gives faster relief than medical care (Grade B); NICE NG59.",
        suggestions,
    )
