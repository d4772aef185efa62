"""The rule catalogue (the rule catalogue), one module per family, registered in catalogue order.

A rule is a pure function `facts, found -> Finding | None` with its id, hooks, trigger in words,
levels, suggestions in words and sources beside it (`@rule(...)`). `found` holds the findings of
the rules before it in catalogue order (imaging rules look at red flags, for example).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from .. import orders
from ..facts import Facts

PV = "patient-view"
OS = "order-select"
LEVELS = ("info", "warning", "critical")


@dataclass
class Finding:
    indicator: str
    summary: str
    detail: str
    suggestions: list[orders.Suggestion] = field(default_factory=list)
    selection: str = "any"  # "at-most-one" when the suggestions are alternatives
    links: list[dict] = field(default_factory=list)  # further links beyond the rule's sources
    about: tuple[str, ...] = ()  # refs of the selected orders the finding is about (order-select/sign)
    rule: "Rule | None" = None
    urgent: bool = False  # a red flag that puts routine care on hold ("Emergencies first")
    sources: tuple[str, ...] = ()  # when this finding rests on other documents than the rule's (its primary first)
    # The finding's fingerprint, which says when a remembered override no longer holds (overrides.py):
    # the band of the rule's key figure (0 = below its first threshold) and the drugs of a pair rule.
    band: int = 0
    partners: frozenset[str] = frozenset()

    @property
    def rank(self) -> int:
        return LEVELS.index(self.indicator)


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    hooks: frozenset[str]
    sources: tuple[str, ...]  # ids in knowledge/sources.csv; the first is the card's primary source
    trigger: str
    levels: tuple[str, ...]
    suggests: str
    evaluate: Callable[[Facts, dict], Finding | None]
    needs_bp: bool = True
    order: int = 0
    evidence_only: bool = False  # a note on the order's card, never a card of its own (unless configured)
    advisory: bool = False  # advice beside an order (add naloxone; try another drug first), not a hazard of it
    contraindication: bool = False  # its finding says the order should go: no "keep it" suggestion beside it

    @property
    def family(self) -> str:
        return self.id.split(".")[0]


CATALOGUE: list[Rule] = []


def rule(rule_id: str, *, title: str, hooks: tuple[str, ...], sources: tuple[str, ...], trigger: str,
         levels: tuple[str, ...], suggests: str = "none", needs_bp: bool = True, evidence_only: bool = False,
         advisory: bool = False, contraindication: bool = False):
    def register(fn: Callable[[Facts, dict], Finding | None]):
        CATALOGUE.append(Rule(rule_id, title, frozenset(hooks), sources, trigger, levels, suggests, fn,
                              needs_bp, len(CATALOGUE), evidence_only, advisory, contraindication))
        return fn
    return register


def ctx(f: Facts) -> orders.Ctx:
    """Suggestion context: the patient, today, and the back-pain conditions as the order's reason."""
    return orders.Ctx(f.patient_id, f.today, [c.id for c in f.bp_conditions if c.id and not c.from_indication])


def bullets(items) -> str:
    return "\n".join(f"- {i}" for i in items)


def detail(why, recommendation: str, evidence: str, note: str = "") -> str:
    """Every card's detail: the patient facts that fired the rule (a list, or one sentence), the
    recommendation (then any note), and the evidence — the same document as the card's primary source."""
    facts = f"\n{bullets(why)}" if isinstance(why, (list, tuple)) else f" {why}"
    return f"**Why:**{facts}\n\n**Recommendation:** {recommendation}{note}\n\n**Evidence:** {evidence}"


# The families in catalogue order; within a module, definition order. (A module may import another's
# definitions, e.g. first_line uses the NSAID contraindication, so import order alone does not decide.)
FAMILY_MODULES = ("red_flags", "imaging", "first_line", "nsaid", "muscle_relaxant", "second_line", "opioid")
from . import red_flags, imaging, first_line  # noqa: E402,F401
from . import nsaid, muscle_relaxant, second_line, opioid  # noqa: E402,F401

CATALOGUE.sort(key=lambda r: (FAMILY_MODULES.index(r.evaluate.__module__.rsplit(".", 1)[-1]), r.order))
CATALOGUE[:] = [replace(r, order=i) for i, r in enumerate(CATALOGUE)]
