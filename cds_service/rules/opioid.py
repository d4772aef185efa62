"""The opioid rules — opioids (order-select on a draft opioid or the pair's other drug; patient-view on a
current opioid). CDC 2022 exclusions (active cancer, sickle cell disease, hospice/palliative care,
age < 18) silence third-line, MME, extended-release (below its critical tier) and acute-duration; the
benzodiazepine and naloxone rules still fire, except in hospice.

Revision 2: medication for opioid use disorder (MOUD, §1) is protected — never suggested to be
stopped, reduced or deleted, never in MME/day, never what makes a patient "on opioids"; a pair with
MOUD targets the other drug and adds naloxone. The rules below ask `Drug.pain_opioid` (an opioid
that is not MOUD) where the guideline means an analgesic opioid.

Choices where the catalogue is silent (a clinical pharmacist's reading):
- `opioid.use-disorder` counts an OUD condition at any status but refuted/entered-in-error (remission
  or "resolved" OUD still matters when an opioid is prescribed), as §1 does for methadone.
- On patient-view `opioid.use-disorder` still speaks when naltrexone is current: `opioid.antagonist`
  is an order-select rule, and the chart-open reader needs to know about the opioid.
- `opioid.naloxone` counts current naltrexone for OUD as a reason too (after naltrexone, tolerance is
  lost and an overdose is more likely), but fires only when an opioid is a subject.
- Transmucosal buprenorphine that is not named buccal, and a name-only buprenorphine of 2 mg or more,
  are MOUD (facts.py `_moud_product`): the safer error is to protect an OUD treatment.
- Tolerance: an order covers its supply or validity; a current one covers up to today; an order and a
  statement of the same drug and dose on one day count once (mme.tolerance).
"""

from __future__ import annotations

from .. import mme, orders
from ..dosing import supply_days
from ..drugs import Drug
from ..facts import Facts, unique
from . import OS, PV, Finding, ctx, rule, suggest
from .drugs import changed_draft, drug_detail, drug_line, limit_supply, paired, pairs, subjects, units_per_day

OPIOID = ("opioid",)
SEROTONERGIC_OPIOIDS = ("tramadol", "tapentadol", "meperidine", "methadone")
NON_OPIOID_TREATMENT = ("nsaid", "nsaid_non_systemic", "skeletal_muscle_relaxant", "acetaminophen", "gabapentinoid",
                        "tca")
NALOXONE_MME = 50  # CDC 2022: offer naloxone from 50 MME/day (a guideline number, not a site parameter)
NALOXONE_WINDOW_DAYS = 730  # The clinical definitions "Naloxone on record": within 2 years
RECENT_DAYS = 90  # opioid.third-line: "on record in 90 days"


def opioid_exclusions(f: Facts) -> list[str]:
    """CDC 2022 exclusions: active cancer, sickle cell disease, hospice or palliative care, age < 18."""
    out = [f"cancer: {c.label}" for c in unique(f.conditions_in("active_malignancy", "red_flag_malignancy_bone_spine"))]
    out += [f"sickle cell disease: {c.label}" for c in f.conditions_in("sickle_cell_disease")]
    out += [f"palliative care: {c.label}" for c in f.conditions_in("hospice_palliative")]
    if f.age is not None and f.age < 18:
        out.append(f"age {f.age}")
    return out


def in_hospice(f: Facts) -> bool:
    return bool(f.conditions_in("hospice_palliative"))


def total(f: Facts) -> mme.MmeTotal:
    """MME/day over every current and draft opioid order, selected or not (computed once, in facts)."""
    return f.mme_total


def tolerance(f: Facts) -> mme.Tolerance:
    return f.opioid_tolerance


def _pain_subjects(f: Facts) -> list[Drug]:
    """The non-MOUD opioids a single-drug rule is about: selected (order-select) or current (patient-view)."""
    return [d for d in subjects(f, *OPIOID) if d.pain_opioid]


def _moud_agonists(f: Facts) -> list[Drug]:
    """Current (and, on order-select, selected) buprenorphine or methadone for opioid use disorder."""
    drugs = f.current_of(*OPIOID) + (f.selected_of(*OPIOID) if f.hook == OS else [])
    return [d for d in drugs if d.moud]


