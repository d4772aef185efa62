"""Daily dose of a medication order, read from its FHIR dosage (R4, STU3 and DSTU2 shapes).

the opioid rules: administrations per day from timing.repeat (frequency or frequencyMax, period,
periodUnit), timing.code, or maxDosePerPeriod; PRN counts at its maximum; dose ranges at their
high end. A dose in a mass unit is the dose; any other unit or none counts dosage units.
Nothing is guessed: a missing piece gives a reason instead of a number.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .fhir_json import as_list

PERIOD_DAYS = {"s": 1 / 86400, "min": 1 / 1440, "h": 1 / 24, "d": 1, "wk": 7, "mo": 30, "a": 365}
TIMING_CODES = {"QD": 1, "QOD": 0.5, "BID": 2, "TID": 3, "QID": 4, "Q4H": 6, "Q6H": 4, "Q8H": 3,
                "Q12H": 2, "Q24H": 1, "AM": 1, "PM": 1, "QHS": 1, "HS": 1, "WAKE": 1}
MASS_TO_MG = {"mg": 1.0, "mcg": 0.001, "ug": 0.001, "µg": 0.001, "g": 1000.0, "ng": 1e-6}


OUT_OF_RANGE = "the dose and frequency give no real amount per day"


@dataclass(frozen=True)
class Amount:
    value: float
    is_mass_mg: bool  # True: value is mg; False: value counts dosage units (tablet, mL, patch)


@dataclass(frozen=True)
class DailyAmount:
    """Total per day of one order: mg/day when is_mass_mg, else dosage units/day."""

    per_day: float | None
    is_mass_mg: bool = False
    reason: str | None = None  # why per_day is None
    per_administration: Amount | None = None
    administrations_per_day: float | None = None


def _num(value: object) -> float | None:
    """A non-negative finite JSON number as a float (NaN, ±Infinity, 10**400 and bools are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _ratio(numerator: float, denominator: float) -> float | None:
    """numerator ÷ denominator, or None when that is no finite number (a period of 5e-324 s)."""
    if denominator <= 0:
        return None
    value = numerator / denominator
    return value if math.isfinite(value) else None


def _unit(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _quantity_amount(q: object) -> Amount | None:
    if not isinstance(q, dict):
        return None
    value = _num(q.get("value"))
    if value is None:
        return None
    unit = (_unit(q.get("code")) or _unit(q.get("unit")) or "").strip().lower()
    if unit in MASS_TO_MG:
        return Amount(value * MASS_TO_MG[unit], True)
    return Amount(value, False)


def dose_per_administration(dosage: dict) -> Amount | None:
    # R4: doseAndRate[].doseQuantity / doseRange; DSTU2/STU3: doseQuantity / doseRange on the dosage.
    holders = as_list(dosage.get("doseAndRate")) + [dosage]
    for holder in holders:
        if not isinstance(holder, dict):
            continue
        amount = _quantity_amount(holder.get("doseQuantity"))
        if amount:
            return amount
        rng = holder.get("doseRange")
        if isinstance(rng, dict):
            amount = _quantity_amount(rng.get("high")) or _quantity_amount(rng.get("low"))
            if amount:
                return amount
    return None


def _per_day_from_repeat(repeat: dict) -> float | None:
    freq = _num(repeat.get("frequencyMax")) or _num(repeat.get("frequency"))
    # "period" with "periodMax": the shortest interval is the most often a PRN dose may be taken.
    period = _num(repeat.get("period"))
    unit = _unit(repeat.get("periodUnit"))
    if period is None or unit not in PERIOD_DAYS:
        return None
    if freq is None:
        freq = 1.0
    return _ratio(freq, period * PERIOD_DAYS[unit])


def _per_day_from_code(timing: dict) -> float | None:
    code = timing.get("code")
    if not isinstance(code, dict):
        return None
    for coding in as_list(code.get("coding")):
        if isinstance(coding, dict) and str(coding.get("code", "")).upper() in TIMING_CODES:
            return TIMING_CODES[str(coding["code"]).upper()]
    text = code.get("text")
    if isinstance(text, str) and text.strip().upper() in TIMING_CODES:
        return TIMING_CODES[text.strip().upper()]
    return None


def _max_per_day(dosage: dict) -> Amount | None:
    """maxDosePerPeriod as an amount per day (R4: a Ratio; R5 shapes give a list)."""
    for ratio in as_list(dosage.get("maxDosePerPeriod")):
        if not isinstance(ratio, dict):
            continue
        num = _quantity_amount(ratio.get("numerator"))
        den = ratio.get("denominator")
        den_value = _num(den.get("value")) if isinstance(den, dict) else None
        den_unit = (_unit(den.get("code")) or _unit(den.get("unit"))) if isinstance(den, dict) else None
        if not num or not den_value:
            continue
        days = den_value * PERIOD_DAYS[den_unit] if den_unit in PERIOD_DAYS else (
            den_value if den_unit in {"day", "days"} else None)
        per_day = _ratio(num.value, days) if days is not None else None
        if per_day is not None:
            return Amount(per_day, num.is_mass_mg)
    return None


def daily_amount(dosage_instructions: object) -> DailyAmount:
    """The order's total per day: concurrent instructions add up, sequential ones take the highest."""
    dosages = [d for d in as_list(dosage_instructions) if isinstance(d, dict)]
    if not dosages:
        return DailyAmount(None, reason="the order has no dosage instructions")
    by_sequence: dict[object, list[DailyAmount]] = {}
    for dosage in dosages:
        sequence = dosage.get("sequence")
        sequence = sequence if isinstance(sequence, (int, str)) else None  # a list or object is no sequence
        by_sequence.setdefault(sequence, []).append(_one_dosage(dosage))
    totals: list[DailyAmount] = []
    for parts in by_sequence.values():
        failed = next((p for p in parts if p.per_day is None), None)
        if failed:
            return failed
        if len({p.is_mass_mg for p in parts}) > 1:
            return DailyAmount(None, reason="the dosage mixes mass and dosage-unit doses")
        total = sum(p.per_day for p in parts)
        if not math.isfinite(total):
            return DailyAmount(None, reason=OUT_OF_RANGE)
        totals.append(DailyAmount(total, parts[0].is_mass_mg,
                                  per_administration=parts[0].per_administration,
                                  administrations_per_day=parts[0].administrations_per_day))
    return max(totals, key=lambda t: t.per_day)


def _one_dosage(dosage: dict) -> DailyAmount:
    dose = dose_per_administration(dosage)
    timing = dosage.get("timing") if isinstance(dosage.get("timing"), dict) else {}
    repeat = timing.get("repeat") if isinstance(timing.get("repeat"), dict) else {}
    per_day = _per_day_from_repeat(repeat) if repeat else None
    if per_day is None:
        per_day = _per_day_from_code(timing)
    cap = _max_per_day(dosage)
    if dose is not None and per_day is not None:
        total = dose.value * per_day
        if not math.isfinite(total):
            return DailyAmount(None, reason=OUT_OF_RANGE)
        # A maximum per period binds: PRN "at its maximum" is what the cap allows.
        if cap is not None and cap.is_mass_mg == dose.is_mass_mg:
            total = min(total, cap.value)
        return DailyAmount(total, dose.is_mass_mg, per_administration=dose, administrations_per_day=per_day)
    if cap is not None:
        return DailyAmount(cap.value, cap.is_mass_mg, per_administration=dose)
    # A field that is there but cannot be read is said so: the clinician can look at the order.
    if dose is None:
        given = any(k in dosage for k in ("doseAndRate", "doseQuantity", "doseRange"))
        return DailyAmount(None, reason="the dose cannot be read" if given else "the dose is not given")
    return DailyAmount(None, reason="the frequency cannot be read" if timing else "the frequency is not given")


_STRENGTH = re.compile(
    r"(?P<name>[a-z][a-z ,\-]*?)\s+(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>MG|MCG|G)(?P<per>/(?:ML|HR|ACTUAT|\d*\s*ML))?\b",
    re.I)


def strengths_from_name(name: str) -> dict[str, tuple[float, str]]:
    """Ingredient strengths parsed from an RxNorm-style name: {'naproxen': (500.0, 'MG')}."""
    found: dict[str, tuple[float, str]] = {}
    for part in re.split(r"\s/\s", name):
        m = _STRENGTH.search(part)
        if not m:
            continue
        value = float(m.group("value"))
        unit = m.group("unit").upper()
        if unit == "MCG":
            value, unit = value / 1000, "MG"
        elif unit == "G":
            value, unit = value * 1000, "MG"
        unit = unit + (m.group("per") or "").upper().replace(" ", "")
        found[m.group("name").strip().lower()] = (value, unit)
    return found


def supply_days(request: dict, units_per_day: float | None) -> float | None:
    """Days of supply: expectedSupplyDuration, else quantity ÷ daily units."""
    dispense = request.get("dispenseRequest")
    if not isinstance(dispense, dict):
        return None
    duration = dispense.get("expectedSupplyDuration")
    if isinstance(duration, dict):
        value = _num(duration.get("value"))
        unit = _unit(duration.get("code")) or _unit(duration.get("unit"))
        if value is not None:
            unit = {"day": "d", "days": "d", "week": "wk", "weeks": "wk", "hour": "h", "hours": "h"}.get(unit, unit)
            days = value * PERIOD_DAYS[unit] if unit in PERIOD_DAYS else None
            if days is not None and math.isfinite(days):
                return days
    quantity = dispense.get("quantity")
    if isinstance(quantity, dict) and units_per_day:
        value = _num(quantity.get("value"))
        if value is not None:
            return _ratio(value, units_per_day)
    return None
