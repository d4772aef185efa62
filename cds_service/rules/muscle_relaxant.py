"""The muscle-relaxant rules — skeletal muscle relaxants (order-select on a draft or the pair's other drug;
patient-view on a current one)."""

from __future__ import annotations

from .. import orders
from ..facts import Facts
from . import OS, PV, Finding, ctx, detail, rule
from .drugs import drug_finding, drug_line, fix_suggestions, paired, pairs, review_note, short_name, subjects

RELAXANT = ("skeletal_muscle_relaxant",)
LOW_START_MG = 5  # cyclobenzaprine label: start at 5 mg in mild hepatic impairment
BEERS_RELAXANTS = ("carisoprodol", "chlorzoxazone", "cyclobenzaprine", "metaxalone", "methocarbamol", "orphenadrine")


@rule("muscle-relaxant.older-adult", title="Muscle relaxant in an older adult", hooks=(PV, OS),
      sources=("BEERS2023", "ACP2017"),
      trigger="age ≥ OLDER_AGE and carisoprodol, chlorzoxazone, cyclobenzaprine, metaxalone, methocarbamol or "
              "orphenadrine", levels=("warning",), suggests="remove; physical therapy")
def older_adult(f: Facts, found: dict) -> Finding | None:
    drugs = [d for d in subjects(f, *RELAXANT) if d.has_ingredient(*BEERS_RELAXANTS)]
    if not drugs or not f.older_adult:
        return None
    pt = [] if f.procedures_in("nonpharm_procedures", since=f.onset_date) else [
        orders.order_service("physical_therapy", ctx(f), recommended=False)]
    return drug_finding(f, "warning", f"Muscle relaxant at age {f.age}: sedation, falls and fractures — avoid",
                    drugs, [drug_line(d) for d in drugs] + [f"age {f.age}"],
                    "Muscle relaxants are poorly tolerated by older adults (anticholinergic effects, sedation, "
                    "falls) and their benefit is doubtful. Prefer exercise therapy.",
                    "AGS Beers Criteria (2023): avoid (strong recommendation, moderate quality).", extra=pt, selection="any")


def _strength(d) -> float | None:
    return d.strength_mg("cyclobenzaprine")


@rule("muscle-relaxant.hepatic", title="Cyclobenzaprine with liver disease", hooks=(PV, OS),
      sources=("FDA-CYCLO", "BEERS2023"),
      trigger="cyclobenzaprine and decompensated cirrhosis (critical), or cirrhosis or other liver disease except "
              "simple steatosis (warning)",
      levels=("critical", "warning", "info"),
      suggests="critical: remove; mild: replace with cyclobenzaprine 5 mg when the draft is stronger (a 5 mg "
               "draft gets an info note)")
def hepatic(f: Facts, found: dict) -> Finding | None:
    drugs = [d for d in subjects(f, *RELAXANT) if d.has_ingredient("cyclobenzaprine")]
    if not drugs:
        return None
    severe = f.conditions_in("cirrhosis_decompensated")
    mild = [c for c in f.conditions_in("cirrhosis", "hepatic_disease")
            if "hepatic_steatosis_only" not in c.valuesets and c not in severe]
    if not severe and not mild:
        return None
    why = [drug_line(d) for d in drugs] + [c.label for c in severe + mild]
    if severe:
        return drug_finding(f, "critical", "Cyclobenzaprine with decompensated liver disease: not recommended",
                        drugs, why, "Cyclobenzaprine is not recommended in moderate to severe hepatic impairment "
                        "(higher plasma levels, sedation, encephalopathy risk).", "FDA label.")
    extra = []
    for d in drugs:
        strength = _strength(d)
        if d.selected and strength and strength > LOW_START_MG and not f.older_adult:
            extra.append(orders.replace_draft(d.ref, d.name, "cyclobenzaprine_5", ctx(f), recommended=True))
    if all((_strength(d) or 99) <= LOW_START_MG for d in drugs):
        # Already the low start the label asks for (the 5 mg this rule itself suggests): a note, not a
        # warning, so accepting the suggestion clears the alert (choice recorded for clinical review).
        return Finding("info", "Cyclobenzaprine 5 mg with mild liver disease: the right start — titrate slowly",
                       detail(why, "5 mg is the recommended start in mild hepatic impairment; increase slowly and "
                              "stop if impairment is moderate or severe.", "FDA label: cyclobenzaprine."))
    return Finding("warning", "Cyclobenzaprine with liver disease: start at 5 mg and titrate slowly",
                   detail(why, "in mild hepatic impairment start with 5 mg and increase slowly; avoid if impairment "
                          "is moderate or severe.", "FDA label: cyclobenzaprine.", review_note(drugs)),
                   extra + fix_suggestions(f, drugs), "at-most-one")


