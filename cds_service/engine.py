"""Runs the rule catalogue over one patient's facts: scope (back pain), hooks, site switches, and the
catalogue's cross-rule card rules ("Emergencies first"; red flags on a drug order)."""

from __future__ import annotations

from .config import Settings
from .facts import Facts
from .rules import CATALOGUE, LEVELS, PV, Finding
from .rules.common import surgery_referral_on_record

# On a drug order, only critical red flags fire, and only with one of these classes selected: an
# emergency must not be treated with analgesics alone. Other orders get no red flag.
ANALGESIC_ORDER_CLASSES = ("opioid", "nsaid", "skeletal_muscle_relaxant", "gabapentinoid", "snri", "tca",
                           "acetaminophen")
RED_FLAG_FAMILIES = {"red-flag", "thoracic"}

# "Emergencies first": what stands down while an emergency is being excluded.
ROUTINE_RULES = {"first-line.conservative", "nonpharm.therapy", "assessment.start-back", "monitoring.early-review",
                 "monitoring.reevaluate", "second-line.options", "imaging.persistent-radiculopathy"}
ROUTINE_AT_INFO = {"red-flag.fracture", "thoracic.differential"}
EMERGENCY_NOTE = "\n\nRoutine back-pain care resumes once this is treated or ruled out."


def _red_flag_levels(f: Facts, hook: str) -> tuple[str, ...]:
    """The red-flag levels that may fire on this call."""
    if hook == PV or f.selected_imaging:
        return LEVELS
    if f.selected_of(*ANALGESIC_ORDER_CLASSES):
        return ("critical",)
    return ()


def _is_routine(finding: Finding) -> bool:
    rule_id = finding.rule.id
    return (rule_id in ROUTINE_RULES or rule_id.startswith("procedure.")
            or (rule_id in ROUTINE_AT_INFO and finding.indicator == "info"))


def _emergencies_first(f: Facts, found: dict[str, Finding]) -> None:
    """A critical red flag, or an urgent one at warning, puts routine care on hold until spine MRI/CT
    or a spine-surgery referral is on record since onset."""
    emergencies = [x for x in found.values() if x.rule.family == "red-flag"
                   and (x.indicator == "critical" or (x.indicator == "warning" and x.urgent))]
    if not emergencies or f.spine_imaging_since_onset(("MR", "CT")) or surgery_referral_on_record(f):
        return
    for rule_id in [r for r, x in found.items() if _is_routine(x)]:
        del found[rule_id]
    for x in emergencies:  # said before the evidence line
        head, sep, evidence = x.detail.rpartition("\n\n**Evidence:**")
        x.detail = f"{head}{EMERGENCY_NOTE}{sep}{evidence}" if sep else x.detail + EMERGENCY_NOTE


def evaluate(f: Facts, hook: str, settings: Settings) -> list[Finding]:
    found: dict[str, Finding] = {}
    disabled = settings.disabled_rules
    caps = settings.level_caps
    red_flag_levels = _red_flag_levels(f, hook)
    for rule in CATALOGUE:
        if hook not in rule.hooks or rule.id in disabled:
            continue
        if rule.needs_bp and not f.has_bp:
            continue
        if rule.family in RED_FLAG_FAMILIES and not red_flag_levels:
            continue
        finding = rule.evaluate(f, found)
        if finding is None:
            continue
        finding.rule = rule
        cap = caps.get(rule.id)
        if cap and LEVELS.index(cap) < finding.rank:
            finding.indicator = cap  # a site may lower a rule's level, never raise it
        if rule.family in RED_FLAG_FAMILIES and finding.indicator not in red_flag_levels:
            continue
        found[rule.id] = finding
    _emergencies_first(f, found)
    return list(found.values())