def _mme_note(f: Facts) -> str:
    t = total(f)
    if not t.orders and not t.moud:
        return ""
    if t.uncounted or t.moud or t.renewals or not t.counted:
        return "\n\n**MME/day:**\n" + t.detail()
    return f"\n\nMME/day of all opioid orders: {t.shown}."


def _excluded(f: Facts) -> bool:
    return bool(opioid_exclusions(f))


def _about(f: Facts, drugs) -> tuple[str, ...]:
    """The selected orders a finding is about (order-select), for one card per selected order."""
    if f.hook != OS:
        return ()
    return tuple(dict.fromkeys(d.ref for d in drugs if d.selected))


def _line(d: Drug) -> str:
    """drug_line, plus what a clinician must know about MOUD and possibly stale entries."""
    line = drug_line(d)
    if d.moud:
        line += (f" — treated as medication for opioid use disorder ({d.moud_reason})" if d.moud_reason else
                 " — medication for opioid use disorder")
    return line


def _finding(f: Facts, level: str, summary: str, why: list[str], advice: str, evidence: str,
             suggestions: list, culprits, about, selection: str = "at-most-one", mme_detail: bool = True) -> Finding:
    # MOUD is never a culprit: no "review or stop" for it (the clinical definitions).
    culprits = [d for d in culprits if not d.moud]
    return Finding(level, summary, drug_detail(why, advice, culprits, evidence, _mme_note(f) if mme_detail else ""),
                   suggestions, selection, about=_about(f, about))


def _remove_selected(drugs) -> list[orders.Suggestion]:
    """Remove the selected drafts among `drugs`; a buprenorphine or methadone MOUD draft never."""
    return [orders.remove_draft(d.ref, d.name) for d in drugs if d.selected and not (d.moud and "opioid" in d.classes)]


def _naloxone_on_record(f: Facts) -> bool:
    return bool(f.on_record("naloxone_rescue", within_days=NALOXONE_WINDOW_DAYS) or f.current_of("naloxone_rescue"))


def _naloxone(f: Facts) -> list[orders.Suggestion]:
    return [] if _naloxone_on_record(f) else [orders.order_medications(["naloxone_nasal_4"], ctx(f))]


def _non_opioid_instead(f: Facts, drug: Drug) -> list[orders.Suggestion]:
    """Replace a selected opioid with naproxen (when it may be suggested), else acetaminophen."""
    keys, _ = suggest.naproxen(f)
    if keys:
        return [orders.replace_draft(drug.ref, drug.name, keys, ctx(f), recommended=True)]
    if not suggest.current_acetaminophen(f):
        return [orders.replace_draft(drug.ref, drug.name, [suggest.acetaminophen_key(f)], ctx(f), recommended=True)]
    return []


@rule("opioid.third-line", title="Opioid before non-opioid treatment", hooks=(OS,), sources=("CDC2022", "ACP2017"),
      trigger="a selected non-MOUD opioid for back pain, no current or recent (90 days) non-MOUD opioid, and no NSAID, "
              "muscle relaxant, acetaminophen, gabapentinoid, duloxetine, TCA or non-drug therapy current or on "
              "record in 90 days",
      levels=("warning",), advisory=True, suggests="replace with naproxen 500 mg (when an NSAID is allowed); physical therapy")
