"""The NSAID rules — NSAID safety (order-select on a draft NSAID or the pair's other drug;
patient-view on a current NSAID). "NSAID" here is always a systemic NSAID (facts class `nsaid`)."""

from __future__ import annotations

import re

from ..facts import ConditionFact, Facts
from ..terminology import ICD10CM
from . import OS, PV, Finding, detail, rule, suggest
from .drugs import drug_detail, drug_line, fix_suggestions, paired, pairs, protected, subjects

NSAID = ("nsaid",)
PREGNANCY_CURRENT_WEEKS = 42  # a pregnancy code counts for 42 weeks from its onset or recording


# -- NSAID contraindication: the one definition every rule that suggests or forbids an NSAID uses ------
def pregnancies(f: Facts) -> list[ConditionFact]:
    """Pregnancy codes count only when onset/recorded is at most 42 weeks ago."""
    return [c for c in f.conditions_in("pregnancy_any", "pregnancy_ge20wk")
            if c.start is not None and (f.today - c.start).days <= PREGNANCY_CURRENT_WEEKS * 7]


def pregnancy_ge20(f: Facts) -> list[ConditionFact]:
    """Pregnancies at 20 weeks or more: a third-trimester code, or Z3A.nn plus the weeks since it."""
    out = []
    for c in pregnancies(f):
        weeks_since = (f.today - c.start).days / 7
        z3a = next((int(k.code[3:5]) for k in c.codes if k.system == ICD10CM
                    and re.fullmatch(r"Z3A\d\d", k.code.replace(".", ""))), None)
        if "pregnancy_ge20wk" in c.valuesets and (z3a is None or z3a >= 20):
            out.append(c)
        elif z3a is not None and z3a + weeks_since >= 20:
            out.append(c)
    return out


def nsaid_contraindications(f: Facts) -> list[str]:
    """Why no NSAID may be suggested (and why a drafted one should go)."""
    reasons = [f"GI bleeding or ulcer: {c.label}" for c in f.conditions_in("gi_bleed_ulcer")]
    reasons += [f"current {d.label}" for d in f.current_of("anticoagulant", "antiplatelet_p2y12", "antiplatelet_aspirin")]
    egfr = f.egfr
    if egfr and egfr.below(f.params["EGFR_CAUTION"]):
        reasons.append(f"eGFR {egfr.shown} on {egfr.date.isoformat()}")
    for vs, what in (("ckd_stage3", "CKD stage 3"), ("ckd_stage4_5_dialysis", "CKD stage 4–5 or dialysis"),
                     ("heart_failure", "heart failure"), ("pregnancy_any", "pregnancy"),
                     ("cirrhosis", "cirrhosis"), ("cirrhosis_decompensated", "decompensated cirrhosis")):
        for c in (pregnancies(f) if vs == "pregnancy_any" else f.conditions_in(vs)):
            reasons.append(f"{what}: {c.label}")
    reasons += [f"current {d.label}" for d in f.current_of("lithium", "methotrexate")]
    return reasons


def nsaid_allowed(f: Facts) -> bool:
    """An NSAID may be suggested: no contraindication, and kidney function is known or not needed."""
    return not nsaid_contraindications(f) and "observations" not in f.unavailable


def nsaid_needs_ppi(f: Facts) -> list[str]:
    """Risks that call for naproxen with pantoprazole rather than alone."""
    reasons = [f"age {f.age}"] if f.older_adult else []
    return reasons + [f"current {d.label}" for d in f.current_of("ssri", "snri", "systemic_corticosteroid")]


def _data_note(f: Facts) -> str:
    reason = f.egfr_unknown_reason
    return (f"\n\nKidney function could not be checked: {reason}." if reason else "") + f.unreadable_note("eGFR")