@rule("muscle-relaxant.renal", title="Baclofen with reduced kidney function", hooks=(PV, OS),
      sources=("BEERS2023", "KDIGO"), trigger="baclofen and eGFR < EGFR_CAUTION", levels=("warning",),
      suggests="remove, or reduce the dose")
def renal(f: Facts, found: dict) -> Finding | None:
    drugs = [d for d in subjects(f, *RELAXANT) if d.has_ingredient("baclofen")]
    egfr = f.egfr
    if not drugs or not egfr or not egfr.below(f.params["EGFR_CAUTION"]):
        return None
    return drug_finding(f, "warning", f"Baclofen with eGFR {egfr.shown}: risk of encephalopathy — reduce the dose or avoid",
                    drugs, [drug_line(d) for d in drugs] + [f"eGFR {egfr.shown} on {egfr.date.isoformat()}"],
                    "Baclofen is renally cleared; toxicity (confusion, coma) occurs at usual doses when kidney "
                    "function is reduced. Reduce the dose (e.g. by a third at eGFR 50–80, by half at 30–50) or avoid.",
                    f"AGS Beers Criteria (2023): avoid at eGFR < {f.params['EGFR_CAUTION']:g} or reduce the dose.")


@rule("muscle-relaxant.sedation", title="Muscle relaxant: sedation", hooks=(OS,), sources=("ACP2017", "FDA-CYCLO"),
      trigger="any selected muscle relaxant", levels=("info",), evidence_only=True)
def sedation(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *RELAXANT)
    if not drugs:
        return None
    return Finding("info", "Muscle relaxant: drowsiness — no driving or machinery until effects are known, no alcohol",
                   detail([drug_line(d) for d in drugs], "counsel the patient; short courses only (2–3 weeks).",
                          "ACP low back pain guideline (2017): small short-term benefit for acute low back pain, with "
                          "more adverse effects."))


@rule("muscle-relaxant.cns-depressants", title="Muscle relaxant with other CNS depressants", hooks=(PV, OS),
      sources=("BEERS2023", "FDA-OPI-BZD"),
      trigger="muscle relaxant with a current or draft opioid, benzodiazepine or gabapentinoid (critical when 3 or "
              "more CNS-active drugs in all, the relaxant included)",
      levels=("critical", "warning"), suggests="remove")
def cns_depressants(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, RELAXANT, ("opioid", "benzodiazepine", "gabapentinoid"))
    if not found_pairs:
        return None
    relaxants = list({p.own.ref: p.own for p in found_pairs}.values())
    cns = {frozenset(i.name for i in d.ingredients): d for d in f.current + f.selected if "cns_active" in d.classes}
    level = "critical" if len(cns) >= 3 else "warning"
    summary = (f"{len(cns)} CNS depressants including a muscle relaxant: respiratory depression risk — avoid"
               if level == "critical" else
               f"{short_name(relaxants[0]).capitalize()} with {short_name(found_pairs[0].other)}: sedation and "
               "breathing risk — avoid")
    return paired(drug_finding(f, level, summary, relaxants, [drug_line(d) for d in cns.values()],
                    "Combining CNS-active drugs raises the risk of falls, over-sedation and respiratory depression; "
                    "the opioid + benzodiazepine + muscle relaxant combination is the most dangerous.",
                    "AGS Beers Criteria (2023): avoid 3 or more CNS-active drugs (strong recommendation)."), found_pairs)


@rule("muscle-relaxant.serotonergic", title="Cyclobenzaprine with serotonergic drugs", hooks=(PV, OS),
      sources=("FDA-CYCLO",), trigger="cyclobenzaprine with an SSRI, SNRI, TCA or tramadol (both ways)",
      levels=("warning",), suggests="remove")
def serotonergic(f: Facts, found: dict) -> Finding | None:
    found_pairs = [p for p in pairs(f, RELAXANT, ("ssri", "snri", "tca", "opioid"))
                   if p.own.has_ingredient("cyclobenzaprine")
                   and (p.other.classes & {"ssri", "snri", "tca"} or p.other.has_ingredient("tramadol"))]
    if not found_pairs:
        return None
    drugs = list({p.own.ref: p.own for p in found_pairs}.values())
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    return paired(drug_finding(f, "warning", "Cyclobenzaprine with a serotonergic drug: serotonin syndrome risk",
                    drugs, [drug_line(d) for d in drugs + others],
                    "Cyclobenzaprine is structurally a tricyclic; with SSRIs, SNRIs, TCAs or tramadol it can cause "
                    "serotonin syndrome. Choose another option or monitor closely.", "FDA label."), found_pairs)