def third_line(f: Facts, found: dict) -> Finding | None:
    drugs = _pain_subjects(f)
    if not drugs or _excluded(f):
        return None
    # Already on opioids (rev. 2): a patient on opioids is not starting them. Possibly stale entries and
    # MOUD do not make a patient "on opioids" (the clinical definitions).
    selected = {d.ref for d in f.selected}
    on_opioids = [d for d in f.current_pain_opioids() if d.ref not in selected] + [
        d for d in f.on_record(*OPIOID, within_days=RECENT_DAYS) if d.pain_opioid and not d.possibly_stale]
    if on_opioids:
        return None
    # Non-opioid treatment: current (whatever its date) or on record in 90 days. A possibly stale entry
    # may add a finding, never silence one: it is named, not counted.
    def is_treatment(d: Drug) -> bool:
        return bool(d.classes.intersection(NON_OPIOID_TREATMENT)) or d.has_ingredient("duloxetine")
    tried = [d for d in f.current if is_treatment(d) and not d.possibly_stale and d.ref not in selected] + [
        d for d in f.record_drugs if is_treatment(d) and d.date and (f.today - d.date).days <= RECENT_DAYS]
    therapy = f.procedures_in("nonpharm_procedures", within_days=RECENT_DAYS)
    if tried or therapy:
        return None
    stale = [d for d in f.current if d.possibly_stale and (is_treatment(d) or d.pain_opioid)]
    moud = _moud_agonists(f)
    found_text = ("older list entries only, not renewed (confirm them with the patient)" if stale else "none")
    looked = ("Looked for: a current or recent (90 days) opioid other than MOUD; and an NSAID, muscle relaxant, "
              "acetaminophen, gabapentinoid, duloxetine, TCA or non-drug therapy, current or on record in the last "
              f"90 days. Found: {found_text}")
    why = [_line(d) for d in drugs] + [looked]
    why += [f"not counted: {_line(d)}" for d in stale]
    why += [f"not counted as being on opioids: {_line(d)}" for d in moud]
    keys, choice = suggest.naproxen(f)  # suggest, then warn, never
    suggestions = [orders.replace_draft(d.ref, d.name, keys, ctx(f), recommended=True) for d in drugs] if keys else []
    if not f.procedures_in("nonpharm_procedures", since=f.onset_date):
        suggestions.append(orders.order_service("physical_therapy", ctx(f), recommended=not suggestions))
    summary = ("Opioid with no confirmed non-opioid treatment: confirm the medication list, try non-opioid options"
               if stale else "Opioid as first treatment for back pain: try non-opioid options first")
    return _finding(f, "warning", summary, why,
                    f"non-opioid therapies are preferred for acute, subacute and chronic low back pain; opioids only "
                    f"when benefits outweigh risks, at the lowest dose. {choice}",
                    "CDC 2022 recommendations 1–2; ACP 2017.", suggestions, drugs, drugs, selection="any")


@rule("opioid.mme", title="Opioid dose (MME/day)", hooks=(PV, OS), sources=("CDC2022", "CDC-IG"),
      trigger="total MME/day of all current and draft non-MOUD opioid orders ≥ MME_WARN (text escalates at MME_HIGH)",
      levels=("warning",), suggests="remove the draft (a non-MOUD opioid)")
def dose(f: Facts, found: dict) -> Finding | None:
    drugs = _pain_subjects(f)
    if not drugs or _excluded(f):
        return None
    t = total(f)
    warn, high_at = f.params["MME_WARN"], f.params["MME_HIGH"]
    if t.total < warn:
        return None
    high = t.total >= high_at
    advice = (f"at or above {high_at:g} MME/day, avoid further increases and reassess benefit and harm; consider a "
              "taper (local policy tier; CDC 2022 sets no ceiling)." if high else
              f"at {warn:g} MME/day or more, pause and reassess benefit and risk before increasing; offer naloxone.")
    summary = f"Opioid dose {t.shown}: " + ("high — avoid increasing, consider tapering" if high else
                                            "reassess before increasing")
    return Finding("warning", summary,
                   drug_detail(t.why(), advice, drugs, "CDC 2022 recommendation 4 (category A, type 3); factors: "
                               "CDC 2022."),
                   _remove_selected(drugs), "at-most-one", about=_about(f, drugs), band=1 + high)


@rule("opioid.naloxone", title="Offer naloxone", hooks=(PV, OS), sources=("CDC2022",),
      trigger="an opioid (MOUD included) and no naloxone on record in 2 years, with MME ≥ 50, a benzodiazepine, "
              "a gabapentinoid, substance use or an overdose history (any status and date), or MOUD",
      levels=("warning",), advisory=True, suggests="naloxone 4 mg nasal spray")