def _finding(f: Facts, level: str, summary: str, why: list[str], advice: str, evidence: str, culprits,
             *, remove=True, acetaminophen=False, ppi=False, selection="at-most-one") -> Finding:
    """An NSAID finding; `remove` offers removing the draft. The rules marked `contraindication` are
    the NSAID contraindication of the facts: their card drops the suggestions that keep the NSAID."""
    suggestions = fix_suggestions(f, culprits, remove=remove, replace_with="acetaminophen_500" if acetaminophen else None,
                                  add=("pantoprazole_40",) if ppi else ())
    note = _data_note(f)
    if acetaminophen:
        note += "".join(f"\n\n{line}" for line in [suggest.acetaminophen(f)[1]] if line)
    return Finding(level, summary, drug_detail(why, advice, culprits, evidence, note), suggestions, selection)


@rule("nsaid.gi-bleed", title="NSAID with GI bleeding or ulcer", hooks=(PV, OS), contraindication=True, sources=("BEERS2023", "ACP2017"),
      trigger="systemic NSAID and GI bleeding or peptic ulcer (critical when ≤ 12 months, except K62.5 and Z87.11)",
      levels=("critical", "warning"), suggests="remove the NSAID; or add pantoprazole 40 mg; acetaminophen")
def gi_bleed(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    bleeds = f.conditions_in("gi_bleed_ulcer")
    if not drugs or not bleeds:
        return None
    recent = [c for c in bleeds if "gi_bleed_history_only" not in c.valuesets and c.start
              and (f.today - c.start).days <= 365]
    level = "critical" if recent else "warning"
    why = [drug_line(d) for d in drugs] + [f"{c.label}" + (f", {c.start.isoformat()}" if c.start else "") for c in bleeds]
    return _finding(f, level, f"NSAID with {'recent ' if recent else ''}GI bleeding or ulcer: avoid, or protect with a PPI",
                    why, "NSAIDs multiply the risk of upper GI bleeding 3–5-fold, highest after a recent bleed. "
                    "Prefer acetaminophen; if an NSAID is essential, add a PPI and use the lowest dose.",
                    "AGS Beers Criteria (2023): avoid in history of GI bleeding unless alternatives fail and a PPI is added.",
                    drugs, acetaminophen=True, ppi=not protected(f))


@rule("nsaid.anticoagulant", title="NSAID with an anticoagulant or antiplatelet", hooks=(PV, OS), contraindication=True,
      sources=("BEERS2023", "ACP2017"),
      trigger="systemic NSAID with a current anticoagulant (critical), P2Y12 antiplatelet or antiplatelet aspirin "
              "(warning); fires both ways on order-select",
      levels=("critical", "warning"), suggests="remove the NSAID; acetaminophen")
def anticoagulant(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, NSAID, ("anticoagulant", "antiplatelet_p2y12", "antiplatelet_aspirin"))
    if not found_pairs:
        return None
    anticoag = [p for p in found_pairs if "anticoagulant" in p.other.classes]
    level = "critical" if anticoag else "warning"
    others = {p.other.ref: p.other for p in found_pairs}
    nsaids = list({p.own.ref: p.own for p in found_pairs}.values())
    what = "an anticoagulant" if anticoag else "an antiplatelet"
    return paired(_finding(f, level, f"NSAID with {what}: high bleeding risk — use acetaminophen instead",
                    [drug_line(d) for d in nsaids + list(others.values())],
                    f"an NSAID with {what} raises the risk of major bleeding (GI and other) about 2–3-fold. Use "
                    "acetaminophen; if an NSAID cannot be avoided, add a PPI and keep it short.",
                    "AGS Beers Criteria (2023): avoid (strong recommendation).", nsaids, acetaminophen=True), found_pairs)


def _gastro_pair_rule(f: Facts, other_classes: tuple[str, ...], what: str, why_risk: str) -> Finding | None:
    found_pairs = pairs(f, NSAID, other_classes)
    if not found_pairs:
        return None
    nsaids = list({p.own.ref: p.own for p in found_pairs}.values())
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    ppi = protected(f)
    why = [drug_line(d) for d in nsaids + others] + [f"gastroprotection: {d.label}" for d in ppi]
    if ppi:
        return paired(Finding("info", f"NSAID with {what}: GI risk, already protected by {ppi[0].name.split()[0]}",
                       detail(why, f"{why_risk} A PPI or misoprostol is current; keep it while the NSAID continues.",
                              "AGS Beers Criteria (2023).")), found_pairs)
    return paired(_finding(f, "warning", f"NSAID with {what}: GI bleeding risk — add a PPI or avoid", why,
                    f"{why_risk} Add a PPI (pantoprazole 40 mg daily) or avoid the NSAID.",
                    "AGS Beers Criteria (2023), moderate quality.", nsaids, remove=False, ppi=True), found_pairs)


@rule("nsaid.ssri-snri", title="NSAID with an SSRI or SNRI", hooks=(PV, OS), sources=("BEERS2023",),
      trigger="systemic NSAID with a current SSRI or SNRI (info when a PPI or misoprostol is current)",
      levels=("warning", "info"), suggests="add a PPI; or remove")
def ssri_snri(f: Facts, found: dict) -> Finding | None:
    return _gastro_pair_rule(f, ("ssri", "snri"), "an SSRI/SNRI",
                             "SSRIs and SNRIs impair platelet serotonin uptake; with an NSAID the risk of upper GI "
                             "bleeding rises several-fold.")


@rule("nsaid.corticosteroid", title="NSAID with a systemic corticosteroid", hooks=(PV, OS), sources=("BEERS2023",),
      trigger="systemic NSAID with a current systemic corticosteroid (info when a PPI or misoprostol is current)",
      levels=("warning", "info"), suggests="add a PPI; or remove")
def corticosteroid(f: Facts, found: dict) -> Finding | None:
    return _gastro_pair_rule(f, ("systemic_corticosteroid",), "a corticosteroid",
                             "Corticosteroids with NSAIDs increase peptic ulcer and GI bleeding risk.")


@rule("nsaid.renal", title="NSAID with reduced kidney function", hooks=(PV, OS), contraindication=True, sources=("KDIGO", "BEERS2023"),
      trigger="systemic NSAID and eGFR < EGFR_AVOID or CKD stage 4–5/dialysis (critical); eGFR < EGFR_CAUTION or "
              "CKD stage 3 (warning)",
      levels=("critical", "warning"), suggests="remove the NSAID; acetaminophen")
def renal(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    if not drugs:
        return None
    egfr = f.egfr
    severe = f.conditions_in("ckd_stage4_5_dialysis")
    moderate = f.conditions_in("ckd_stage3")
    if (egfr and egfr.below(f.params["EGFR_AVOID"])) or severe:
        level = "critical"
    elif (egfr and egfr.below(f.params["EGFR_CAUTION"])) or moderate:
        level = "warning"
    else:
        return None
    why = [drug_line(d) for d in drugs] + [c.label for c in severe + moderate]
    if egfr:
        why.append(f"eGFR {egfr.shown} mL/min/1.73 m² on {egfr.date.isoformat()} (LOINC {egfr.code})")
    figure = f"eGFR {egfr.shown}" if egfr else "CKD"
    summary = (f"NSAID with {figure}: avoid — risk of acute kidney injury" if level == "critical"
               else f"NSAID with {figure}: kidney risk — avoid or use briefly and recheck eGFR")
    finding = _finding(f, level, summary, why,
                    "NSAIDs reduce renal perfusion and can cause acute kidney injury and hyperkalaemia; avoid below "
                    f"eGFR {f.params['EGFR_AVOID']:g}, and below {f.params['EGFR_CAUTION']:g} use only briefly with "
                    "monitoring. Acetaminophen is the safer analgesic.",
                    "KDIGO 2024: avoid prolonged NSAIDs in CKD, avoid with eGFR < 30; AGS Beers Criteria (2023).", drugs,
                    acetaminophen=True)
    if egfr:
        finding.band = sum(egfr.below(f.params[k]) for k in ("EGFR_CAUTION", "EGFR_AVOID"))
    return finding


@rule("nsaid.heart-failure", title="NSAID with heart failure", hooks=(PV, OS), contraindication=True, sources=("BEERS2023", "ACP2017"),
      trigger="systemic NSAID and heart failure", levels=("warning",), suggests="remove the NSAID")
def heart_failure(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    hf = f.conditions_in("heart_failure")
    if not drugs or not hf:
        return None
    return _finding(f, "warning", "NSAID with heart failure: fluid retention and decompensation — avoid",
                    [drug_line(d) for d in drugs] + [c.label for c in hf],
                    "NSAIDs cause sodium and water retention and can precipitate heart-failure admission.",
                    "AGS Beers Criteria (2023): avoid in heart failure.", drugs)


@rule("nsaid.cardiovascular", title="NSAID with cardiovascular disease", hooks=(PV, OS),
      sources=("FDA-NSAID-CV", "BEERS2023"),
      trigger="systemic NSAID and coronary disease, myocardial infarction or stroke", levels=("warning",),
      suggests="lowest dose, shortest time; or remove")
def cardiovascular(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    cv = f.conditions_in("ascvd_mi_stroke")
    if not drugs or not cv:
        return None
    naproxen = " Naproxen has the most favourable cardiovascular profile." if not any(
        d.has_ingredient("naproxen") for d in drugs) else ""
    return _finding(f, "warning", "NSAID with cardiovascular disease: lowest dose for the shortest time, or avoid",
                    [drug_line(d) for d in drugs] + [c.label for c in cv],
                    f"NSAIDs raise the risk of myocardial infarction and stroke, most in those with disease already; "
                    f"use the lowest effective dose for the shortest time.{naproxen}",
                    "FDA 2015 drug safety communication.", drugs)


@rule("nsaid.pregnancy", title="NSAID in pregnancy", hooks=(PV, OS), contraindication=True, sources=("FDA-NSAID-PREG",),
      trigger="systemic NSAID and pregnancy ≥ 20 weeks (critical) or any pregnancy (warning)",
      levels=("critical", "warning"), suggests="remove the NSAID; acetaminophen")
def pregnancy(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    pregnant = pregnancies(f)
    if not drugs or not pregnant:
        return None
    late = pregnancy_ge20(f)
    level = "critical" if late else "warning"
    summary = ("NSAID at ≥ 20 weeks of pregnancy: avoid — fetal kidney injury, low amniotic fluid" if late else
               "NSAID in pregnancy: avoid unless essential; never from 20 weeks")
    return _finding(f, level, summary, [drug_line(d) for d in drugs] + [c.label for c in pregnant],
                    "From 20 weeks NSAIDs can cause fetal renal dysfunction and oligohydramnios, and from 30 weeks "
                    "premature closure of the ductus arteriosus. Acetaminophen is preferred.",
                    "FDA 2020 drug safety communication.", drugs, acetaminophen=True)


@rule("nsaid.cirrhosis", title="NSAID with cirrhosis", hooks=(PV, OS), contraindication=True, sources=("AASLD-ASCITES",),
      trigger="systemic NSAID and decompensated cirrhosis (critical) or cirrhosis (warning)",
      levels=("critical", "warning"), suggests="remove the NSAID")
def cirrhosis(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    decompensated = f.conditions_in("cirrhosis_decompensated")
    compensated = f.conditions_in("cirrhosis")
    if not drugs or not (decompensated or compensated):
        return None
    level = "critical" if decompensated else "warning"
    return _finding(f, level, "NSAID with " + ("decompensated " if decompensated else "") +
                    "cirrhosis: avoid — renal failure and bleeding risk",
                    [drug_line(d) for d in drugs] + [c.label for c in decompensated + compensated],
                    "In cirrhosis NSAIDs precipitate hepatorenal syndrome, diuretic-resistant ascites and variceal "
                    "bleeding. Acetaminophen up to 2 g/day is preferred.",
                    "AASLD 2021: avoid NSAIDs in patients with ascites.", drugs)


@rule("nsaid.lithium-methotrexate", title="NSAID with lithium or methotrexate", hooks=(PV, OS), contraindication=True,
      sources=("BEERS2023",), trigger="systemic NSAID with current lithium or methotrexate (both ways)",
      levels=("warning",), suggests="remove the NSAID")
def lithium_methotrexate(f: Facts, found: dict) -> Finding | None:
    found_pairs = pairs(f, NSAID, ("lithium", "methotrexate"))
    if not found_pairs:
        return None
    nsaids = list({p.own.ref: p.own for p in found_pairs}.values())
    others = list({p.other.ref: p.other for p in found_pairs}.values())
    name = others[0].name.split()[0].lower()
    return paired(_finding(f, "warning", f"NSAID with {name}: reduced clearance and toxicity — avoid or monitor levels",
                    [drug_line(d) for d in nsaids + others],
                    "NSAIDs reduce renal clearance of lithium and methotrexate, raising levels into the toxic range. "
                    "Avoid, or monitor levels closely.", "AGS Beers Criteria (2023): drug–drug interactions.", nsaids), found_pairs)


@rule("nsaid.duplicate", title="Two NSAIDs", hooks=(PV, OS), sources=("BEERS2023",),
      trigger="two systemic NSAID orders (draft + current, or two current), the same ingredient in another salt "
              "or strength included", levels=("warning",),
      suggests="remove one")
def duplicate(f: Facts, found: dict) -> Finding | None:
    # Two orders, whatever their salt or strength (naproxen + naproxen sodium count); pairs() never
    # pairs an order with itself, and the record has each resource once.
    found_pairs = pairs(f, NSAID, NSAID)
    if not found_pairs:
        return None
    drugs = list({d.ref: d for p in found_pairs for d in (p.own, p.other)}.values())
    drafts = [d for d in drugs if d.selected]
    return paired(_finding(f, "warning", "Two NSAIDs together: more GI and kidney harm, no more pain relief",
                    [drug_line(d) for d in drugs],
                    "Combining NSAIDs adds toxicity without added benefit; keep one.",
                    "AGS Beers Criteria (2023): avoid duplicate NSAID use.", drafts or drugs[1:], remove=bool(drafts)),
                  found_pairs)


@rule("nsaid.older-adult", title="NSAID in an older adult", hooks=(PV, OS), sources=("BEERS2023", "ACP2017"),
      trigger="systemic NSAID at age ≥ OLDER_AGE (info when a PPI or misoprostol is current)",
      levels=("warning", "info"), suggests="add a PPI; acetaminophen")
def older_adult(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    if not drugs or not f.older_adult:
        return None
    ppi = protected(f)
    why = [drug_line(d) for d in drugs] + [f"age {f.age}"] + [f"gastroprotection: {d.label}" for d in ppi]
    if ppi:
        return Finding("info", f"NSAID at age {f.age}, with a PPI: keep it short and monitor kidney function",
                       detail(why, "chronic NSAID use in older adults should be avoided; a PPI is current.",
                              "AGS Beers Criteria (2023)."))
    return _finding(f, "warning", f"NSAID at age {f.age}: add a PPI, or use acetaminophen", why,
                    f"Avoid chronic NSAID use at {f.params['OLDER_AGE']:g} and over unless alternatives fail and a PPI "
                    "or misoprostol is added; consider acetaminophen.", "AGS Beers Criteria (2023), strong "
                    "recommendation.", drugs, remove=False, acetaminophen=True, ppi=True)


@rule("nsaid.radiculopathy-evidence", title="NSAIDs for radicular pain: evidence", hooks=(OS,),
      sources=("JENSEN2019", "NICE-NG59"), trigger="a selected systemic NSAID for a patient with radiculopathy",
      levels=("info",), evidence_only=True)
def radiculopathy_evidence(f: Facts, found: dict) -> Finding | None:
    drugs = subjects(f, *NSAID)
    if not drugs or not f.has_radic:
        return None
    return Finding("info", "NSAIDs for sciatica: small, inconsistent benefit",
                   detail([drug_line(d) for d in drugs] + [c.label for c in f.radic_conditions],
                          "for radicular pain NSAIDs give at best a small, short-term benefit; use the lowest dose for "
                          "the shortest time alongside exercise therapy.",
                          "BMJ: diagnosis and treatment of sciatica (Jensen 2019) — low-quality evidence of small or "
                          "no benefit; NICE NG59."))
