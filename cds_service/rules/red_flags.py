"""RULES.md §3.1 — red flags and the thoracic differential (patient-view; order-select only with
a selected spine-imaging, opioid, NSAID or muscle-relaxant order)."""

from __future__ import annotations

from .. import orders
from ..facts import LOINC_TEMPERATURE, Facts, unique
from . import OS, PV, Finding, bullets, ctx, rule
from .common import bp_text, imaging, imaging_on_record, regions_text, surgery_referral


def _mri_or_ct_since_onset(f: Facts) -> bool:
    return any(imaging_on_record(f, region, ("MR", "CT")) for region in f.imaging_regions)


@rule("red-flag.cauda-equina", title="Possible cauda equina syndrome", hooks=(PV, OS),
      sources=("NICE-NG59", "ACR-LBP", "JENSEN2019"), needs_bp=False,
      trigger="cauda equina syndrome recorded ≤ 30 days ago (even without back pain), or back pain with new "
              "bladder or bowel dysfunction ≤ 30 days ago",
      levels=("critical",), suggests="emergency MRI of the affected region; same-day spine surgery referral")
def cauda_equina(f: Facts, found: dict) -> Finding | None:
    ces = f.conditions_in("red_flag_cauda_equina", within_days=30)
    bladder = f.conditions_in("red_flag_bladder_bowel_dysfunction", within_days=30) if f.has_bp else []
    if not ces and not bladder:
        return None
    what = ces or bladder
    facts = [f"{c.label}, recorded {c.start.isoformat()}" for c in what]
    if bladder and not ces:
        facts.insert(0, f"Back pain: {bp_text(f)}")
    return Finding(
        "critical",
        "Possible cauda equina syndrome: emergency MRI and same-day spine surgery review",
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** treat as an emergency — check saddle sensation, "
        "bladder (post-void residual) and anal tone; emergency MRI and same-day spine surgery assessment. "
        "Delay worsens bladder, bowel and sexual outcomes.\n\n**Evidence:** consensus red flag (NICE NG59, "
        "ACR Appropriateness Criteria: MRI 'usually appropriate').",
        imaging(f, "mri_wo", regions=("lumbar",) if f.region == "lumbar" else None, priority="stat",
                within_days=1) + surgery_referral(f, priority="stat", same_day=True),
    )


@rule("red-flag.infection", title="Possible spinal infection", hooks=(PV, OS),
      sources=("ACR-LBP", "NICE-NG59", "ACP-IMG2011"),
      trigger="back pain with spinal infection (critical); or with fever ≤ 7 days (coded, or temperature ≥ "
              "FEVER_C), injection drug or stimulant use, or immunosuppression (warning; info once MRI/CT "
              "is on record for a risk factor alone)",
      levels=("critical", "warning", "info"), suggests="MRI without and with contrast (region); ESR and CRP")
def infection(f: Facts, found: dict) -> Finding | None:
    infection = f.conditions_in("red_flag_spinal_infection")
    fever_coded = f.conditions_in("red_flag_fever", within_days=7)
    temps = [t for t in f.labs.get(LOINC_TEMPERATURE, [])
             if (f.today - t.date).days <= 7 and t.value >= f.params["FEVER_C"]]
    risks = f.conditions_in("substance_use_opioid_stimulant", "red_flag_immunosuppression")
    if not (infection or fever_coded or temps or risks):
        return None
    facts = [c.label for c in infection] + [f"fever: {c.label}, {c.start.isoformat()}" for c in fever_coded]
    facts += [f"temperature {t.value:.1f} °C on {t.date.isoformat()}" for t in temps]
    facts += [f"risk factor: {c.label}" for c in risks]
    if infection:
        level = "critical"
        summary = "Spinal infection on record with back pain: MRI with contrast, ESR and CRP"
    elif fever_coded or temps:
        level = "warning"
        summary = "Back pain with recent fever: exclude spinal infection (MRI with contrast, ESR, CRP)"
    else:
        level = "info" if _mri_or_ct_since_onset(f) else "warning"
        summary = "Back pain with infection risk factors: ask about fever; consider ESR, CRP and MRI"
    labs = [orders.order_service("esr", ctx(f)), orders.order_service("crp", ctx(f))]
    answered = "\n\nSpine MRI or CT is already on record since onset: re-image only if the picture changes." \
        if level == "info" else ""
    return Finding(
        level, summary,
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** vertebral osteomyelitis, discitis and epidural "
        "abscess present with back pain and often without fever. Check ESR and CRP; MRI of the "
        f"{regions_text(f)} spine without and with contrast when infection is suspected.{answered}\n\n"
        "**Evidence:** red flag by consensus; MRI with contrast is the study of choice (ACR 2021).",
        imaging(f, "mri_w_wo", priority="urgent" if level == "critical" else None) + labs,
    )