def naloxone(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *OPIOID)
    partners = pairs(f, OPIOID, ("benzodiazepine", "gabapentinoid"))
    about = list(drugs)
    if f.hook == OS and not drugs:
        drugs = list({p.own.ref: p.own for p in partners}.values())  # the pair's other drug was selected
        about = [p.other for p in partners]
    if not drugs or in_hospice(f) or _naloxone_on_record(f):
        return None
    reasons = []
    t = total(f)
    if t.total >= NALOXONE_MME:
        reasons.append(t.shown)
    reasons += [f"with {p.other.name}" for p in partners]
    active = {id(c) for c in f.conditions}
    for c in f.ever_recorded("substance_use_opioid_stimulant", "opioid_overdose_history"):
        reasons.append(c.label + ("" if id(c) in active else " — no longer active, still history"))
    if _moud_agonists(f) or [d for d in f.current_of("opioid_antagonist") if d.moud]:
        reasons.append("treatment for opioid use disorder: overdose risk is high if it is interrupted")
    if not reasons:
        return None
    return _finding(f, "warning", "Overdose risk with this opioid: prescribe naloxone",
                    [_line(d) for d in drugs] + list(dict.fromkeys(reasons)),
                    "offer naloxone and teach the patient and family how to use it; no naloxone is on record in the "
                    "last 2 years.", "CDC 2022 recommendation 8.",
                    _naloxone(f), [], about, mme_detail=False)


@rule("opioid.benzodiazepine", title="Opioid with a benzodiazepine", hooks=(PV, OS),
      sources=("FDA-OPI-BZD", "CDC2022"),
      trigger="opioid with a benzodiazepine, both ways (critical when MME ≥ MME_WARN); with MOUD: keep the MOUD, "
              "target the benzodiazepine, add naloxone",
      levels=("critical", "warning"), suggests="remove the draft; with MOUD: the benzodiazepine, and naloxone")
def benzodiazepine(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, OPIOID, ("benzodiazepine",))
    if not found_pairs or in_hospice(f):
        return None
    drugs = list({d.ref: d for p in found_pairs for d in (p.own, p.other)}.values())
    with_moud = [p for p in found_pairs if p.own.moud]
    t = total(f)
    level = "critical" if t.total >= f.params["MME_WARN"] else "warning"
    if with_moud and len(with_moud) == len(found_pairs):
        # FDA 2017: do not withhold buprenorphine or methadone from patients taking benzodiazepines.
        moud = list({p.own.ref: p.own for p in with_moud}.values())
        benzos = list({p.other.ref: p.other for p in with_moud}.values())
        benzo_advice = ("Avoid starting the benzodiazepine (remove the draft)" if all(b.selected for b in benzos)
                        else "Review the benzodiazepine with the patient (taper, do not stop abruptly)")
        return paired(_finding(f, level, f"Benzodiazepine with {moud[0].ingredients_names[0]} for opioid use disorder: "
                        "keep the MOUD, avoid the benzodiazepine, offer naloxone",
                        [_line(d) for d in moud + benzos],
                        "continue the medication for opioid use disorder: stopping it raises the risk of overdose "
                        f"death. {benzo_advice}, avoid other sedatives, and offer naloxone.",
                        "FDA 2016 boxed warning and FDA 2017 MOUD communication; CDC 2022 recommendation 11.",
                        _remove_selected(benzos) + _naloxone(f), benzos, drugs, selection="any"), found_pairs)
    summary = ("Opioid with a benzodiazepine at " + t.shown + ": fatal overdose risk — avoid" if level == "critical"
               else "Opioid with a benzodiazepine: respiratory depression and overdose risk — avoid")
    return paired(_finding(f, level, summary, [_line(d) for d in drugs],
                    "concurrent opioids and benzodiazepines increase the risk of fatal overdose; avoid the "
                    "combination, and if it cannot be avoided use the lowest doses and offer naloxone.",
                    "FDA 2016 boxed warning; CDC 2022 recommendation 11.",
                    _remove_selected(drugs) + (_naloxone(f) if with_moud else []),
                    [d for d in drugs if not d.selected and "opioid" in d.classes], drugs), found_pairs)


@rule("opioid.serotonergic", title="Serotonergic opioid with an antidepressant", hooks=(PV, OS),
      sources=("BEERS2023", "CDC2022"),
      trigger="tramadol, tapentadol, meperidine or methadone with an SSRI, SNRI or TCA (both ways); methadone MOUD: "
              "the other drug is the target",
      levels=("warning",), suggests="remove, or choose another analgesic")
