"""The second-line rules — second-line drugs: gabapentinoids, duloxetine, tricyclic antidepressants."""

from __future__ import annotations

from ..facts import Facts
from .. import orders
from . import OS, PV, Finding, ctx, detail, rule
from .drugs import changed_draft, drug_finding, drug_line, fix_suggestions, paired, pairs, review_note, short_name, subjects

GABAPENTINOID = ("gabapentinoid",)
DULOXETINE_EGFR_AVOID = 30  # label number, not a site parameter

@rule("gabapentinoid.cns-depressants", title="Gabapentinoid with CNS depressants or respiratory risk",
      hooks=(PV, OS), sources=("FDA-GABA", "BEERS2023"),
      trigger="gabapentinoid with an opioid or benzodiazepine (both ways), or with COPD or sleep apnoea",
      levels=("warning",), suggests="remove, or start low and monitor")
def cns_depressants(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, GABAPENTINOID, ("opioid", "benzodiazepine"))
    resp = f.conditions_in("copd_sleep_apnea_resp_risk")
    drugs = list({p.own.ref: p.own for p in found_pairs}.values())
    if not drugs and resp:
        drugs = subjects(f, *GABAPENTINOID)
    if not drugs:
        return None
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    partner = (short_name(others[0]) if others else "COPD or sleep apnoea")
    return paired(drug_finding(f, "warning", f"{short_name(drugs[0]).capitalize()} with {partner}: respiratory depression — "
                    "avoid or start low",
                    drugs, [drug_line(d) for d in drugs + others] + [c.label for c in resp],
                    "Gabapentin and pregabalin add to opioid and benzodiazepine respiratory depression, worst with "
                    "lung disease. Avoid the combination, or start at the lowest dose and monitor.",
                    "FDA 2019 drug safety communication; AGS Beers Criteria (2023)."), found_pairs)


def _band_max(ingredient: str, egfr: float) -> int | None:
    """Label maximum mg/day for the eGFR band (the second-line rules); None when no reduction is needed."""
    if ingredient == "gabapentin":
        return None if egfr >= 60 else 1400 if egfr >= 30 else 700 if egfr >= 15 else 300
    return None if egfr > 60 else 300 if egfr >= 30 else 150 if egfr >= 15 else 75


