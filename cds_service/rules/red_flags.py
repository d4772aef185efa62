"""The red-flag rules — red flags and the thoracic differential (patient-view; order-select only with
a selected spine-imaging, opioid, NSAID or muscle-relaxant order)."""

from __future__ import annotations

from .. import orders
from ..facts import LOINC_TEMPERATURE, Facts, unique
from . import OS, PV, Finding, ctx, detail, rule
from .common import (bp_text, explained_text, imaging, imaging_on_record, regions_text, surgery_referral,
                     thoracic_pain_explained_by)


FEVER_WINDOW_DAYS = 7  # fever counts for a week (part of red-flag.infection's definition)
NEW_EPISODE_WEEKS = 12  # fracture red flags are for an episode that began this recently


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
        detail(facts, "treat as an emergency — check saddle sensation, bladder (post-void residual) and anal tone; "
               "emergency MRI and same-day spine surgery assessment. Delay worsens bladder, bowel and sexual "
               "outcomes.", "NICE NG59: consensus red flag; ACR Appropriateness Criteria: MRI 'usually appropriate'."),
        imaging(f, "mri_wo", regions=("lumbar",) if f.region == "lumbar" else None, priority="stat",
                within_days=1) + surgery_referral(f, priority="stat", same_day=True),
    )


@rule("red-flag.infection", title="Possible spinal infection", hooks=(PV, OS),
      sources=("ACR-LBP", "NICE-NG59", "ACP-IMG2011"),
      trigger="back pain with spinal infection (critical); or with fever ≤ 7 days (coded, or temperature ≥ "
              "FEVER_C), immunosuppression or a current systemic immunosuppressant drug (warning; info once MRI/CT "
              "is on record for immunosuppression alone). Substance use alone does not fire it",
      levels=("critical", "warning", "info"), suggests="MRI without and with contrast (region); ESR and CRP")