def serotonergic(f: Facts, found: dict) -> Finding | None:
    found_pairs = [p for p in pairs(f, OPIOID, ("ssri", "snri", "tca")) if p.own.has_ingredient(*SEROTONERGIC_OPIOIDS)]
    if not found_pairs:
        return None
    opioids = list({p.own.ref: p.own for p in found_pairs}.values())
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    drugs = opioids + others
    if all(d.moud for d in opioids):
        return paired(_finding(f, "warning", "Antidepressant with methadone for opioid use disorder: serotonin syndrome "
                        "risk — review the antidepressant",
                        [_line(d) for d in drugs],
                        "continue the methadone for opioid use disorder. Methadone is weakly serotonergic; with "
                        "SSRIs, SNRIs or TCAs monitor for serotonin syndrome and QT prolongation, or choose an "
                        "antidepressant with less interaction, with the methadone prescriber.",
                        "AGS Beers Criteria (2023): drug–drug interactions; FDA labels.", _remove_selected(others) + _naloxone(f),
                        others, drugs, selection="any"), found_pairs)
    return paired(_finding(f, "warning", f"{opioids[0].ingredients[0].name.title()} with an antidepressant: serotonin "
                    "syndrome risk — choose another analgesic",
                    [_line(d) for d in drugs],
                    "these opioids inhibit serotonin reuptake; with SSRIs, SNRIs or TCAs they can cause serotonin "
                    "syndrome (and tramadol seizures). Choose a non-serotonergic analgesic or monitor closely.",
                    "AGS Beers Criteria (2023): drug–drug interactions; FDA labels.", _remove_selected(opioids), opioids, drugs),
                  found_pairs)


def _dose_mg(f: Facts, drug: Drug, ingredient: str) -> tuple[float | None, float | None, float | None]:
    """(mg per unit, mg per dose, mg per day) of one ingredient; the dose is at least one unit."""
    strength = f.product_strength(drug, ingredient)
    unit_mg = strength[0] if strength and strength[1] == "MG" else None
    daily = drug.daily
    per_dose = None
    amount = daily.per_administration
    if amount is not None:
        per_dose = amount.value if amount.is_mass_mg else (amount.value * unit_mg if unit_mg else None)
    elif unit_mg:
        per_dose = unit_mg
    per_day = None
    if daily.per_day is not None:
        per_day = daily.per_day if daily.is_mass_mg else (daily.per_day * unit_mg if unit_mg else None)
    return unit_mg, per_dose, per_day


def _short_name(f: Facts, drug: Drug) -> str:
    """'Oxycodone ER 60 mg', 'Fentanyl patch 25 mcg/h' for a summary line."""
    ingredient = next((i.name for i in drug.ingredients if i.drug_class == "opioid"), drug.name)
    strength = f.product_strength(drug, ingredient)
    if drug.route == "transdermal_system":
        dose = f" {strength[0] * 1000:g} mcg/h" if strength and strength[1] == "MG/HR" else ""
        return f"{ingredient.capitalize()} patch{dose}"
    dose = f" {strength[0]:g} mg" if strength and strength[1] == "MG" else ""
    return f"{ingredient.capitalize()} ER{dose}"


def tolerant_only(f: Facts, drug: Drug) -> str | None:
    """Why the label restricts this product, unit or dose to opioid-tolerant patients, if it does."""
    name = drug.name.lower()
    if drug.has_ingredient("fentanyl") and drug.route == "transdermal_system":
        return "transdermal fentanyl is contraindicated in patients who are not opioid tolerant (FDA label)"
    if not drug.er_la:
        return None
    if drug.has_ingredient("hydromorphone"):
        return "extended-release hydromorphone is for opioid-tolerant patients only (FDA label)"
    for ingredient, per_dose_max, per_day_max, units in (("oxycodone", 40, 80, ()), ("morphine", 60, 120, (100, 200))):
        if not drug.has_ingredient(ingredient):
            continue
        unit_mg, per_dose, per_day = _dose_mg(f, drug, ingredient)
        if unit_mg in units:
            return f"the {unit_mg:g} mg {ingredient} ER unit is for opioid-tolerant patients only (FDA label)"
        if per_dose is not None and per_dose > per_dose_max:
            return f"{ingredient} ER {per_dose:g} mg a dose (above {per_dose_max} mg) is for opioid-tolerant patients " \
                   "only (FDA label)"
        if per_day is not None and per_day > per_day_max:
            return f"{ingredient} ER {per_day:g} mg a day (above {per_day_max} mg) is for opioid-tolerant patients " \
                   "only (FDA label)"
    if drug.has_ingredient("hydrocodone"):
        unit_mg, per_dose, per_day = _dose_mg(f, drug, "hydrocodone")
        if "capsule" in name:  # twice-daily capsules (Zohydro ER)
            if unit_mg == 50 or (per_dose or 0) > 40 or (per_day or 0) > 80:
                return "hydrocodone ER capsules above 40 mg a dose or 80 mg a day (or the 50 mg capsule) are for " \
                       "opioid-tolerant patients only (FDA label)"
        elif (per_day or unit_mg or 0) >= 80:  # once-daily tablets (Hysingla ER)
            return "hydrocodone ER tablets at 80 mg a day or more are for opioid-tolerant patients only (FDA label)"
    return None