@rule("red-flag.malignancy", title="Possible malignancy", hooks=(PV, OS),
      sources=("ACR-LBP", "NICE-NG234", "ACP-IMG2011"),
      trigger="back pain with known spine/bone metastases and radiculopathy or a neurological deficit "
              "(critical); or with metastases, active cancer, a history of cancer or unexplained weight loss "
              "(warning; info once MRI/CT is on record for history or weight loss alone)",
      levels=("critical", "warning", "info"),
      suggests="MRI without and with contrast (region; whole spine when bone metastases are known)")
def malignancy(f: Facts, found: dict) -> Finding | None:
    mets = f.conditions_in("red_flag_malignancy_bone_spine")
    active = f.conditions_in("active_malignancy")
    history = f.conditions_in("history_of_malignancy", "red_flag_weight_loss")
    if not (mets or active or history):
        return None
    deficit = f.conditions_in("neuro_deficit_critical", "neuro_deficit_motor")
    facts = [c.label for c in unique(mets + active + history)]
    if mets and (f.has_radic or deficit):
        level = "critical"
        summary = "Spinal metastases with radicular or neurological signs: whole-spine MRI within 24 hours"
        facts += [f"neurological: {c.label}" for c in (deficit or f.radic_conditions)]
    elif mets or active:
        level = "warning"
        summary = ("Known bone metastases and back pain: whole-spine MRI within a week" if mets else
                   "Active cancer and back pain: MRI with contrast to exclude spinal metastases")
    else:
        level = "info" if _mri_or_ct_since_onset(f) else "warning"
        summary = "History of cancer or weight loss with back pain: consider MRI with contrast"
    if mets:
        window = 1 if level == "critical" else 7
        note = ("Whole spine (cervical, thoracic and lumbar) per NICE NG234; add the cervical spine to this "
                "request.")
        suggestions = imaging(f, "mri_w_wo", regions=("thoracic", "lumbar"),
                              priority="stat" if level == "critical" else "urgent", within_days=window, note=note)
        advice = ("With known bone metastases image the whole spine: within 24 hours with neurological "
                  "symptoms, within a week for pain alone (NICE NG234). Consider urgent oncology input.")
    else:
        suggestions = imaging(f, "mri_w_wo")
        advice = (f"MRI of the {regions_text(f)} spine without and with contrast if cancer is suspected "
                  "(pain at night or at rest, no improvement after 4–6 weeks, age over 50).")
    answered = "\n\nSpine MRI or CT is already on record since onset." if level == "info" else ""
    return Finding(
        level, summary,
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** {advice}{answered}\n\n"
        "**Evidence:** a history of cancer is the strongest single red flag for spinal malignancy "
        "(ACP 2011; ACR 2021).",
        suggestions,
    )


@rule("red-flag.fracture", title="Possible vertebral fracture", hooks=(PV, OS),
      sources=("ACR-LBP", "ACP-IMG2011", "NICE-NG59"),
      trigger="back pain with osteoporosis or fracture risk, or a systemic corticosteroid ≥ 90 days "
              "(warning); or age ≥ FRACTURE_AGE with no spine imaging since onset (info)",
      levels=("warning", "info"), suggests="spine X-ray (region)")
def fracture(f: Facts, found: dict) -> Finding | None:
    risk = f.conditions_in("osteoporosis_fracture_risk", "long_term_systemic_steroid")
    steroids = [d for d in f.current_of("systemic_corticosteroid")
                if d.date and (f.today - d.date).days >= 90 and not d.is_draft]
    facts = [c.label for c in risk] + [f"{d.label} since {d.date.isoformat()}" for d in steroids]
    if facts:
        level = "warning"
        summary = "Back pain with osteoporosis or long-term steroids: spine X-ray for vertebral fracture"
    elif f.age is not None and f.age >= f.params["FRACTURE_AGE"] and not f.spine_imaging_since_onset():
        level = "info"
        facts = [f"age {f.age}"]
        summary = f"Age {f.age} with back pain: consider a spine X-ray for compression fracture"
    else:
        return None
    return Finding(
        level, summary,
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** plain radiographs of the {regions_text(f)} spine "
        "first; MRI if the X-ray is negative and suspicion remains or there are neurological signs.\n\n"
        "**Evidence:** X-ray is the initial study for suspected osteoporotic fracture (ACR 2021).",
        imaging(f, "xr"),
    )


