"""Morphine milligram equivalents per day (the opioid rules, CDC 2022 factors).

Per order: mg/day = strength per unit (OMTK table, else parsed from the drug name; the opioid
ingredient of a combination product only) × dose per administration × administrations per day.
A fentanyl patch is continuous: mg/hr × 1000 × 2.4 × patches per application. Only oral and
transdermal products have a factor. When something is missing the order's MME "could not be
calculated", with the reason; the total of the rest is then a lower bound. Never a guess.
Revision 2: a dose in mg/mcg of an opioid ingredient needs no product strength; buprenorphine and
methadone for opioid use disorder (MOUD) are left out and named; a selected draft that renews a
current order (same drug code, same dose) is counted once.

Opioid tolerance (the clinical definitions, FDA labels) is here too: it reads the same per-order doses.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from . import dosing
from .drugs import NOT_GIVEN, Drug, request_end
from .fhir_json import parse_date, status_code
from .terminology import Terminology

# CDC 2022 Clinical Practice Guideline, Table: MME conversion factors (mg/day; fentanyl mcg/hr).
FACTORS = {"codeine": 0.15, "hydrocodone": 1.0, "hydromorphone": 5.0, "methadone": 4.7, "morphine": 1.0,
           "oxycodone": 1.5, "oxymorphone": 3.0, "tapentadol": 0.4, "tramadol": 0.2}
FENTANYL_PATCH_FACTOR = 2.4
FACTOR_ROUTES = {"oral", "transdermal_system"}


@dataclass
class OrderMme:
    drug: Drug
    ingredient: str
    mg_per_day: float | None = None  # for a patch: mcg/hr
    factor: float | None = None
    mme: float | None = None
    reason: str | None = None  # why it could not be calculated
    patch: bool = False

    @property
    def line(self) -> str:
        """One line of the card detail: the order, its mg/day, factor and MME."""
        if self.mme is None:
            return f"{self.drug.name}: MME could not be calculated — {self.reason}"
        if self.patch:
            return (f"{self.drug.name}: {self.mg_per_day:g} mcg/hr × {FENTANYL_PATCH_FACTOR:g} = "
                    f"{self.mme:g} MME/day")
        return f"{self.drug.name}: {self.mg_per_day:g} mg/day × {self.factor:g} = {self.mme:g} MME/day"


@dataclass
class MmeTotal:
    orders: list[OrderMme] = field(default_factory=list)
    moud: list[str] = field(default_factory=list)  # MOUD left out, one line each (the clinical definitions)
    renewals: list[str] = field(default_factory=list)  # current orders a selected draft renews

    @property
    def counted(self) -> list[OrderMme]:
        return [o for o in self.orders if o.mme is not None]

    @property
    def total(self) -> float:
        return round(sum(o.mme for o in self.orders if o.mme is not None), 1)

    @property
    def uncounted(self) -> list[OrderMme]:
        return [o for o in self.orders if o.mme is None]

    @property
    def complete(self) -> bool:
        return not self.uncounted

    @property
    def shown(self) -> str:
        """'95 MME/day', 'at least 95 MME/day' when some order could not be counted, or 'MME/day could
        not be calculated' when none could (never 'at least 0')."""
        if self.orders and not self.counted:
            return "MME/day could not be calculated"
        return f"{'' if self.complete else 'at least '}{self.total:g} MME/day"

    @property
    def possible_duplicates(self) -> list[str]:
        seen: dict[tuple, int] = {}
        for o in self.orders:
            key = (o.ingredient, o.drug.rxcui or o.drug.name.lower())
            seen[key] = seen.get(key, 0) + 1
        return [f"{n} orders of {name}" for (_, name), n in seen.items() if n > 1]

    def why(self) -> list[str]:
        """One line per order (MOUD and renewals named), then the total or why there is none."""
        lines = [o.line for o in self.orders] + self.moud + self.renewals
        if self.orders and not self.counted:
            reasons = "; ".join(dict.fromkeys(o.reason or "" for o in self.uncounted))
            return lines + [f"**MME/day could not be calculated: {reasons}**"]
        if not self.orders:
            return lines
        total = f"**Total: {self.shown}**"
        if self.uncounted:
            total += " (a lower bound: " + "; ".join(f"{o.drug.name} not counted" for o in self.uncounted) + ")"
        if self.possible_duplicates:
            total += ". Possible duplicate orders, each counted: " + ", ".join(self.possible_duplicates)
        return lines + [total]

    def detail(self) -> str:
        return "\n".join(f"- {line}" for line in self.why())


def product_strength(T: Terminology, drug: Drug, ingredient: str) -> tuple[float, str] | None:
    for s in T.opioid_strength.get(drug.rxcui or "", ()):
        if s.ingredient.startswith(ingredient) or ingredient.startswith(s.ingredient):
            return s.value, s.unit
    for key, (value, unit) in dosing.strengths_from_name(drug.name).items():
        if ingredient in key:
            return value, unit
    return None