@rule("opioid.extended-release", title="Extended-release opioid for a patient who is not opioid tolerant",
      hooks=(OS,), sources=("CDC2022",),
      trigger="a selected extended-release/long-acting opioid or methadone for pain (not MOUD) and the patient is not "
              "opioid tolerant (§1, FDA thresholds for ≥ 7 days); critical for products, units and doses the label "
              "restricts to opioid-tolerant patients, even under the §1 exclusions",
      levels=("critical", "warning"), suggests="remove (start with immediate-release)")
def extended_release(f: Facts, found: dict) -> Finding | None:
    drugs = [d for d in _pain_subjects(f) if d.er_la or d.has_ingredient("methadone")]
    if not drugs:
        return None
    tol = tolerance(f)
    if tol.tolerant:
        return None
    restricted = {d.ref: tolerant_only(f, d) for d in drugs}
    critical = [d for d in drugs if restricted[d.ref]]
    if critical:
        why = [f"{_line(d)} — {restricted[d.ref]}" for d in critical] + [f"Not opioid tolerant: {tol.text}"]
        return _finding(f, "critical", f"{_short_name(f, critical[0])} for a patient who is not opioid tolerant: "
                        "contraindicated — remove",
                        why, "this product, strength or dose can cause fatal respiratory depression in a patient who "
                        "is not opioid tolerant. Remove it; if an opioid is needed, start with immediate-release at "
                        "the lowest dose.", "CDC 2022 recommendation 3; FDA labels (opioid-tolerant patients only).",
                        _remove_selected(critical), critical, critical)
    if _excluded(f):
        return None
    return _finding(f, "warning", "Extended-release opioid for a patient who is not opioid tolerant: start with "
                    "immediate-release", [_line(d) for d in drugs] + [f"Not opioid tolerant: {tol.text}"],
                    "do not start opioid therapy with extended-release or long-acting opioids (overdose risk); use "
                    "immediate-release at the lowest dose.", "CDC 2022 recommendation 3.",
                    _remove_selected(drugs), drugs, drugs)


@rule("opioid.acute-duration", title="Opioid supply for acute pain", hooks=(OS,), sources=("CDC2022",),
      trigger="acute back pain (< PERSISTENT_WEEKS) and a selected non-MOUD opioid supply > ACUTE_OPIOID_MAX_DAYS days "
              "(expectedSupplyDuration, or quantity ÷ daily dose)",
      levels=("warning",), suggests="update the draft to ≤ ACUTE_OPIOID_MAX_DAYS days; or remove")
def acute_duration(f: Facts, found: dict) -> Finding | None:
    drugs = _pain_subjects(f)
    if not drugs or _excluded(f) or not f.acute:
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
        why.append(f"{_line(d)} — {days:g} days' supply")
        suggestions.append(changed_draft(f, d, limit_supply(limit, per_day),
                                         f"Limit {d.name} to {limit} days' supply"))
        suggestions.append(orders.remove_draft(d.ref, d.name, recommended=False))
    if not long:
        return None
    return _finding(f, "warning", f"Opioid supply over {limit} days for acute back pain: prescribe {limit} days or less",
                    why + [f"back pain since {f.onset_date.isoformat()} ({f.duration_days} days)"],
                    f"for acute pain, prescribe no more than needed — often 3 days or less, rarely more than {limit}.",
                    "CDC 2022 recommendation 6.", suggestions, long, long)


@rule("opioid.use-disorder", title="Opioid with opioid use disorder", hooks=(PV, OS),
      sources=("CDC2022",), trigger="an opioid use disorder condition (F11.1x, F11.2x; SNOMED 5602001, 75544000) or "
                                    "current buprenorphine/methadone MOUD, and a non-MOUD opioid selected (OS) or "
                                    "current (PV); MOUD alone never fires it; on order-select with naltrexone "
                                    "current, opioid.antagonist speaks instead",
      levels=("warning",),
      suggests="continue MOUD; coordinate with the MOUD prescriber; non-opioid analgesia first; naloxone and a short "
               "supply if a full agonist is needed; offer MOUD when there is none")
