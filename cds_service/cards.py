"""Findings → CDS Hooks 2.0 cards (card rules of the catalogue, "Card rules (all cards)").

- patient-view: one card per warning or critical finding; the info findings merged into one
  care-plan card;
- order-select (and order-sign): one card per selected order holding every finding about it;
  findings about no order (red flags) keep their own card; evidence notes are sections of the
  order's card, never a card of their own unless `cards.evidence_alone` is on;
- one suggestion, one card: the highest card keeps it, the others name it in their detail;
- the ledger learns, per rule, the suggestion uuids that rule proposed, so feedback on a merged card
  is credited to the rules that proposed what was accepted, and to no other.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field

from . import knowledge, orders
from .facts import Facts
from .rules import PV, Finding

SUMMARY_MAX = 139
CARE_PLAN_TOPIC = {"system": knowledge.RULE_SYSTEM, "code": "care-plan", "display": "Back pain care plan"}
RULES_EXTENSION = "radiculopathy-cds.rules"


@dataclass
class BuiltCard:
    card: dict
    rule_ids: list[str]
    # rule id → uuids of the suggestions that rule proposed (a merged suggestion counts for each)
    rule_suggestions: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)  # what the card says (overrides.py remembers it)


@dataclass
class _Group:
    """The findings that become one card."""
    findings: list[Finding]
    topic: dict | None = None  # the care plan's own topic; otherwise the most serious finding's rule
    summary: str | None = None

    @property
    def top(self) -> Finding:
        return self.findings[0]

    @property
    def indicator(self) -> str:
        return self.top.indicator


def _uuid() -> str:
    return str(uuid.uuid4())


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _links(source_ids: list[str], extra: list[dict], primary_url: str | None) -> list[dict]:
    seen = {primary_url} if primary_url else set()
    out = []
    registry = knowledge.sources()
    for sid in source_ids:
        s = registry[sid]
        if s.url and s.url not in seen:
            seen.add(s.url)
            out.append({"label": s.label, "url": s.url, "type": "absolute"})
    for link in extra:
        if link["url"] not in seen:
            seen.add(link["url"])
            out.append(dict(link))
    return out


def episode_name(f: Facts) -> str:
    if f.region == "thoracic":
        name = "Thoracic radiculopathy" if f.has_radic else "Thoracic back pain"
    elif f.has_radic:
        name = "Lumbar radiculopathy"
    elif f.conditions_in("spinal_stenosis") and not f.conditions_in("low_back_pain_nonspecific"):
        name = "Lumbar spinal stenosis"
    else:
        name = "Low back pain"
    days = f.duration_days
    if days is None:
        return name
    if f.chronic:
        return f"Chronic {name[0].lower()}{name[1:]} since {f.onset_date.strftime('%b %Y')}"
    return f"{name}, {'week ' + str(days // 7) if days >= 7 else 'day ' + str(days)}"


# -- grouping ---------------------------------------------------------------------------------
# The drug a rule family is about: its finding goes on that drug's card ("Pairwise rules"); when the
# family's drug is current and the other drug of the pair is the selected one, on the other's card.
FAMILY_CLASSES = {"nsaid": "nsaid", "muscle-relaxant": "skeletal_muscle_relaxant", "gabapentinoid": "gabapentinoid",
                  "duloxetine": "snri", "tca": "tca", "opioid": "opioid"}


def _order_of(finding: Finding, f: Facts, selected_refs: list[str]) -> str | None:
    """The selected order a finding belongs to (None: a finding about no order, e.g. a red flag)."""
    if finding.rule.family in {"red-flag", "thoracic"}:
        return None
    if finding.about:
        return next((ref for ref in finding.about if ref in selected_refs), finding.about[0])
    own = [d.ref for d in f.selected_of(FAMILY_CLASSES.get(finding.rule.family, ""))]
    if own:
        return own[0]
    return selected_refs[0] if selected_refs else None


def order_ref(finding: Finding, f: Facts) -> str | None:
    """The selected draft order a finding is about; None for a finding about no order (and on patient-view)."""
    return _order_of(finding, f, [d.ref for d in f.selected] + [p.ref for p in f.selected_imaging])


def _groups(findings: list[Finding], f: Facts, hook: str, *, merge: bool, evidence_alone: bool) -> list[_Group]:
    ordered = sorted(findings, key=lambda x: (-x.rank, x.rule.order))
    if hook == PV:
        if not merge:
            return [_Group([x]) for x in ordered]
        groups = [_Group([x]) for x in ordered if x.indicator != "info"]
        info = [x for x in ordered if x.indicator == "info"]
        if info:
            groups.append(_Group(info, topic=dict(CARE_PLAN_TOPIC),
                                 summary=f"{episode_name(f)}: care plan"))
        return groups
    if not merge:
        return [_Group([x]) for x in ordered if not x.rule.evidence_only or evidence_alone]
    selected_refs = [d.ref for d in f.selected] + [p.ref for p in f.selected_imaging]
    by_order: dict[str, _Group] = {}
    groups: list[_Group] = []
    for x in ordered:
        ref = _order_of(x, f, selected_refs)
        if ref is None:
            groups.append(_Group([x]))
        elif ref in by_order:
            by_order[ref].findings.append(x)
        else:
            by_order[ref] = _Group([x])
            groups.append(by_order[ref])
    # Evidence notes ride on their order's card; alone they are a card only when configured. Within a
    # level the finding that says to remove the order leads the card (its summary is the card's), and
    # advice to add something (naloxone, a first-line alternative) follows the interactions.
    kept = []
    for g in groups:
        if all(x.rule.evidence_only for x in g.findings) and not evidence_alone:
            continue
        g.findings.sort(key=lambda x: (x.rule.evidence_only, -x.rank, not _says_remove(x), x.rule.advisory,
                                       x.rule.order))
        kept.append(g)
    return sorted(kept, key=lambda g: (-g.top.rank, g.top.rule.order))


# -- suggestions --------------------------------------------------------------------------------
PROTECTION_KEYS = {"med:314200"}  # pantoprazole: the protection that keeps an NSAID going


def _keeps_order(s: orders.Suggestion) -> bool:
    """A suggestion that keeps the selected order going: change its dose, or protect it (a PPI).
    Naloxone is never one of these: it is offered whatever happens to the order."""
    return s.key.startswith("update:") or s.key in PROTECTION_KEYS


def _says_remove(x: Finding) -> bool:
    """The finding says the order should go: a contraindication rule, or a critical tier."""
    return x.rule.contraindication or x.indicator == "critical"


def _group_suggestions(g: _Group, taken: dict[str, tuple], notes: dict[int, list[str]]) -> list:
    """The group's suggestions in order, de-duplicated; each with the findings that proposed it."""
    remove = [x for x in g.findings if _says_remove(x)] if len(g.findings) > 1 else []
    out: dict[str, tuple[orders.Suggestion, list[Finding]]] = {}
    replacement_given = False
    dropped = []
    for x in g.findings:
        for s in x.suggestions:
            if s.key in out:
                out[s.key][1].append(x)
                continue
            owner, offered = taken.get(s.key, (None, None))
            if owner is not None and owner is not g:
                # Name what the other card offers (its MRI may be "without and with" contrast).
                notes.setdefault(id(g), []).append(
                    f"{offered.what or offered.label} is suggested on the card "
                    f"“{_summary(owner.summary or owner.top.summary)}”.")
                continue
            if remove and _keeps_order(s):
                dropped.append(s.what or s.label)
                continue
            if s.key.startswith("replace:"):
                if replacement_given:  # one replacement drug, never two alternatives of one kind
                    continue
                replacement_given = True
            taken.setdefault(s.key, (g, s))
            out[s.key] = (s, [x])
    # A replacement of the order is the recommended way to remove it; plain removal stays offered.
    replaced = {s.key.split(":")[1] for s, _ in out.values() if s.key.startswith("replace:")}
    for key, (s, proposers) in list(out.items()):
        if key.startswith("delete:") and key[len("delete:"):] in replaced and s.recommended:
            out[key] = (dataclasses.replace(s, recommended=False), proposers)
    if dropped:
        notes.setdefault(id(g), []).append(
            f"Not offered: {'; '.join(dict.fromkeys(dropped))} — “{remove[0].summary}” says to remove this order.")
    return list(out.values())


