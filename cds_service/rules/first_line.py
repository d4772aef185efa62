"""First line, second line, non-drug care and monitoring (patient-view): the care plan."""

from __future__ import annotations

from .. import orders
from ..facts import LOINC_PAIN, LOINC_PEG, LOINC_STARTBACK, Facts
from . import PV, Finding, ctx, detail, rule, suggest
from .common import bp_text, thoracic_note
from .nsaid import nsaid_allowed, nsaid_contraindications, nsaid_needs_ppi

EARLY_REVIEW_DAYS = 14  # monitoring.early-review: the first two weeks of an episode
START_BACK_FROM_DAYS = 10  # assessment.start-back: from day 10 of an episode
REEVALUATE_AFTER_DAYS = 30  # monitoring.reevaluate: a month into the episode …
PEG_WINDOW_DAYS = 90  # … with no PEG score in the last 90 days
PAIN_WINDOW_DAYS = 30
STARTBACK_HIGH_PSYCHOSOCIAL = 4  # psychosocial subscore ≥ 4: high risk
STARTBACK_MEDIUM_TOTAL = 4  # total ≥ 4: medium or high risk
MUSCLE_RELAXANT_CAUTION_CLASSES = ("opioid", "benzodiazepine", "gabapentinoid")


def first_line_drug(f: Facts) -> tuple[list[orders.Suggestion], str]:
    """The one analgesic suggestion (naproxen, with pantoprazole where §1 asks, else acetaminophen),
    checked like an order, and the sentence explaining the choice."""
    notes = []
    no_egfr = f.egfr is None
    if nsaid_allowed(f) and not (no_egfr and f.older_adult):
        keys = ["naproxen_500", "pantoprazole_40"] if nsaid_needs_ppi(f) else ["naproxen_500"]
        drug, why_not = suggest.drug(f, keys)
        if drug:
            if nsaid_needs_ppi(f):
                return [drug], (f"Naproxen with pantoprazole 40 mg for gastroprotection "
                                f"({'; '.join(nsaid_needs_ppi(f))}).")
            check = (f" No eGFR in the last {f.params['LAB_LOOKBACK_DAYS']:g} days: check kidney function if the "
                     "NSAID is continued beyond a few days.") if no_egfr else ""
            return [drug], f"Naproxen: an NSAID is the first-line drug.{check}"
        notes.append(why_not)
    elif nsaid_contraindications(f):
        notes.append("NSAID avoided: " + "; ".join(nsaid_contraindications(f)) + ".")
    elif "observations" in f.unavailable:
        notes.append("NSAID withheld: kidney function (eGFR) could not be checked because the laboratory results "
                     "could not be obtained.")
    else:
        notes.append(f"NSAID withheld at age {f.age} until kidney function is known: no eGFR in the last "
                     f"{f.params['LAB_LOOKBACK_DAYS']:g} days.")
    out = []
    acetaminophen, why = suggest.acetaminophen(f)
    if acetaminophen:
        out.append(acetaminophen)
        notes.append("Acetaminophen instead — its evidence is limited: no benefit over placebo for acute low back "
                     "pain (ACP 2017), and NICE advises against it alone.")
    if why:
        notes.append(why)
    if no_egfr and f.older_adult and "observations" not in f.unavailable:
        out.append(orders.order_service("egfr", ctx(f), recommended=False))
    return out, " ".join(notes) + f.unreadable_note("eGFR")


def _relaxant_cautions(f: Facts) -> list[str]:
    """Why a muscle relaxant is not for this patient (older age, liver disease, other CNS depressants)."""
    caution = [f"age {f.age}"] if f.older_adult else []
    caution += [c.label for c in f.conditions_in("hepatic_disease", "cirrhosis", "cirrhosis_decompensated")]
    return caution + [d.name for d in f.current_of(*MUSCLE_RELAXANT_CAUTION_CLASSES, stale=False)]