def order_mme(T: Terminology, drug: Drug) -> list[OrderMme]:
    out = []
    for ing in drug.ingredients:
        if ing.drug_class != "opioid":
            continue
        out.append(_one(T, drug, ing.name))
    return out


def _one(T: Terminology, drug: Drug, ingredient: str) -> OrderMme:
    result = _calculated(T, drug, ingredient)
    if result.mme is not None and not (math.isfinite(result.mme) and math.isfinite(result.mg_per_day)):
        # A strength or dose beyond any real product (1e308 tablets): no number, the reason instead.
        return OrderMme(drug, ingredient, reason="the dose or strength is out of any real range", patch=result.patch)
    return result


def _calculated(T: Terminology, drug: Drug, ingredient: str) -> OrderMme:
    result = OrderMme(drug, ingredient)
    patch = ingredient == "fentanyl" and drug.route == "transdermal_system"
    if ingredient == "buprenorphine":
        result.reason = "buprenorphine has no CDC 2022 conversion factor"
        return result
    if drug.route not in FACTOR_ROUTES and drug.route is not None:
        result.reason = f"{drug.route.replace('_', ' ')} forms have no CDC 2022 conversion factor"
        return result
    if not patch and ingredient not in FACTORS:
        result.reason = f"{ingredient} has no CDC 2022 conversion factor"
        return result
    daily = drug.daily
    single_opioid = sum(1 for i in drug.ingredients if i.drug_class == "opioid") == 1
    if not patch and daily.per_day is not None and daily.is_mass_mg and single_opioid:
        # A dose in mg/mcg of the opioid is the dose: no product strength needed (rev. 2).
        result.mg_per_day = round(daily.per_day, 2)
        result.factor = FACTORS[ingredient]
        result.mme = round(daily.per_day * result.factor, 1)
        return result
    strength = product_strength(T, drug, ingredient)
    if strength is None:
        result.reason = "the strength of the product is not known"
        return result
    value, unit = strength
    if patch:
        result.patch = True
        if unit != "MG/HR":
            result.reason = "the patch strength per hour is not known"
            return result
        dosages = drug.dosages
        dose = dosing.dose_per_administration(dosages[0]) if dosages else None
        if dose is None or dose.is_mass_mg:
            result.reason = "the number of patches per application is not given"
            return result
        result.mg_per_day = round(value * 1000 * dose.value, 3)  # mcg/hr of all patches worn
        result.factor = FENTANYL_PATCH_FACTOR
        result.mme = round(result.mg_per_day * FENTANYL_PATCH_FACTOR, 1)
        return result
    if daily.per_day is None:
        result.reason = daily.reason or "the dose or frequency is not given"
        return result
    if daily.is_mass_mg:
        mg_day = daily.per_day
    elif unit in {"MG", "MG/ML"}:
        mg_day = daily.per_day * value
    else:
        result.reason = f"a strength in {unit} cannot be converted to mg per day"
        return result
    result.mg_per_day = round(mg_day, 2)
    result.factor = FACTORS[ingredient]
    result.mme = round(mg_day * result.factor, 1)
    return result


def moud_line(T: Terminology, drug: Drug) -> str:
    """How a MOUD order is named where MME/day is shown (the clinical definitions)."""
    ingredient = "methadone" if drug.has_ingredient("methadone") else (
        "naltrexone" if drug.has_ingredient("naltrexone") else "buprenorphine")
    if drug.moud_reason:
        as_pain = [o for o in order_mme(T, drug) if o.mme is not None]
        pain = (f"; if it is for pain it would be {sum(o.mme for o in as_pain):g} MME/day" if as_pain else
                "; if it is for pain its MME/day could not be calculated")
        return f"{ingredient} with {drug.moud_reason}: treated as treatment for OUD{pain}"
    return f"{ingredient} for opioid use disorder: not counted in MME/day ({drug.name})"


def _dose_key(drug: Drug) -> tuple:
    daily = drug.daily
    return (drug.rxcui or drug.name.lower(), daily.per_day, daily.is_mass_mg)


def total_mme(T: Terminology, drugs: list[Drug]) -> MmeTotal:
    total = MmeTotal()
    drugs = list({d.ref: d for d in drugs}.values())
    renewed = set()
    for draft in (d for d in drugs if d.selected and not d.moud and d.daily.per_day is not None):
        for current in drugs:
            if not current.is_draft and current.ref not in renewed and _dose_key(current) == _dose_key(draft):
                renewed.add(current.ref)
                total.renewals.append(f"{draft.name}: the selected order renews the current order of the same "
                                      "drug and dose, counted once")
                break
    for drug in drugs:
        if drug.moud:
            total.moud.append(moud_line(T, drug))
        elif drug.ref not in renewed:
            total.orders.extend(order_mme(T, drug))
    return total