def _reduce_frequency(f: Facts, drug, ingredient: str, maximum: int):
    """Same dose per administration, fewer a day, to fit under the maximum (None when it cannot)."""
    daily = drug.daily
    if daily.per_administration is None or not daily.administrations_per_day:
        return None
    dose = daily.per_administration
    per_dose = dose.value if dose.is_mass_mg else (drug.strength_mg(ingredient) or 0) * dose.value
    if per_dose <= 0 or per_dose > maximum:
        return None
    times = int(maximum // per_dose)
    if times >= daily.administrations_per_day:
        return None
    label = f"Reduce {drug.name} to {times} time{'s' if times > 1 else ''} a day ({per_dose * times:g} mg/day)"

    units_per_dose = None if dose.is_mass_mg else dose.value

    def change(resource):
        for dosage in resource.get("dosageInstruction", []):
            dosage["timing"] = {"repeat": {"frequency": times, "period": 1, "periodUnit": "d"}}
            dosage["text"] = (f"{per_dose:g} mg {times} time{'s' if times > 1 else ''} daily (renal dose; no more "
                              f"than {maximum:,} mg a day)")
            dosage["maxDosePerPeriod"] = {"numerator": {"value": per_dose * times, "unit": "mg",
                                                        "system": "http://unitsofmeasure.org", "code": "mg"},
                                          "denominator": {"value": 1, "unit": "day",
                                                          "system": "http://unitsofmeasure.org", "code": "d"}}
        # Keep the supply: the same number of days, fewer units.
        dispense = resource.get("dispenseRequest")
        days = (dispense or {}).get("expectedSupplyDuration", {}).get("value") if isinstance(dispense, dict) else None
        if isinstance(days, (int, float)) and units_per_dose and isinstance(dispense.get("quantity"), dict):
            dispense["quantity"] = {**dispense["quantity"], "value": units_per_dose * times * days}
    return changed_draft(f, drug, change, label)


@rule("gabapentinoid.renal", title="Gabapentinoid dose for kidney function", hooks=(PV, OS),
      sources=("FDA-GABAPENTIN", "BEERS2023", "KDIGO"),
      trigger="gabapentin or pregabalin daily dose above the label maximum for the eGFR band (warning); eGFR < 60 / CKD "
              "with the dose unknown, or an older adult with no eGFR within LAB_LOOKBACK_DAYS (info)",
      levels=("warning", "info"), suggests="reduce the dose; or order an eGFR when kidney function is unknown")
def renal(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *GABAPENTINOID)
    if not drugs:
        return None
    egfr = f.egfr
    ckd = f.conditions_in("ckd_stage3", "ckd_stage4_5_dialysis")
    over, unknown, extra, why = [], [], [], []
    for d in drugs:
        ingredient = "pregabalin" if d.has_ingredient("pregabalin") else "gabapentin"
        mg_day = d.daily_mg(ingredient)
        if egfr is not None and egfr.comparator not in {">", ">="}:
            maximum = _band_max(ingredient, egfr.value)
            if maximum is None:
                continue
            if mg_day is None:
                unknown.append(d)
                why.append(f"{drug_line(d)} — daily dose unknown ({d.daily.reason}); label maximum {maximum:,} mg/day")
            elif mg_day > maximum:
                over.append(d)
                why.append(f"{drug_line(d)} — {mg_day:,.0f} mg/day; label maximum at this eGFR {maximum:,} mg/day")
                if d.selected:
                    s = _reduce_frequency(f, d, ingredient, maximum)
                    if s:
                        extra.append(s)
        elif ckd or (egfr and egfr.below(60)):
            unknown.append(d)
            why.append(f"{drug_line(d)} — check the dose against kidney function")
    if not over and not unknown:
        if egfr is None and f.older_adult:
            return _kidney_function_unknown(f, drugs)
        return None
    if egfr:
        why.append(f"eGFR {egfr.shown} on {egfr.date.isoformat()}")
    why += [c.label for c in ckd]
    level = "warning" if over else "info"
    egfr_text = f"eGFR {egfr.shown}" if egfr else "CKD"
    first = over[0] if over else None
    first_mg = first.daily_mg("pregabalin" if first and first.has_ingredient("pregabalin") else "gabapentin") if first else None
    summary = (f"{first.name.split()[0].capitalize()} {first_mg:,.0f} mg/day above the maximum for {egfr_text}: "
               "reduce the dose" if over and first_mg else
               "Gabapentinoid dose above the maximum for this eGFR: reduce the dose" if over else
               f"Gabapentinoid with reduced kidney function ({egfr_text}): check the daily dose")
    culprits = over or unknown
    finding = Finding(level, summary,
                   detail(why, "gabapentin and pregabalin are cleared by the kidney; above the label maximum they cause "
                          "sedation, dizziness and falls. Gabapentin: eGFR 30–59 ≤ 1,400 mg/day, 15–29 ≤ 700, < 15 ≤ "
                          "300. Pregabalin: 30–60 ≤ 300, 15–30 ≤ 150, < 15 ≤ 75.",
                          "FDA labels: gabapentin and pregabalin (renal dosing); AGS Beers Criteria (2023): reduce "
                          "the dose.", review_note(culprits)),
                   extra + (fix_suggestions(f, over) if over else []), "at-most-one")
    if egfr is not None:  # the label's own eGFR bands (60, 30, 15)
        finding.band = sum(egfr.below(t) for t in (60, 30, 15))
    return finding


def _kidney_function_unknown(f: Facts, drugs) -> Finding:
    unreadable = f.unreadable_note("eGFR")
    return Finding("info", f"Gabapentinoid at age {f.age}: kidney function unknown: check eGFR before dosing",
                   detail([drug_line(d) for d in drugs] + [f"age {f.age}",
                          f"no eGFR in the last {f.params['LAB_LOOKBACK_DAYS']:g} days"],
                          "gabapentin and pregabalin doses depend on kidney function, which declines with age; check "
                          f"eGFR before dosing or increasing.{unreadable}",
                          "FDA labels: gabapentin and pregabalin (renal dosing); AGS Beers Criteria (2023)."),
                   [orders.order_service("egfr", ctx(f))])


@rule("gabapentinoid.evidence", title="Gabapentinoids for sciatica: evidence", hooks=(OS,),
      sources=("NICE-NG59", "JENSEN2019"), trigger="a selected gabapentinoid for a patient with radiculopathy",
      levels=("info",), evidence_only=True)
def evidence(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *GABAPENTINOID)
    if not drugs or not f.has_radic:
        return None
    return Finding("info", "Gabapentinoids for sciatica: little benefit; NICE advises against",
                   detail([drug_line(d) for d in drugs] + [c.label for c in f.radic_conditions],
                          "trials show little or no benefit of gabapentin or pregabalin for sciatica, with dizziness "
                          "and somnolence; NICE NG59 says do not offer them for sciatica. The seed guidance credits a "
                          "small short-term benefit.", "NICE NG59; Jensen 2019."))


@rule("duloxetine.cautions", title="Duloxetine cautions", hooks=(PV, OS), sources=("FDA-DULOXETINE", "BEERS2023"),
      trigger="duloxetine with eGFR < 30 or CKD stage 4–5, liver disease, an alcohol use disorder, or tramadol "
              "(both ways)",
      levels=("warning",), suggests="remove")
def duloxetine(f: Facts, found: dict) -> Finding | None:
    egfr = f.egfr
    renal = (egfr is not None and egfr.below(DULOXETINE_EGFR_AVOID)) or bool(f.conditions_in("ckd_stage4_5_dialysis"))
    liver = [c for c in f.conditions_in("hepatic_disease", "alcohol_use_disorder")
             if "hepatic_steatosis_only" not in c.valuesets]
    culprits = [d for d in subjects(f, "snri") if d.has_ingredient("duloxetine")] if (renal or liver) else []
    tramadol = [p for p in pairs(f, ("snri",), ("opioid",)) if p.own.has_ingredient("duloxetine")
                and p.other.has_ingredient("tramadol")]
    culprits = list({d.ref: d for d in culprits + [p.own for p in tramadol]}.values())
    if not culprits:
        return None
    why = [drug_line(d) for d in culprits] + [drug_line(p.other) for p in tramadol]
    if renal:
        why.append(f"eGFR {egfr.shown}" if egfr and egfr.below(DULOXETINE_EGFR_AVOID) else "CKD stage 4–5 or dialysis")
    why += [c.label for c in liver]
    reasons = ([f"eGFR {egfr.shown}" if egfr and egfr.below(DULOXETINE_EGFR_AVOID) else "CKD stage 4–5"] if renal
               else []) + (["liver disease or alcohol use"] if liver else []) + (["tramadol"] if tramadol else [])
    return paired(drug_finding(f, "warning", f"Duloxetine with {' and '.join(reasons)}: avoid",
                        culprits, why,
                        "Duloxetine is not recommended with eGFR < 30, hepatic impairment or substantial alcohol use "
                        "(hepatotoxicity, raised levels); with tramadol it risks serotonin syndrome and seizures.",
                        "FDA label: duloxetine; AGS Beers Criteria (2023)."), tramadol)


@rule("tca.older-adult", title="Tricyclic antidepressant in an older adult", hooks=(PV, OS),
      sources=("BEERS2023",), trigger="age ≥ OLDER_AGE and a tricyclic antidepressant (not doxepin ≤ 6 mg/day)",
      levels=("warning",), suggests="remove")
def tca_older_adult(f: Facts, found: dict) -> Finding | None:
    if not f.older_adult:
        return None
    drugs = []
    for d in subjects(f, "tca"):
        if d.has_ingredient("doxepin"):
            mg = d.daily_mg("doxepin")
            low = mg is not None and mg <= 6 or (d.strength_mg("doxepin") or 99) <= 6
            if low:
                continue
        drugs.append(d)
    if not drugs:
        return None
    return drug_finding(f, "warning", f"Tricyclic antidepressant at age {f.age}: anticholinergic, sedating — avoid",
                    drugs, [drug_line(d) for d in drugs] + [f"age {f.age}"],
                    "TCAs are strongly anticholinergic and sedating; they cause confusion, orthostatic hypotension "
                    "and falls in older adults. Consider duloxetine or non-drug options.",
                    "AGS Beers Criteria (2023): avoid (strong recommendation).")