def _adjunct(f: Facts, nsaid_suggested: bool) -> tuple[list[orders.Suggestion], str]:
    """Cyclobenzaprine as an adjunct to the NSAID when spasm is on record and nothing cautions against it."""
    spasm = f.conditions_in("muscle_spasm")
    caution = _relaxant_cautions(f)
    if not spasm:
        mention = nsaid_suggested and not caution
        return [], " With muscle spasm, a short course of a muscle relaxant can be added to the NSAID." if mention else ""
    if not nsaid_suggested:
        return [], (f" Muscle spasm ({spasm[0].label}): a muscle relaxant is an adjunct to an NSAID, which is not "
                    "suggested here.")
    if caution:
        return [], f" No muscle relaxant for the spasm ({spasm[0].label}): {'; '.join(caution)}."
    drug, why_not = suggest.drug(f, ["cyclobenzaprine_5"])
    if not drug:
        return [], f" {why_not}"
    return [drug], (f" Muscle spasm ({spasm[0].label}): cyclobenzaprine 5 mg up to 3 times a day for 7 days as an "
                    "adjunct to the NSAID — it causes drowsiness: no driving or alcohol.")


@rule("first-line.conservative", title="Early back pain: first-line care", hooks=(PV,),
      sources=("ACP2017", "NICE-NG59", "JENSEN2019"),
      trigger="back pain < PERSISTENT_WEEKS and no current NSAID",
      levels=("info",),
      suggests="stay active and heat; naproxen 500 mg when an NSAID is allowed and nothing would warn about it (with "
               "pantoprazole for older age, SSRI/SNRI or corticosteroid), otherwise acetaminophen 500 mg; "
               "cyclobenzaprine 5 mg with muscle spasm; physical therapy")
def conservative(f: Facts, found: dict) -> Finding | None:
    if not f.acute or f.current_of("nsaid", stale=False):
        return None
    drugs, why = first_line_drug(f)
    adjunct, adjunct_text = _adjunct(f, any(s.key.startswith("med:198014") for s in drugs))
    return Finding(
        "info",
        "Early back pain: stay active, heat, NSAID if safe",
        detail(f"{bp_text(f)} ({f.episode_text}); no current NSAID.",
               f"reassure; stay active and avoid bed rest; superficial heat. {why}{adjunct_text} Physical therapy "
               f"if function is limited.{thoracic_note(f)}",
               "ACP low back pain guideline (2017): heat and NSAIDs — moderate-quality evidence; skeletal muscle "
               "relaxants — small short-term benefit."),
        drugs + adjunct + [orders.order_service("physical_therapy", ctx(f))],
    )


def _psychosocial(f: Facts) -> tuple[bool, str]:
    """(lead with CBT, the sentence): depression or anxiety, or a high-risk STarT Back result."""
    mood = f.conditions_in("depression_anxiety")
    reasons = [c.label for c in mood]
    score = f.latest_lab(LOINC_STARTBACK)
    high = False
    if score is not None:
        sub = getattr(score, "psychosocial", None)
        if sub is not None and sub >= STARTBACK_HIGH_PSYCHOSOCIAL:
            high = True
            reasons.append(f"STarT Back high risk (psychosocial subscore {sub:g}, {score.date.isoformat()})")
        elif score.value >= STARTBACK_MEDIUM_TOTAL:
            reasons.append(f"STarT Back total {score.value:g} on {score.date.isoformat()}: medium or high risk "
                           "(the psychosocial subscore is not on record)")
    lead = bool(mood) or high
    text = (" Psychosocial factors (low mood, fear of movement, catastrophising) predict the outcome more than "
            "examination or imaging findings.")
    if reasons:
        text += " On record: " + "; ".join(reasons) + "."
    return lead, text


@rule("nonpharm.therapy", title="Non-drug therapy", hooks=(PV,),
      sources=("ACP2017", "NICE-NG59"),
      trigger="back pain ≥ PERSISTENT_WEEKS and no non-drug therapy on record since onset (CBT first with depression, "
              "anxiety or a high-risk STarT Back result)",
      levels=("info",), suggests="physical therapy (exercise) referral; CBT referral; mention spinal manipulation")
