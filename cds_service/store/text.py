"""What may be stored: text without NUL or control characters, within a length bound. A NUL makes
PostgreSQL refuse the whole statement, and a 9 MB hookInstance becomes 37 MB of ledger and log."""

from __future__ import annotations

import re

from .protocol import UnstorableValue

# C0 controls, DEL and C1 controls. Ids and codes never hold them; text that does is an attack or a bug.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")

HOOK_INSTANCE_MAX = 256
ID_MAX = 256  # card, suggestion, jti and issuer values; real ones are uuids and URLs far shorter
CODE_MAX = 256
SYSTEM_MAX = 512
TIMESTAMP_MAX = 64
FEEDBACK_MAX_ENTRIES = 500  # per call: an EHR sends a handful; a bulk flood is refused, not stored


def text_problem(field: str, value: object, max_chars: int) -> str | None:
    """Why `value` cannot be stored in `field`, naming the field and never the value; None when it can."""
    if value is None:
        return None
    if not isinstance(value, str):
        return f"{field} must be a string"
    if len(value) > max_chars:
        return f"{field} is longer than {max_chars} characters"
    if _CONTROL.search(value):
        return f"{field} contains control characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{field} is not valid Unicode text"
    return None


def checked(field: str, value, max_chars: int):
    problem = text_problem(field, value, max_chars)
    if problem:
        raise UnstorableValue(problem)
    return value


def feedback_problems(items: list[dict]) -> list[str]:
    """Every stored string of a feedback body, checked before anything is written."""
    if len(items) > FEEDBACK_MAX_ENTRIES:
        return [f"feedback holds more than {FEEDBACK_MAX_ENTRIES} entries; send them in several calls"]
    problems = []
    for i, item in enumerate(items):
        reason = ((item.get("overrideReason") or {}).get("reason") or {}) if isinstance(item, dict) else {}
        checks = [(f"feedback[{i}].card", item.get("card"), ID_MAX),
                  (f"feedback[{i}].outcome", item.get("outcome"), CODE_MAX),
                  (f"feedback[{i}].outcomeTimestamp", item.get("outcomeTimestamp"), TIMESTAMP_MAX),
                  (f"feedback[{i}].overrideReason.reason.system", reason.get("system"), SYSTEM_MAX),
                  (f"feedback[{i}].overrideReason.reason.code", reason.get("code"), CODE_MAX)]
        checks += [(f"feedback[{i}].acceptedSuggestions[{j}].id", s.get("id") if isinstance(s, dict) else s, ID_MAX)
                   for j, s in enumerate(item.get("acceptedSuggestions") or [])]
        problems += [p for p in (text_problem(*c) for c in checks) if p]
    return problems
