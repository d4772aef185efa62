"""Morphine milligram equivalents per day (RULES.md §3.7, CDC 2022 factors).

Per order: mg/day = strength per unit (OMTK table, else parsed from the drug name; the opioid
ingredient of a combination product only) × dose per administration × administrations per day.
A fentanyl patch is continuous: mg/hr × 1000 × 2.4 × patches per application. Only oral and
transdermal products have a factor. When something is missing the order's MME "could not be
calculated", with the reason; the total of the rest is then a lower bound. Never a guess.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import dosing
from .facts import Drug
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
        """'95 MME/day', or 'at least 95 MME/day' when some order could not be counted."""
        return f"{'' if self.complete else 'at least '}{self.total:g} MME/day"

    @property
    def possible_duplicates(self) -> list[str]:
        seen: dict[tuple, int] = {}
        for o in self.orders:
            key = (o.ingredient, o.drug.rxcui or o.drug.name.lower())
            seen[key] = seen.get(key, 0) + 1
        return [f"{n} orders of {name}" for (_, name), n in seen.items() if n > 1]

    def detail(self) -> str:
        lines = [f"- {o.line}" for o in self.orders]
        text = "\n".join(lines) + f"\n\n**Total: {self.shown}**"
        if self.uncounted:
            text += " (a lower bound: " + "; ".join(
                f"{o.drug.name} not counted" for o in self.uncounted) + ")"
        if self.possible_duplicates:
            text += ". Possible duplicate orders, each counted: " + ", ".join(self.possible_duplicates)
        return text


def _strength(T: Terminology, drug: Drug, ingredient: str) -> tuple[float, str] | None:
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
    strength = _strength(T, drug, ingredient)
    if strength is None:
        result.reason = "the strength of the product is not known"
        return result
    value, unit = strength
    daily = drug.daily
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


def total_mme(T: Terminology, drugs: list[Drug]) -> MmeTotal:
    total = MmeTotal()
    for drug in drugs:
        total.orders.extend(order_mme(T, drug))
    return total
