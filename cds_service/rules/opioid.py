"""RULES.md §3.7 — opioids (order-select on a draft opioid or the pair's other drug; patient-view on a
current opioid). CDC 2022 exclusions (active cancer, sickle cell disease, hospice/palliative care,
age < 18) silence third-line, MME, extended-release and acute-duration; the benzodiazepine and
naloxone rules still fire, except in hospice."""

from __future__ import annotations

from .. import mme, orders, terminology
from ..dosing import supply_days
from ..facts import Facts
from . import OS, PV, Finding, ctx, rule
from .drugs import changed_draft, drug_detail, drug_line, limit_supply, pairs, review_note, subjects, units_per_day

OPIOID = ("opioid",)
SEROTONERGIC_OPIOIDS = ("tramadol", "tapentadol", "meperidine", "methadone")
NON_OPIOID_TREATMENT = ("nsaid", "nsaid_non_systemic", "skeletal_muscle_relaxant", "acetaminophen")


def total(f: Facts) -> mme.MmeTotal:
    """MME/day over every current and draft opioid order, selected or not (memoised per evaluation)."""
    cached = f.__dict__.get("_mme_total")
    if cached is None:
        drugs = f.current_of(*OPIOID) + f.selected_of(*OPIOID)
        cached = f.__dict__["_mme_total"] = mme.total_mme(terminology.load(), drugs)
    return cached


def _mme_note(f: Facts) -> str:
    t = total(f)
    if not t.orders:
        return ""
    if t.uncounted:
        return "\n\n**MME/day:**\n" + t.detail()
    return f"\n\nMME/day of all opioid orders: {t.shown}."


def _excluded(f: Facts) -> bool:
    return bool(f.opioid_exclusions)


def _finding(f: Facts, level: str, summary: str, why: list[str], advice: str, evidence: str,
             suggestions: list, culprits, selection: str = "at-most-one", mme_detail: bool = True) -> Finding:
    return Finding(level, summary, drug_detail(why, advice, culprits, evidence, _mme_note(f) if mme_detail else ""),
                   suggestions, selection)


def _remove_selected(drugs) -> list[orders.Suggestion]:
    return [orders.remove_draft(d.ref, d.name) for d in drugs if d.selected]


@rule("opioid.third-line", title="Opioid before non-opioid treatment", hooks=(OS,), sources=("CDC2022", "ACP2017"),
      trigger="a selected opioid for back pain with no NSAID, muscle relaxant, acetaminophen, duloxetine or non-drug "
              "therapy on record in 90 days",
      levels=("warning",), suggests="replace with naproxen 500 mg (when an NSAID is allowed); physical therapy")