# -- opioid tolerance (the clinical definitions, FDA labels) -------------------------------------------------
# Daily dose that, taken for a week, makes a patient opioid tolerant (mg/day; fentanyl patch mcg/h).
TOLERANCE_MG_PER_DAY = {"morphine": 60.0, "oxycodone": 30.0, "hydromorphone": 8.0, "oxymorphone": 25.0,
                        "hydrocodone": 60.0}
TOLERANCE_FENTANYL_MCG_PER_HOUR = 25.0
TOLERANCE_OTHER_MME = 60.0  # any other opioid: MME/day ÷ 60
TOLERANCE_DAYS = 7


@dataclass
class Tolerance:
    units: float  # Σ (lowest daily dose over the last 7 days ÷ threshold)
    lines: list[str]  # one per ingredient, for the card detail

    @property
    def tolerant(self) -> bool:
        return self.units >= 1

    @property
    def text(self) -> str:
        found = "; ".join(self.lines) if self.lines else "no current non-MOUD opioid taken for a week"
        return (f"current opioids {self.units:.2g} of the tolerance threshold; tolerance needs ≥ 1 for a week "
                f"({found})")


def _fraction(T: Terminology, drug: Drug, ingredient: str) -> tuple[float | None, str]:
    """This order's daily dose of one ingredient as a fraction of its tolerance threshold."""
    o = _one(T, drug, ingredient)
    if o.mme is None:
        return None, o.reason or "dose unknown"
    if o.patch:
        return o.mg_per_day / TOLERANCE_FENTANYL_MCG_PER_HOUR, f"{o.mg_per_day:g} mcg/h"
    if ingredient in TOLERANCE_MG_PER_DAY:
        return o.mg_per_day / TOLERANCE_MG_PER_DAY[ingredient], f"{o.mg_per_day:g} mg/day"
    return o.mme / TOLERANCE_OTHER_MME, f"{o.mme:g} MME/day"


def _span(drug: Drug, current_refs: set[str], today: dt.date) -> tuple[dt.date, dt.date] | None:
    """The days an order covered: from its date to the end of its supply or validity (today while current)."""
    if drug.date is None or status_code(drug.resource.get("status")) in NOT_GIVEN:
        return None
    if drug.ref in current_refs:
        return drug.date, today
    end = request_end(drug.resource)
    if end is None and isinstance(drug.resource.get("effectivePeriod"), dict):
        end = parse_date(drug.resource["effectivePeriod"].get("end"))
    return drug.date, end or drug.date


def tolerance(T: Terminology, current: list[Drug], record: list[Drug], today: dt.date) -> Tolerance:
    """The clinical definitions "Opioid tolerant": current, not possibly stale, non-MOUD opioid orders (never drafts);
    each ingredient taken continuously for ≥ 7 days, counted at its lowest daily dose over those days."""
    qualifying = [d for d in current if d.pain_opioid and not d.is_draft and not d.possibly_stale]
    current_refs = {d.ref for d in qualifying}
    history = {d.ref: d for d in record if d.pain_opioid and not d.is_draft}
    history.update({d.ref: d for d in qualifying})
    units, lines = 0.0, []
    window = [today - dt.timedelta(days=n) for n in range(TOLERANCE_DAYS, -1, -1)]
    ingredients = dict.fromkeys(i.name for d in qualifying for i in d.ingredients if i.drug_class == "opioid")
    for ingredient in ingredients:
        orders = [(d, _span(d, current_refs, today)) for d in history.values() if d.has_ingredient(ingredient)]
        orders = [(d, span) for d, span in orders if span is not None]
        lowest, lowest_text, reason = None, "", ""
        for day in window:
            seen, fraction, texts = set(), 0.0, []
            for d, (start, end) in orders:
                if not start <= day <= end or _dose_key(d) in seen:
                    continue  # an order and a statement of the same drug and dose count once
                seen.add(_dose_key(d))
                value, text = _fraction(T, d, ingredient)
                if value is None:
                    fraction, reason = None, f"{d.name}: {text}"
                    break
                fraction += value
                texts.append(text)
            if not seen:
                reason = f"not taken continuously for {TOLERANCE_DAYS} days (none on {day.isoformat()})"
                lowest = None
                break
            if fraction is None:
                lowest = None
                break
            if lowest is None or fraction < lowest:
                lowest, lowest_text = fraction, " + ".join(texts)
        if lowest is None:
            lines.append(f"{ingredient}: not counted — {reason}")
            continue
        units += lowest
        lines.append(f"{ingredient} {lowest_text} for ≥ {TOLERANCE_DAYS} days = {lowest:.2g} of its threshold")
    return Tolerance(round(units, 2), lines)
