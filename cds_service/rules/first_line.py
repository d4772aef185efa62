"""RULES.md §3.3 — first line, non-drug care and monitoring (patient-view)."""

from __future__ import annotations

from .. import orders
from ..facts import LOINC_PAIN, LOINC_PEG, LOINC_STARTBACK, Facts
from . import PV, Finding, ctx, rule
from .common import bp_text, thoracic_note


def first_line_drug(f: Facts) -> tuple[orders.Suggestion, str]:
    """The one drug suggestion of RULES.md §1/§3.3 and the sentence explaining the choice."""
    no_egfr = "" if f.egfr else (f" No eGFR in the last {f.params['LAB_LOOKBACK_DAYS']:g} days: check kidney "
                                 "function if the NSAID is continued beyond a few days.")
    if f.nsaid_allowed and f.nsaid_needs_ppi:
        return (orders.order_medications(["naproxen_500", "pantoprazole_40"], ctx(f)),
                f"Naproxen with pantoprazole 40 mg for gastroprotection ({'; '.join(f.nsaid_needs_ppi)}).{no_egfr}")
    if f.nsaid_allowed:
        return (orders.order_medications(["naproxen_500"], ctx(f)),
                f"Naproxen: an NSAID is the first-line drug.{no_egfr}")
    if f.nsaid_contraindications:
        why = "NSAID avoided: " + "; ".join(f.nsaid_contraindications) + "."
    else:
        why = "NSAID withheld: kidney function (eGFR) could not be checked because the laboratory results could not be obtained."
    return (orders.order_medications(["acetaminophen_500"], ctx(f)),
            why + " Acetaminophen instead — its evidence is limited: no benefit over placebo for acute low back "
                  "pain (ACP 2017), and NICE advises against it alone.")


@rule("first-line.conservative", title="Early back pain: first-line care", hooks=(PV,),
      sources=("ACP2017", "NICE-NG59", "JENSEN2019"),
      trigger="back pain < PERSISTENT_WEEKS and no current NSAID",
      levels=("info",),
      suggests="stay active and heat; naproxen 500 mg when an NSAID is allowed (with pantoprazole for older age, "
               "SSRI/SNRI or corticosteroid), otherwise acetaminophen 500 mg; physical therapy")
def conservative(f: Facts, found: dict) -> Finding | None:
    if not f.acute or f.current_of("nsaid"):
        return None
    drug, why = first_line_drug(f)
    return Finding(
        "info",
        "Early back pain: stay active, heat, NSAID if safe",
        f"**Why:** {bp_text(f)} ({f.episode_text}); no current NSAID.\n\n**Recommendation:** reassure; stay "
        f"active and avoid bed rest; superficial heat. {why} Physical therapy if function is limited."
        f"{thoracic_note(f)}\n\n**Evidence:** heat and NSAIDs — moderate-quality evidence, strong/weak "
        "recommendations (ACP 2017).",
        [drug, orders.order_service("physical_therapy", ctx(f))],
    )


@rule("nonpharm.therapy", title="Non-drug therapy", hooks=(PV,),
      sources=("ACP2017", "NICE-NG59"),
      trigger="back pain ≥ PERSISTENT_WEEKS and no non-drug therapy on record since onset",
      levels=("info",), suggests="physical therapy (exercise) referral; CBT referral; mention spinal manipulation")
def nonpharm(f: Facts, found: dict) -> Finding | None:
    if not f.persistent or f.procedures_in("nonpharm_procedures", since=f.onset_date):
        return None
    return Finding(
        "info",
        "No exercise therapy yet: refer to physical therapy; consider CBT",
        f"**Why:** {bp_text(f)} ({f.episode_text}); no physical therapy, exercise or psychological therapy on "
        "record since onset.\n\n**Recommendation:** structured exercise therapy; cognitive behavioural "
        "therapy as part of a combined programme; spinal manipulation, massage or acupuncture as options."
        f"{thoracic_note(f)}\n\n**Evidence:** exercise and CBT — moderate-quality evidence, strong "
        "recommendation for chronic pain (ACP 2017; NICE NG59).",
        [orders.order_service("physical_therapy", ctx(f)), orders.order_service("cbt", ctx(f))],
    )