def third_line(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    if not drugs or _excluded(f):
        return None
    tried = f.on_record(*NON_OPIOID_TREATMENT, within_days=90) + [
        d for d in f.on_record("snri", within_days=90) if d.has_ingredient("duloxetine")]
    therapy = f.procedures_in("nonpharm_procedures", within_days=90)
    if tried or therapy:
        return None
    suggestions = []
    if f.nsaid_allowed:
        keys = ["naproxen_500", "pantoprazole_40"] if f.nsaid_needs_ppi else ["naproxen_500"]
        suggestions += [orders.replace_draft(d.ref, d.name, keys, ctx(f), recommended=True) for d in drugs]
        choice = "Naproxen" + (" with pantoprazole" if f.nsaid_needs_ppi else "") + " instead."
    else:
        choice = ("An NSAID is not suggested: " + "; ".join(f.nsaid_contraindications or
                  ["kidney function could not be checked"]) + ".")
    if not f.procedures_in("nonpharm_procedures", since=f.onset_date):
        suggestions.append(orders.order_service("physical_therapy", ctx(f), recommended=not suggestions))
    return _finding(f, "warning", "Opioid as first treatment for back pain: try non-opioid options first",
                    [drug_line(d) for d in drugs] + ["no NSAID, muscle relaxant, acetaminophen, duloxetine or "
                                                     "non-drug therapy on record in the last 90 days"],
                    f"non-opioid therapies are preferred for acute, subacute and chronic low back pain; opioids only "
                    f"when benefits outweigh risks, at the lowest dose. {choice}",
                    "CDC 2022 recommendations 1–2; ACP 2017.", suggestions, drugs, selection="any")


@rule("opioid.mme", title="Opioid dose (MME/day)", hooks=(PV, OS), sources=("CDC2022", "CDC-IG"),
      trigger="total MME/day of all current and draft opioid orders ≥ MME_WARN (text escalates at MME_HIGH)",
      levels=("warning",), suggests="remove the draft")
def dose(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    if not drugs or _excluded(f):
        return None
    t = total(f)
    if t.total < f.params["MME_WARN"]:
        return None
    high = t.total >= f.params["MME_HIGH"]
    advice = ("at or above 90 MME/day, avoid further increases and reassess benefit and harm; consider a taper "
              "(local policy tier; CDC 2022 sets no ceiling)." if high else
              "at 50 MME/day or more, pause and reassess benefit and risk before increasing; offer naloxone.")
    summary = f"Opioid dose {t.shown}: " + ("high — avoid increasing, consider tapering" if high else
                                            "reassess before increasing")
    return Finding("warning", summary,
                   f"**Why:**\n{t.detail()}\n\n**Recommendation:** {advice}{review_note(drugs)}\n\n"
                   "**Evidence:** CDC 2022 recommendation 4 (category A, type 3); factors: CDC 2022.",
                   _remove_selected(drugs), "at-most-one")


def _naloxone_on_record(f: Facts) -> bool:
    return bool(f.on_record("naloxone_rescue", within_days=730) or f.current_of("naloxone_rescue"))


@rule("opioid.naloxone", title="Offer naloxone", hooks=(PV, OS), sources=("CDC2022",),
      trigger="no naloxone on record in 2 years and MME ≥ MME_WARN, a benzodiazepine, a gabapentinoid, substance "
              "use or an overdose history",
      levels=("warning",), suggests="naloxone 4 mg nasal spray")
def naloxone(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    partners = pairs(f, OPIOID, ("benzodiazepine", "gabapentinoid"))
    if f.hook == OS and not drugs:
        drugs = list({p.own.ref: p.own for p in partners}.values())  # the pair's other drug was selected
    if not drugs or f.in_hospice or _naloxone_on_record(f):
        return None
    reasons = []
    t = total(f)
    if t.total >= f.params["MME_WARN"]:
        reasons.append(t.shown)
    reasons += [f"with {p.other.name}" for p in partners]
    reasons += [c.label for c in f.conditions_in("substance_use_opioid_stimulant", "opioid_overdose_history")]
    if not reasons:
        return None
    return _finding(f, "warning", "Overdose risk with this opioid: prescribe naloxone",
                    [drug_line(d) for d in drugs] + list(dict.fromkeys(reasons)),
                    "offer naloxone and teach the patient and family how to use it; no naloxone is on record in the "
                    "last 2 years.", "CDC 2022 recommendation 8.",
                    [orders.order_medications(["naloxone_nasal_4"], ctx(f))], [], mme_detail=False)


@rule("opioid.benzodiazepine", title="Opioid with a benzodiazepine", hooks=(PV, OS),
      sources=("FDA-OPI-BZD", "CDC2022"),
      trigger="opioid with a benzodiazepine, both ways (critical when MME ≥ MME_WARN)",
      levels=("critical", "warning"), suggests="remove the draft")
def benzodiazepine(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, OPIOID, ("benzodiazepine",))
    if not found_pairs or f.in_hospice:
        return None
    drugs = list({d.ref: d for p in found_pairs for d in (p.own, p.other)}.values())
    t = total(f)
    level = "critical" if t.total >= f.params["MME_WARN"] else "warning"
    summary = ("Opioid with a benzodiazepine at " + t.shown + ": fatal overdose risk — avoid" if level == "critical"
               else "Opioid with a benzodiazepine: respiratory depression and overdose risk — avoid")
    return _finding(f, level, summary, [drug_line(d) for d in drugs],
                    "concurrent opioids and benzodiazepines increase the risk of fatal overdose; avoid the "
                    "combination, and if it cannot be avoided use the lowest doses and offer naloxone.",
                    "FDA 2016 boxed warning; CDC 2022 recommendation 11.",
                    _remove_selected(drugs), [d for d in drugs if not d.selected and "opioid" in d.classes])


@rule("opioid.serotonergic", title="Serotonergic opioid with an antidepressant", hooks=(PV, OS),
      sources=("CDC2022", "BEERS2023"),
      trigger="tramadol, tapentadol, meperidine or methadone with an SSRI, SNRI or TCA (both ways)",
      levels=("warning",), suggests="remove, or choose another analgesic")
def serotonergic(f: Facts, found: dict) -> Finding | None:
    found_pairs = [p for p in pairs(f, OPIOID, ("ssri", "snri", "tca")) if p.own.has_ingredient(*SEROTONERGIC_OPIOIDS)]
    if not found_pairs:
        return None
    opioids = list({p.own.ref: p.own for p in found_pairs}.values())
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    return _finding(f, "warning", f"{opioids[0].ingredients[0].name.title()} with an antidepressant: serotonin "
                    "syndrome risk — choose another analgesic",
                    [drug_line(d) for d in opioids + others],
                    "these opioids inhibit serotonin reuptake; with SSRIs, SNRIs or TCAs they can cause serotonin "
                    "syndrome (and tramadol seizures). Choose a non-serotonergic analgesic or monitor closely.",
                    "FDA labels; Beers 2023 drug–drug interactions.", _remove_selected(opioids), opioids)


@rule("opioid.extended-release", title="Extended-release opioid for an opioid-naive patient", hooks=(OS,),
      sources=("CDC2022",),
      trigger="a selected extended-release/long-acting opioid or methadone with no opioid on record in 90 days",
      levels=("warning",), suggests="remove (start with immediate-release)")
def extended_release(f: Facts, found: dict) -> Finding | None:
    drugs = [d for d in subjects(f, *OPIOID) if d.er_la or d.has_ingredient("methadone")]
    if not drugs or _excluded(f) or f.on_record(*OPIOID, within_days=90):
        return None
    return _finding(f, "warning", "Extended-release opioid for an opioid-naive patient: start with immediate-release",
                    [drug_line(d) for d in drugs] + ["no opioid on record in the last 90 days"],
                    "do not start opioid therapy with extended-release or long-acting opioids (overdose risk); use "
                    "immediate-release at the lowest dose.", "CDC 2022 recommendation 3.",
                    _remove_selected(drugs), drugs)


@rule("opioid.acute-duration", title="Opioid supply for acute pain", hooks=(OS,), sources=("CDC2022",),
      trigger="back pain < 4 weeks and a selected opioid supply > ACUTE_OPIOID_MAX_DAYS days (expectedSupplyDuration, "
              "or quantity ÷ daily dose)",
      levels=("warning",), suggests="update the draft to ≤ 7 days; or remove")
def acute_duration(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    if not drugs or _excluded(f) or not f.duration_below_weeks(4):
        return None
    limit = int(f.params["ACUTE_OPIOID_MAX_DAYS"])
    long, suggestions, why = [], [], []
    for d in drugs:
        ingredient = next((i.name for i in d.ingredients if i.drug_class == "opioid"), "")
        per_day = units_per_day(d, d.strength_mg(ingredient))
        days = supply_days(d.resource, per_day)
        if days is None or days <= limit:
            continue
        long.append(d)
        why.append(f"{drug_line(d)} — {days:g} days' supply")
        suggestions.append(changed_draft(f, d, limit_supply(limit, per_day),
                                         f"Limit {d.name} to {limit} days' supply"))
        suggestions.append(orders.remove_draft(d.ref, d.name, recommended=False))
    if not long:
        return None
    return _finding(f, "warning", f"Opioid supply over {limit} days for acute back pain: prescribe {limit} days or less",
                    why + [f"back pain since {f.onset_date.isoformat()} ({f.duration_days} days)"],
                    f"for acute pain, prescribe no more than needed — often 3 days or less, rarely more than {limit}.",
                    "CDC 2022 recommendation 6.", suggestions, long)


@rule("opioid.use-disorder", title="Opioid with opioid use disorder", hooks=(PV, OS),
      sources=("CDC2022",), trigger="an opioid for a patient with opioid use disorder (F11.1x, F11.2x; SNOMED 5602001, "
                                    "75544000)",
      levels=("warning",),
      suggests="coordinate with the OUD prescriber; prefer non-opioid; naloxone and a short supply if an opioid is "
               "needed; offer medication for OUD")
def use_disorder(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    oud = f.conditions_in("opioid_use_disorder")
    if not drugs or not oud:
        return None
    suggestions = [] if _naloxone_on_record(f) else [orders.order_medications(["naloxone_nasal_4"], ctx(f))]
    suggestions += _remove_selected(drugs)
    buprenorphine = [d for d in f.current if d.has_ingredient("buprenorphine", "methadone")]
    moud = (f" Current medication for OUD: {'; '.join(d.name for d in buprenorphine)} — coordinate with its "
            "prescriber.") if buprenorphine else " Offer or refer for medication for OUD (buprenorphine or methadone)."
    return _finding(f, "warning", "Opioid for a patient with opioid use disorder: coordinate care, prefer non-opioid",
                    [drug_line(d) for d in drugs] + [c.label for c in oud],
                    "prefer non-opioid analgesia; if an opioid is needed, coordinate with the OUD prescriber, give a "
                    f"short supply and naloxone.{moud}", "CDC 2022 recommendation 12.", suggestions, drugs,
                    selection="any")