@rule("red-flag.neuro-deficit", title="Progressive or severe neurological deficit", hooks=(PV, OS),
      sources=("ACR-LBP", "NICE-NG59", "NASS-LDH"),
      trigger="back pain with cord compression, myelopathy or paraplegia ≤ 90 days (critical), or foot drop or "
              "lower-limb monoplegia ≤ 90 days (warning)",
      levels=("critical", "warning"),
      suggests="critical: emergency MRI and same-day spine surgery referral; warning: MRI and spine surgery referral")
def neuro_deficit(f: Facts, found: dict) -> Finding | None:
    critical = f.conditions_in("neuro_deficit_critical", within_days=90, include_indications=False)
    motor = f.conditions_in("neuro_deficit_motor", within_days=90, include_indications=False)
    if not critical and not motor:
        return None
    facts = [f"{c.label}, {c.start.isoformat()}" for c in critical + motor]
    if critical:
        return Finding(
            "critical", "Cord compression or myelopathy with back pain: emergency MRI and same-day surgical review",
            f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** emergency MRI and same-day spine surgery "
            "assessment; do not wait for conservative treatment.\n\n**Evidence:** consensus red flag "
            "(NICE NG59; ACR 2021).",
            imaging(f, "mri_wo", priority="stat", within_days=1) + surgery_referral(f, priority="stat", same_day=True),
        )
    return Finding(
        "warning", "New motor deficit with back pain: MRI and spine surgery referral",
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** a new or progressive motor deficit (foot drop, "
        f"weakness) calls for MRI of the {regions_text(f)} spine and a spine surgery opinion.\n\n"
        "**Evidence:** consensus; early decompression may improve motor recovery (NASS).",
        imaging(f, "mri_wo", priority="urgent") + surgery_referral(f, priority="urgent"),
    )


@rule("thoracic.differential", title="Thoracic radicular pain: differential diagnosis", hooks=(PV,),
      sources=("ACR-LBP", "JENSEN2019", "NICE-NG234"),
      trigger="thoracic region (warning when age ≥ THORACIC_WARN_AGE or cancer active or in the history)",
      levels=("info", "warning"),
      suggests="MRI thoracic spine without contrast (only at warning level or when duration ≥ PERSISTENT_WEEKS)")
def thoracic_differential(f: Facts, found: dict) -> Finding | None:
    if f.region != "thoracic":
        return None
    cancer = f.conditions_in("active_malignancy", "history_of_malignancy")
    older = f.age is not None and f.age >= f.params["THORACIC_WARN_AGE"]
    level = "warning" if (older or cancer) else "info"
    known = f.conditions_in("thoracic_differential")
    facts = [f"Thoracic back pain: {bp_text(f)} ({f.episode_text})"]
    if older:
        facts.append(f"age {f.age}")
    facts += [f"cancer: {c.label}" for c in cancer]
    on_record = ("\n\nAlready on record: " + "; ".join(c.label for c in known) + ".") if known else ""
    suggestions = imaging(f, "mri_wo", regions=("thoracic",)) if (level == "warning" or f.persistent) else []
    return Finding(
        level,
        "Thoracic radicular pain: rule out zoster, diabetic radiculopathy, aortic, visceral and metastatic causes"
        if level == "info" else
        "Thoracic back pain at age ≥ 50 or with cancer: exclude metastases and visceral causes",
        f"**Why:**\n{bullets(facts)}\n\n**Recommendation:** thoracic radicular pain is less often discogenic "
        "than lumbar. Consider herpes zoster (rash may follow the pain), diabetic thoracic radiculopathy, "
        "aortic aneurysm or dissection, cardiac, pulmonary, gastrointestinal and renal causes, and spinal "
        f"metastases.{on_record}\n\n**Evidence:** expert opinion; thoracic evidence is sparse and largely "
        "extrapolated from lumbar studies.",
        suggestions,
    )