def _suggestions_json(items, selection: str) -> tuple[list[dict], dict[str, list[str]]]:
    out, by_rule = [], {}
    recommended_given = False
    for s, proposers in items:
        recommended = s.recommended and not (selection == "at-most-one" and recommended_given)
        recommended_given |= recommended
        sid = _uuid()
        out.append({"label": s.label[:200], "uuid": sid, "isRecommended": recommended, "actions": s.actions})
        for x in proposers:
            by_rule.setdefault(x.rule.id, []).append(sid)
    return out, by_rule


# -- cards ----------------------------------------------------------------------------------------
def _detail(g: _Group, notes: list[str]) -> str:
    extra = ("\n\n" + " ".join(notes)) if notes else ""
    if len(g.findings) == 1 and g.topic is None:
        return g.top.detail + extra
    sections = [f"### {x.rule.title}\n\n**{x.summary}**\n\n{x.detail}" for x in g.findings]
    return "\n\n".join(sections) + extra


def _group_summary(g: _Group) -> str:
    if g.summary:
        return _summary(g.summary)
    more = len([x for x in g.findings[1:] if not x.rule.evidence_only])  # evidence notes are not findings to count
    if more:
        suffix = f" (+{more} more)"
        if len(g.top.summary) + len(suffix) <= SUMMARY_MAX:
            return g.top.summary + suffix
    return _summary(g.top.summary)