@rule("assessment.start-back", title="STarT Back risk stratification", hooks=(PV,),
      sources=("STARTBACK", "NICE-NG59"),
      trigger="lumbar region, back pain 10 days to PERSISTENT_WEEKS, no STarT Back score since onset",
      levels=("info",), suggests="link to the Keele STarT Back tool")
def start_back(f: Facts, found: dict) -> Finding | None:
    if f.region != "lumbar" or f.duration_days is None or not f.acute or f.duration_days < 10:
        return None
    if any(lab.date >= f.onset_date for lab in f.labs.get(LOINC_STARTBACK, [])):
        return None
    return Finding(
        "info",
        "Stratify risk with the STarT Back tool",
        f"**Why:** {bp_text(f)} ({f.episode_text}); no STarT Back score (LOINC 91351-7) since onset.\n\n"
        "**Recommendation:** the 9-item STarT Back tool sorts patients into low, medium and high risk of "
        "persistent disability and matches treatment to risk.\n\n**Evidence:** NICE NG59 recommends risk "
        "stratification at first contact.",
        links=[{"label": "Keele STarT Back tool", "url": "https://www.keele.ac.uk/sbst/startbacktool/",
                "type": "absolute"}],
    )


@rule("monitoring.early-review", title="Early review", hooks=(PV,),
      sources=("NICE-NG59", "ACP2017"),
      trigger="back pain ≤ 14 days with radiculopathy, older age, pain ≥ 7 within 30 days or a neurological deficit",
      levels=("info",), suggests="review within 1–2 weeks")
def early_review(f: Facts, found: dict) -> Finding | None:
    if f.duration_days is None or f.duration_days > 14:
        return None
    pain = f.latest_lab(*LOINC_PAIN, within_days=30)
    reasons = []
    if f.has_radic:
        reasons.append("radiculopathy")
    if f.older_adult:
        reasons.append(f"age {f.age}")
    if pain is not None and pain.value >= 7:
        reasons.append(f"pain score {pain.value:g}/10 on {pain.date.isoformat()}")
    reasons += [f"neurological: {c.label}" for c in f.conditions_in("neuro_deficit_critical", "neuro_deficit_motor")]
    if not reasons:
        return None
    if f.procedures_in("back_pain_review", since=f.onset_date):
        return None
    return Finding(
        "info",
        "Review in 1–2 weeks",
        f"**Why:** {bp_text(f)} ({f.episode_text}); " + "; ".join(reasons) + ".\n\n**Recommendation:** "
        "re-examine strength, reflexes and sensation and reassess pain and function within 1–2 weeks.\n\n"
        "**Evidence:** expert consensus.",
        [orders.order_service("early_review", ctx(f))],
    )


@rule("monitoring.reevaluate", title="Re-evaluate pain and function", hooks=(PV,),
      sources=("CDC2022", "ACP2017"),
      trigger="back pain ≥ 30 days and no PEG score within 90 days",
      levels=("info",), suggests="re-evaluate; order the PEG panel (LOINC 91148-7)")
def reevaluate(f: Facts, found: dict) -> Finding | None:
    if f.duration_days is None or f.duration_days < 30:
        return None
    if f.latest_lab(*LOINC_PEG, within_days=90):
        return None
    return Finding(
        "info",
        "Re-evaluate pain and function: record a PEG score",
        f"**Why:** {bp_text(f)} ({f.episode_text}); no PEG score in the last 90 days.\n\n**Recommendation:** "
        "re-evaluate the diagnosis and the plan; the 3-item PEG scale tracks pain and function over time.\n\n"
        "**Evidence:** CDC 2022 asks for regular reassessment of pain and function.",
        [orders.order_service("peg_panel", ctx(f))],
    )