def nonpharm(f: Facts, found: dict) -> Finding | None:
    if not f.persistent or f.procedures_in("nonpharm_procedures", since=f.onset_date):
        return None
    cbt_first, psychosocial = _psychosocial(f)
    referrals = [orders.order_service("physical_therapy", ctx(f)), orders.order_service("cbt", ctx(f))]
    if cbt_first:
        referrals.reverse()
    summary = ("Psychosocial risk: refer for CBT and exercise therapy" if cbt_first else
               "No exercise therapy yet: refer to physical therapy; consider CBT")
    return Finding(
        "info", summary,
        detail(f"{bp_text(f)} ({f.episode_text}); no physical therapy, exercise or psychological therapy on record "
               "since onset.",
               "structured exercise therapy; cognitive behavioural therapy as part of a combined programme; spinal "
               f"manipulation, massage or acupuncture as options.{psychosocial}{thoracic_note(f)}",
               "ACP low back pain guideline (2017): exercise and CBT — moderate-quality evidence, strong "
               "recommendation for chronic pain; NICE NG59."),
        referrals,
    )


@rule("second-line.options", title="Second-line options", hooks=(PV,),
      sources=("ACP2017", "NICE-NG59", "JENSEN2019"),
      trigger="back pain ≥ PERSISTENT_WEEKS; an NSAID on record since onset or NSAIDs contraindicated; no current "
              "gabapentinoid, SNRI or TCA",
      levels=("info",),
      suggests="radiculopathy: gabapentin 300 mg at bedtime; chronic (> CHRONIC_WEEKS): duloxetine 30 mg; older adult: "
               "acetaminophen; each only when nothing would warn about it")
def second_line(f: Facts, found: dict) -> Finding | None:
    if not f.persistent or f.current_of("gabapentinoid", "snri", "tca", stale=False):
        return None
    nsaid_tried = f.on_record("nsaid", since=f.onset_date)
    if not nsaid_tried and not nsaid_contraindications(f):
        return None
    why = [f"{bp_text(f)} ({f.episode_text})"]
    why.append(f"NSAID tried: {nsaid_tried[0].label}" if nsaid_tried else
               "NSAID contraindicated: " + "; ".join(nsaid_contraindications(f)))
    suggestions, lines = [], []
    if f.has_radic:
        drug, why_not = suggest.drug(f, ["gabapentin_300"])
        renal = ""
        if f.egfr is not None and f.egfr.below(60):
            renal = f" eGFR {f.egfr.shown}: keep within the label maximum for that band."
        elif f.egfr is None:
            renal = " Check eGFR before increasing the dose."
        if drug:
            suggestions.append(drug)
            lines.append("Radicular pain: gabapentin 300 mg at bedtime — small, short-term benefit; NICE NG59 "
                         f"advises against gabapentinoids for sciatica.{renal}")
        else:
            lines.append(why_not)
    if f.chronic:
        drug, why_not = suggest.drug(f, ["duloxetine_30"])
        if drug:
            suggestions.append(drug)
            lines.append("Chronic pain: duloxetine 30 mg once daily for a week, then 60 mg once daily if tolerated "
                         "(the label's titration). NICE NG59 advises against SNRIs for low back pain without "
                         "sciatica.")
        else:
            lines.append(why_not)
    if f.older_adult:
        drug, why_not = suggest.acetaminophen(f)
        if drug:
            suggestions.append(drug)
            lines.append("Older adult: acetaminophen is better tolerated than NSAIDs.")
        elif why_not:
            lines.append(why_not)
    lines.append("Tricyclic antidepressants (e.g. low-dose amitriptyline) are an option for chronic pain, not "
                 "suggested here" + (" (Beers 2023: avoid in older adults)." if f.older_adult else "."))
    return Finding(
        "info", "Pain persisting after an NSAID: second-line options",
        detail(why, " ".join(lines), "ACP low back pain guideline (2017): duloxetine — moderate-quality evidence "
               "for chronic low back pain; gabapentinoids — little evidence (NICE NG59)."),
        suggestions,
    )


