"""Runs the rule catalogue over one patient's facts: scope (back pain), hooks, site switches."""

from __future__ import annotations

from .config import Settings
from .facts import Facts
from .rules import CATALOGUE, LEVELS, OS, Finding

# RULES.md §3: on order-select the red flags fire only with one of these selected.
RED_FLAG_ORDER_CLASSES = ("opioid", "nsaid", "skeletal_muscle_relaxant")


def red_flags_apply(f: Facts) -> bool:
    return bool(f.selected_imaging or f.selected_of(*RED_FLAG_ORDER_CLASSES))


def evaluate(f: Facts, hook: str, settings: Settings) -> list[Finding]:
    found: dict[str, Finding] = {}
    disabled = settings.disabled_rules
    caps = settings.level_caps
    for rule in CATALOGUE:
        if hook not in rule.hooks or rule.id in disabled:
            continue
        if rule.needs_bp and not f.has_bp:
            continue
        if hook == OS and rule.family in {"red-flag", "thoracic"} and not red_flags_apply(f):
            continue
        finding = rule.evaluate(f, found)
        if finding is None:
            continue
        finding.rule = rule
        cap = caps.get(rule.id)
        if cap and LEVELS.index(cap) < finding.rank:
            finding.indicator = cap  # a site may lower a rule's level, never raise it
        found[rule.id] = finding
    return list(found.values())