def _card(g: _Group, items, notes: list[str]) -> BuiltCard:
    source_ids: list[str] = []
    for x in g.findings:
        source_ids += [s for s in (x.sources or x.rule.sources) if s not in source_ids]
    primary = knowledge.sources()[source_ids[0]]
    top = g.top.rule
    topic = g.topic or {"system": knowledge.RULE_SYSTEM, "code": top.id, "display": top.title}
    card = {"uuid": _uuid(), "summary": _group_summary(g), "indicator": g.indicator, "detail": _detail(g, notes),
            "source": {"label": primary.label, "topic": topic}}
    if primary.url:
        card["source"]["url"] = primary.url
    links = _links(source_ids[1:], [link for x in g.findings for link in x.links], primary.url)
    if links:
        card["links"] = links
    selection = g.top.selection if len(g.findings) == 1 else "any"
    suggestions, by_rule = _suggestions_json(items, selection)
    if suggestions:
        card["suggestions"] = suggestions
        card["selectionBehavior"] = selection
    if g.indicator in {"warning", "critical"}:
        card["overrideReasons"] = knowledge.override_codings(top.id)
    rule_ids = [x.rule.id for x in g.findings]
    if g.topic is not None or len(rule_ids) > 1:
        card["extension"] = {RULES_EXTENSION: rule_ids}
    return BuiltCard(card, rule_ids, {r: by_rule.get(r, []) for r in rule_ids}, list(g.findings))


def care_plan_note(f: Facts, detail: str, source_id: str) -> BuiltCard:
    """An info care-plan card that only says something (no finding, no suggestion): neither ledger
    nor link rows are written for it."""
    source = knowledge.sources()[source_id]
    card = {"uuid": _uuid(), "summary": _summary(f"{episode_name(f)}: care plan"), "indicator": "info",
            "detail": detail, "source": {"label": source.label, "topic": dict(CARE_PLAN_TOPIC)}}
    if source.url:
        card["source"]["url"] = source.url
    return BuiltCard(card, [], {}, [])


def build_cards(findings: list[Finding], f: Facts, hook: str, *, merge: bool, evidence_alone: bool = False,
                evidence_notes: bool = True) -> list[BuiltCard]:
    """`hook` is the catalogue hook whose card rules apply; `evidence_notes` False (order-sign) leaves
    evidence-only notes out altogether."""
    if not evidence_notes:
        findings = [x for x in findings if not x.rule.evidence_only]
    groups = _groups(findings, f, hook, merge=merge, evidence_alone=evidence_alone)
    taken: dict[str, tuple] = {}  # suggestion key → (the card's group, the suggestion it offers)
    notes: dict[int, list[str]] = {}
    items = [_group_suggestions(g, taken, notes) for g in groups]
    return [_card(g, group_items, notes.get(id(g), [])) for g, group_items in zip(groups, items)]