@rule("assessment.start-back", title="STarT Back risk stratification", hooks=(PV,),
      sources=("STARTBACK", "NICE-NG59"),
      trigger="back pain 10 days to PERSISTENT_WEEKS, no STarT Back score since onset",
      levels=("info",), suggests="link to the Keele STarT Back tool")
def start_back(f: Facts, found: dict) -> Finding | None:
    if f.duration_days is None or not f.acute or f.duration_days < START_BACK_FROM_DAYS:
        return None
    if any(lab.date >= f.onset_date for lab in f.labs.get(LOINC_STARTBACK, [])):
        return None
    thoracic = (" The tool was validated in low back pain; for mid-back pain use it as a guide to psychosocial "
                "risk.") if f.region == "thoracic" else ""
    return Finding(
        "info",
        "Stratify risk with the STarT Back tool",
        detail(f"{bp_text(f)} ({f.episode_text}); no STarT Back score (LOINC 91351-7) since onset.",
               "the 9-item STarT Back tool sorts patients into low, medium and high risk of persistent disability and "
               f"matches treatment to risk.{thoracic}",
               "Keele STarT Back tool (Hill 2008); NICE NG59 recommends risk stratification at first contact."),
        links=[{"label": "Keele STarT Back tool", "url": "https://www.keele.ac.uk/sbst/startbacktool/",
                "type": "absolute"}],
    )


@rule("monitoring.early-review", title="Early review", hooks=(PV,),
      sources=("NICE-NG59", "ACP2017"),
      trigger="back pain ≤ 14 days with radiculopathy, older age, pain ≥ SEVERE_PAIN within 30 days or a neurological "
              "deficit",
      levels=("info",), suggests="review within 1–2 weeks")
def early_review(f: Facts, found: dict) -> Finding | None:
    if f.duration_days is None or f.duration_days > EARLY_REVIEW_DAYS:
        return None
    pain = f.latest_lab(*LOINC_PAIN, within_days=PAIN_WINDOW_DAYS)
    reasons = []
    if f.has_radic:
        reasons.append("radiculopathy")
    if f.older_adult:
        reasons.append(f"age {f.age}")
    if pain is not None and pain.value >= f.params["SEVERE_PAIN"]:
        reasons.append(f"pain score {pain.value:g}/10 on {pain.date.isoformat()}")
    reasons += [f"neurological: {c.label}" for c in f.conditions_in("neuro_deficit_critical", "neuro_deficit_motor")]
    if not reasons:
        return None
    if f.procedures_in("back_pain_review", since=f.onset_date):
        return None
    return Finding(
        "info",
        "Review in 1–2 weeks",
        detail(f"{bp_text(f)} ({f.episode_text}); " + "; ".join(reasons) + ".",
               "re-examine strength, reflexes and sensation and reassess pain and function within 1–2 weeks.",
               "NICE NG59; expert consensus."),
        [orders.order_service("early_review", ctx(f))],
    )


@rule("monitoring.reevaluate", title="Re-evaluate pain and function", hooks=(PV,),
      sources=("CDC2022", "ACP2017"),
      trigger="back pain ≥ 30 days and no PEG score within 90 days",
      levels=("info",), suggests="re-evaluate; order the PEG panel (LOINC 91148-7)")
def reevaluate(f: Facts, found: dict) -> Finding | None:
    if f.duration_days is None or f.duration_days < REEVALUATE_AFTER_DAYS:
        return None
    if f.latest_lab(*LOINC_PEG, within_days=PEG_WINDOW_DAYS):
        return None
    return Finding(
        "info",
        "Re-evaluate pain and function: record a PEG score",
        detail(f"{bp_text(f)} ({f.episode_text}); no PEG score in the last {PEG_WINDOW_DAYS} days.",
               "re-evaluate the diagnosis and the plan; the 3-item PEG scale tracks pain and function over time.",
               "CDC opioid prescribing guideline (2022) asks for regular reassessment of pain and function."),
        [orders.order_service("peg_panel", ctx(f))],
    )
