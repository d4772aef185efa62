"""Tolerant readers for plain FHIR JSON (EHRs send imperfect FHIR): codings, texts, statuses,
dates, lists and references. Every reader accepts wrong types and missing fields and answers
"nothing" rather than failing, so that one malformed field only loses that field."""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass

from .terminology import normalise_code, normalise_system


def as_list(value: object) -> list:
    """A FHIR field that may be a list, a single object (as imperfect clients send) or anything else."""
    if isinstance(value, list):
        return value
    return [value] if isinstance(value, dict) else []


def reference_key(reference: object) -> str | None:
    """'Medication/123' from a literal reference ('https://ehr/fhir/Medication/123/_history/2' too)."""
    if not isinstance(reference, str) or reference.startswith("#"):
        return None
    return "/".join(reference.split("/_history/")[0].split("/")[-2:])


def codings(concept: object) -> list[dict]:
    if not isinstance(concept, dict):
        return []
    return [c for c in as_list(concept.get("coding")) if isinstance(c, dict)]


def concept_text(concept: object) -> str:
    if not isinstance(concept, dict):
        return ""
    parts = [concept.get("text")] + [c.get("display") for c in codings(concept)]
    return " ".join(p for p in parts if isinstance(p, str))


def status_code(value: object) -> str | None:
    """A status given as a code string (STU3/DSTU2) or a CodeableConcept (R4)."""
    if isinstance(value, str):
        return value.strip().lower()
    for c in codings(value):
        if isinstance(c.get("code"), str):
            return c["code"].strip().lower()
    return None


# Characters that make Markdown (GFM) links, images, emphasis, code or strikethrough; "<" starts raw
# HTML and autolinks, "://" and "www." start GitHub's bare-URL autolinks. Everything else is left
# as written, so that "ICD-10-CM M54.16" or "eGFR >60" read the same.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]~])")
_BARE_URL = re.compile(r"(?i)(?<=[a-z])(:)(?=//)|\b(www)(\.)")


def markdown_text(value: object) -> str:
    """Text taken from the record, made inert for card Markdown: on one line, with Markdown's special
    characters backslash-escaped, "<" as "&lt;" and bare URLs broken. Card links come only from the
    knowledge base; a record can neither add a link, an image nor HTML to a card."""
    if not isinstance(value, str):
        return ""
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(value.split())).replace("<", "&lt;")
    return _BARE_URL.sub(lambda m: "\\:" if m.group(1) else m.group(2) + "\\.", text)


_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?", re.ASCII)


def parse_date(value: object) -> dt.date | None:
    """FHIR date/dateTime/instant to a date (UTC when a time zone is given); partial dates round down."""
    if not isinstance(value, str):
        return None
    if not value.isascii():
        return None  # FHIR dates are ASCII digits; "２０２６" is not a date
    if len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    if "T" in value and len(value) > 10:
        try:
            stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
            if stamp.tzinfo:
                stamp = stamp.astimezone(dt.timezone.utc)
            return stamp.date()
        except ValueError:
            pass
        except OverflowError:
            pass  # 0001-01-01T00:00+01:00 is before year 1 in UTC: keep the date as written
    m = _DATE.match(value)
    if not m:
        return None
    try:
        return dt.date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def period_start(value: object) -> dt.date | None:
    return parse_date(value.get("start")) if isinstance(value, dict) else None


def first_date(resource: dict, *fields: str) -> dt.date | None:
    for name in fields:
        value = resource.get(name)
        date = period_start(value) if isinstance(value, dict) else parse_date(value)
        if date:
            return date
    return None


def finite(value: object) -> bool:
    """A JSON number that is a real, finite value (not a bool, NaN, ±Infinity or an int beyond float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class Coded:
    system: str
    code: str  # normalised for lookup (ICD-10-CM without the dot)
    display: str
    as_recorded: str = ""



def coded(concept: object) -> list[Coded]:
    out = []
    for c in codings(concept):
        system = normalise_system(c.get("system"))
        code = normalise_code(system, c.get("code"))
        if system and code:
            out.append(Coded(system, code, markdown_text(c.get("display")), markdown_text(c.get("code"))))
    return out


def raw_codes(concept: object) -> list[tuple[str, str]]:
    """(system, normalised code) pairs of a CodeableConcept, without building Coded objects."""
    if not isinstance(concept, dict):
        return []
    coding = concept.get("coding")
    if not isinstance(coding, list):
        coding = [coding] if isinstance(coding, dict) else []
    out = []
    for c in coding:
        if isinstance(c, dict):
            system = normalise_system(c.get("system"))
            code = normalise_code(system, c.get("code"))
            if system and code:
                out.append((system, code))
    return out


