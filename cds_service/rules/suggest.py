"""Suggest, then warn, never (card rules): every drug a card suggests is checked against the whole
catalogue as if it were a selected order; a suggestion that any warning or critical finding would
fire for is withheld, and the card says why in one line. The label contraindications and Beers
cautions the catalogue has no rule for are checked here too.

Drug choices written here (clinical pharmacist review, where the catalogue is silent):
- acetaminophen with liver risk (cirrhosis, other liver disease, alcohol use disorder) is offered at
  the 2 g/day dose, never withheld: it stays the safer analgesic in liver disease;
- an older adult with no eGFR in the look-back gets acetaminophen and an eGFR instead of naproxen.
"""

from __future__ import annotations

from .. import orders
from ..drugs import Drug, drug_of_order
from ..facts import Facts
from . import CATALOGUE, OS, ctx

MAO_INHIBITORS = ("phenelzine", "tranylcypromine", "isocarboxazid", "selegiline", "rasagiline", "safinamide")
NOT_CHECKED_FAMILIES = {"red-flag", "thoracic", "imaging", "procedure"}


def _drugs_of(keys: list[str], f: Facts) -> list[Drug]:
    out = []
    for key in keys:
        drug = drug_of_order(orders.medication_request(key, ctx(f)), f"MedicationRequest/suggested-{key}")
        if drug is not None:
            out.append(drug)
    return out


def _stale_note(f: Facts, text: str) -> str:
    """Name an old list entry behind a withheld suggestion: it may no longer be taken."""
    for d in f.current:
        if d.possibly_stale and d.name.split()[0].lower() in text.lower():
            since = d.listed_since or d.date
            return (f" confirm whether the patient still takes {d.name.split()[0].lower()}"
                    f"{f' (on the list since {since.year})' if since else ''}.")
    return ""


def warning_for(f: Facts, keys: list[str]) -> str | None:
    """Why the catalogue would warn about ordering these drugs (the first is the order, the rest its
    companions, e.g. the PPI given with naproxen), or None."""
    if f.what_if:
        return None
    drugs = _drugs_of(keys, f)
    if not drugs:
        return None
    trial = f.as_if_ordered(drugs[:1], drugs[1:])
    found: dict = {}
    for rule in CATALOGUE:
        if OS not in rule.hooks or rule.family in NOT_CHECKED_FAMILIES or (rule.needs_bp and not trial.has_bp):
            continue
        finding = rule.evaluate(trial, found)
        if finding is None:
            continue
        finding.rule = rule
        found[rule.id] = finding
        if finding.indicator in {"warning", "critical"}:
            note = _stale_note(f, finding.detail)
            return finding.summary.rstrip(".") + (f"; {note.strip().rstrip('.')}" if note else "")
    return None


def label_problem(f: Facts, key: str) -> str | None:
    """Label contraindications and Beers cautions the catalogue has no rule for."""
    name = key.split("_")[0]
    maoi = [d for d in f.current if d.has_ingredient(*MAO_INHIBITORS)]
    if name == "cyclobenzaprine":
        heart = f.conditions_in("heart_failure", "cyclobenzaprine_cardiac_contraindication")
        heart += f.conditions_in("myocardial_infarction", within_days=365)
        if heart:
            return f"cyclobenzaprine is contraindicated with {heart[0].label} (label)"
        if maoi:
            return f"cyclobenzaprine is contraindicated with a MAO inhibitor ({maoi[0].name})"
    if name in {"gabapentin", "duloxetine"} and f.older_adult and f.conditions_in("history_of_falls"):
        return f"{name} at age {f.age} with a history of falls (Beers 2023: avoid)"
    if name == "duloxetine":
        if f.older_adult and f.egfr is None:
            return (f"age {f.age} with no eGFR in the last {f.params['LAB_LOOKBACK_DAYS']:g} days: check kidney "
                    "function first (duloxetine is avoided below eGFR 30)")
        if maoi or any(d.has_ingredient("linezolid") for d in f.current):
            return "duloxetine with a MAO inhibitor or linezolid: serotonin syndrome (label contraindication)"
        ssri = f.current_of("ssri")
        if ssri:
            return f"duloxetine with a current SSRI ({ssri[0].name}): serotonin syndrome"
    return None


def sentence_case(text: str) -> str:
    """'NSAID with …' stays; 'Cyclobenzaprine with …' becomes 'cyclobenzaprine with …' mid-sentence."""
    return text if len(text) > 1 and text[1].isupper() else text[:1].lower() + text[1:]


def current_acetaminophen(f: Facts) -> str | None:
    """The current product that already contains acetaminophen, with its daily amount."""
    for d in f.current_of("acetaminophen"):
        mg = d.daily_mg("acetaminophen")
        amount = f", {mg:,.0f} mg acetaminophen a day" if mg else ""
        return f"{d.name}{amount}{d.stale_note}"  # an old entry withholds too, and is to be confirmed
    return None


def liver_risk(f: Facts) -> list[str]:
    """Liver risk for acetaminophen: cirrhosis, other liver disease, or an alcohol use disorder."""
    return [c.label for c in f.conditions_in("cirrhosis", "cirrhosis_decompensated", "hepatic_disease",
                                             "alcohol_use_disorder")]


def acetaminophen_key(f: Facts) -> str:
    """The acetaminophen order for this patient: at most 2 g a day with liver risk, else 3 g."""
    return "acetaminophen_500_liver" if liver_risk(f) else "acetaminophen_500"


def acetaminophen(f: Facts) -> tuple[orders.Suggestion | None, str]:
    """The acetaminophen suggestion (2 g/day with liver risk), or None and why not."""
    product = current_acetaminophen(f)
    if product:
        return None, f"No acetaminophen suggested: a current product already contains it ({product})."
    liver = liver_risk(f)
    why = f"Acetaminophen at no more than 2 g a day because of liver risk ({'; '.join(liver[:2])})." if liver else ""
    return orders.order_medications([acetaminophen_key(f)], ctx(f)), why


def naproxen(f: Facts) -> tuple[list[str] | None, str]:
    """The naproxen order keys (with pantoprazole where the NSAID contraindication asks for it) when an
    NSAID may be suggested and nothing would warn about it, else None and the sentence saying why."""
    from .nsaid import nsaid_allowed, nsaid_contraindications, nsaid_needs_ppi  # noqa: PLC0415 (nsaid uses this module)
    if not nsaid_allowed(f):
        return None, ("An NSAID is not suggested: " + "; ".join(nsaid_contraindications(f) or
                      ["kidney function could not be checked"]) + ".")
    keys = ["naproxen_500", "pantoprazole_40"] if nsaid_needs_ppi(f) else ["naproxen_500"]
    why_not = label_problem(f, keys[0]) or warning_for(f, keys)
    if why_not:
        return None, f"Naproxen not suggested: {sentence_case(why_not)}."
    return keys, "Naproxen" + (" with pantoprazole" if len(keys) > 1 else "") + " instead."


def drug(f: Facts, keys: list[str]) -> tuple[orders.Suggestion | None, str]:
    """A drug suggestion if nothing in the catalogue or the label would warn about it, else None and
    the one-line reason the card gives."""
    problem = label_problem(f, keys[0]) or warning_for(f, keys)
    if problem:
        what = orders.medication_item(keys[0])["label"].split(" ")[0]
        return None, f"{what} not suggested: {sentence_case(problem)}."
    return orders.order_medications(keys, ctx(f)), ""