def infection(f: Facts, found: dict) -> Finding | None:
    infection = f.conditions_in("red_flag_spinal_infection")
    fever_coded = f.conditions_in("red_flag_fever", within_days=FEVER_WINDOW_DAYS)
    temps = [t for t in f.labs.get(LOINC_TEMPERATURE, [])
             if (f.today - t.date).days <= FEVER_WINDOW_DAYS and t.value >= f.params["FEVER_C"]]
    immune = f.conditions_in("red_flag_immunosuppression")
    drugs = [d for d in f.current_of("immunosuppressant") if d.systemic and not d.is_draft]
    fever = bool(fever_coded or temps)
    if not (infection or fever or immune or drugs):
        return None
    facts = [c.label for c in infection] + [f"fever: {c.label}, {c.start.isoformat()}" for c in fever_coded]
    facts += [f"temperature {t.value:.1f} °C on {t.date.isoformat()}" for t in temps]
    facts += [f"risk factor: {c.label}" for c in immune] + [f"immunosuppressant: {d.label}" for d in drugs]
    substance = f.conditions_in("substance_use_opioid_stimulant")
    if substance and (infection or fever):
        facts += [f"{c.label}: injection drug use raises the risk — ask" for c in substance]
    if infection:
        level = "critical"
        summary = "Spinal infection on record with back pain: MRI with contrast, ESR and CRP"
    elif fever:
        level = "warning"
        summary = "Back pain with recent fever: exclude spinal infection (MRI with contrast, ESR, CRP)"
    else:
        level = "info" if _mri_or_ct_since_onset(f) else "warning"
        summary = "Back pain with immunosuppression: ask about fever; consider ESR, CRP and MRI"
    labs = [orders.order_service("esr", ctx(f)), orders.order_service("crp", ctx(f))]
    answered = "\n\nSpine MRI or CT is already on record since onset: re-image only if the picture changes." \
        if level == "info" else ""
    answered += f.unreadable_note("temperature")
    return Finding(
        level, summary,
        detail(facts, "vertebral osteomyelitis, discitis and epidural abscess present with back pain and often "
               f"without fever. Check ESR and CRP; MRI of the {regions_text(f)} spine without and with contrast "
               f"when infection is suspected.{answered}",
               "ACR Appropriateness Criteria: Low Back Pain (2021) — MRI without and with contrast is the study "
               "of choice for suspected infection; red flag by consensus."),
        imaging(f, "mri_w_wo", priority="urgent" if level == "critical" else None) + labs,
        urgent=fever,
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
        note = "Whole spine (cervical, thoracic and lumbar) per NICE NG234."
        suggestions = imaging(f, "mri_w_wo", regions=("cervical", "thoracic", "lumbar"),
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
        detail(facts, f"{advice}{answered}", "ACR Appropriateness Criteria: Low Back Pain (2021); a history of "
               "cancer is the strongest single red flag for spinal malignancy (ACP 2011)."),
        suggestions, urgent=level == "warning" and bool(mets or active),
    )


@rule("red-flag.fracture", title="Possible vertebral fracture", hooks=(PV, OS),
      sources=("ACR-LBP", "ACP-IMG2011", "NICE-NG59"),
      trigger="a new episode (the latest back-pain condition began ≤ 12 weeks ago) with no spine imaging since: "
              "osteoporosis or fracture risk, or a systemic corticosteroid ≥ 90 days (warning); age ≥ FRACTURE_AGE "
              "alone (info)",
      levels=("warning", "info"), suggests="spine X-ray (region)")
def fracture(f: Facts, found: dict) -> Finding | None:
    starts = [c.start for c in f.bp_conditions if c.start and not c.from_indication]
    episode = max(starts) if starts else None
    if episode is None or (f.today - episode).days > NEW_EPISODE_WEEKS * 7:
        return None  # fracture red flags are for a new episode, not back pain that has been chronic for years
    if f.procedures_in("spine_imaging_lumbar", "spine_imaging_thoracic", "spine_imaging_any", since=episode):
        return None
    risk = f.conditions_in("osteoporosis_fracture_risk", "long_term_systemic_steroid")
    steroids = [d for d in f.current_of("systemic_corticosteroid")
                if d.date and (f.today - d.date).days >= 90 and not d.is_draft]
    facts = [c.label for c in risk] + [f"{d.label} since {d.date.isoformat()}" for d in steroids]
    if facts:
        level = "warning"
        summary = "New back pain with osteoporosis or long-term steroids: spine X-ray for vertebral fracture"
    elif f.age is not None and f.age >= f.params["FRACTURE_AGE"]:
        level = "info"
        facts = [f"age {f.age} (≥ {f.params['FRACTURE_AGE']:g})"]
        summary = f"Age {f.age} with new back pain: consider a spine X-ray for compression fracture"
    else:
        return None
    facts.insert(0, f"back pain episode began {episode.isoformat()}")
    return Finding(
        level, summary,
        detail(facts, f"plain radiographs of the {regions_text(f)} spine first; MRI if the X-ray is negative and "
               "suspicion remains or there are neurological signs.",
               "ACR Appropriateness Criteria: Low Back Pain (2021) — X-ray is the initial study for suspected "
               "osteoporotic fracture."),
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
            detail(facts, "emergency MRI and same-day spine surgery assessment; do not wait for conservative "
                   "treatment.", "ACR Appropriateness Criteria (2021) and NICE NG59: consensus red flag."),
            imaging(f, "mri_wo", priority="stat", within_days=1) + surgery_referral(f, priority="stat", same_day=True),
        )
    return Finding(
        "warning", "New motor deficit with back pain: MRI and spine surgery referral",
        detail(facts, f"a new or progressive motor deficit (foot drop, weakness) calls for MRI of the "
               f"{regions_text(f)} spine and a spine surgery opinion.",
               "ACR Appropriateness Criteria (2021) and NICE NG59: consensus red flag; early decompression may "
               "improve motor recovery (NASS)."),
        imaging(f, "mri_wo", priority="urgent") + surgery_referral(f, priority="urgent"),
        urgent=True,
    )


@rule("thoracic.differential", title="Thoracic radicular pain: differential diagnosis", hooks=(PV,),
      sources=("ACR-LBP", "JENSEN2019", "NICE-NG234"),
      trigger="thoracic region; age ≥ THORACIC_WARN_AGE and a cancer history are named as reasons for a low "
              "threshold (a cancer itself is red-flag.malignancy's card)",
      levels=("info",),
      suggests="MRI thoracic spine without contrast when back pain ≥ PERSISTENT_WEEKS, no red flag suggests an MRI, "
               "no spine MRI/CT since onset and no recent differential diagnosis explains the pain")
def thoracic_differential(f: Facts, found: dict) -> Finding | None:
    if f.region != "thoracic":
        return None
    facts = [f"Thoracic back pain: {bp_text(f)} ({f.episode_text})"]
    low_threshold = []
    if f.age is not None and f.age >= f.params["THORACIC_WARN_AGE"]:
        low_threshold.append(f"age {f.age}")
    low_threshold += [f"cancer: {c.label}" for c in f.conditions_in("active_malignancy", "history_of_malignancy")]
    known = f.conditions_in("thoracic_differential")
    explained = thoracic_pain_explained_by(f)
    red_flag_mri = any(r.startswith("red-flag.") and any(s.key.startswith("imaging:MR") for s in x.suggestions)
                       for r, x in found.items())
    suggestions = []
    if f.persistent and not explained and not red_flag_mri and not _mri_or_ct_since_onset(f):
        suggestions = imaging(f, "mri_wo", regions=("thoracic",))
    notes = ""
    if explained:
        text = explained_text(explained)
        notes += f"\n\n{text[0].upper()}{text[1:]}: no imaging suggested."
    elif known:
        notes += "\n\nAlready on record: " + "; ".join(c.label for c in known) + "."
    if low_threshold and not explained:
        notes += ("\n\nLow threshold for imaging: " + "; ".join(low_threshold) +
                  " (metastases are more common in thoracic than in lumbar pain).")
    if not f.persistent and not explained:
        notes += (f"\n\nNo MRI before {f.params['PERSISTENT_WEEKS']:g} weeks without a red flag: the order-select "
                  "service would advise against the same study.")
    if explained:
        name = explained_text(explained).split(" (")[0].removeprefix("likely explained by ")
        summary = f"Thoracic pain likely explained by {name}: no spine imaging suggested"
    elif f.has_radic:
        summary = "Thoracic radicular pain: rule out zoster, diabetic radiculopathy, aortic, visceral and metastatic causes"
    else:
        summary = "Thoracic back pain: rule out zoster, aortic, visceral and metastatic causes"
    return Finding(
        "info", summary,
        detail(facts, "thoracic radicular pain is less often discogenic than lumbar. Consider herpes zoster (rash "
               "may follow the pain), diabetic thoracic radiculopathy, aortic aneurysm or dissection, cardiac, "
               f"pulmonary, gastrointestinal and renal causes, and spinal metastases.{notes}",
               "ACR Appropriateness Criteria: Low Back Pain (2021); expert opinion — thoracic evidence is sparse "
               "and largely extrapolated from lumbar studies."),
        suggestions,
    )