def use_disorder(f: Facts, found: dict) -> Finding | None:
    drugs = _pain_subjects(f)
    # An OUD in remission or marked resolved still matters when an opioid is prescribed (the clinical definitions counts
    # it at any status for methadone; a pharmacist reads it the same way here).
    oud = f.ever_recorded("opioid_use_disorder")
    moud = _moud_agonists(f)
    if not drugs or not (oud or moud):
        return None
    if f.hook == OS and f.current_of("opioid_antagonist"):
        return None  # opioid.antagonist: the antagonist blocks the opioid
    if moud:
        names = "; ".join(d.name for d in moud)
        plan = (f"Continue the medication for opioid use disorder ({names}); do not stop or reduce it. Coordinate "
                "with its prescriber: buprenorphine may be split into 3–4 doses a day or temporarily increased, "
                "through the MOUD prescriber.")
    else:
        plan = ("No medication for opioid use disorder is on record: offer it (buprenorphine or methadone) or refer; "
                "coordinate with any OUD prescriber or addiction specialist.")
    suggestions = _naloxone(f) + [orders.remove_draft(d.ref, d.name, recommended=False)
                                  for d in drugs if d.selected]
    return _finding(f, "warning", "Opioid for a patient with opioid use disorder: coordinate care, prefer non-opioid",
                    [_line(d) for d in drugs + moud] + [c.label for c in oud],
                    f"{plan} Use multimodal non-opioid analgesia first; if a full agonist is needed, give a short "
                    "supply and naloxone.", "CDC 2022 recommendation 12.", suggestions,
                    drugs if f.hook == PV else [], drugs, selection="any")


@rule("opioid.antagonist", title="Opioid with an opioid antagonist", hooks=(OS,), sources=("CDC2022",),
      trigger="both ways: a selected non-MOUD opioid while naltrexone (oral, or extended-release injection within 30 "
              "days), naltrexone/bupropion or olanzapine/samidorphan is current; or a selected naltrexone while an "
              "opioid (MOUD included) is current",
      levels=("warning",),
      suggests="opioid selected: remove the draft, non-opioid analgesia; naltrexone selected: remove the draft")
def antagonist(f: Facts, found: dict) -> Finding | None:
    blocked = [d for d in f.selected_of(*OPIOID) if d.pain_opioid]
    antagonists = f.current_of("opioid_antagonist")
    new_antagonists = f.selected_of("opioid_antagonist")
    on_opioids = f.current_of(*OPIOID)
    why, advice, suggestions, about = [], [], [], []
    if blocked and antagonists:
        why += [_line(d) for d in blocked + antagonists]
        advice.append("the antagonist blocks the opioid's analgesia, and overriding the blockade with higher opioid "
                      "doses risks a fatal overdose. Use non-opioid analgesia and coordinate with the prescriber of "
                      f"{antagonists[0].ingredients_names[0]}.")
        for d in blocked:
            suggestions += _non_opioid_instead(f, d)
            suggestions.append(orders.remove_draft(d.ref, d.name, recommended=not suggestions))
        about += blocked
    if new_antagonists and on_opioids:
        why += [_line(d) for d in new_antagonists + on_opioids]
        advice.append("naltrexone precipitates opioid withdrawal in a patient taking opioids: it needs 7–10 "
                      "opioid-free days first (longer after buprenorphine or methadone).")
        suggestions += [orders.remove_draft(d.ref, d.name) for d in new_antagonists]
        about += new_antagonists
    if not why:
        return None
    summary = ("Opioid with naltrexone on board: blocked analgesia, overdose if overridden — remove" if blocked and
               antagonists else "Naltrexone for a patient taking opioids: precipitated withdrawal — remove")
    return _finding(f, "warning", summary, list(dict.fromkeys(why)), " ".join(advice),
                    "CDC 2022 (medications for opioid use disorder); naltrexone prescribing information (opioid "
                    "blockade, precipitated withdrawal).", suggestions, [], about, selection="any", mme_detail=False)
