"""Findings → CDS Hooks 2.0 cards (RULES.md §2): one card per warning/critical finding, the info
findings of patient-view merged into one care-plan card, no suggestion offered by two cards,
sources as source + links, override reasons on warning and critical cards."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from . import knowledge
from .facts import Facts
from .rules import PV, Finding

SUMMARY_MAX = 139
RULES_EXTENSION = "radiculopathy-cds.rules"


@dataclass
class BuiltCard:
    card: dict
    rule_ids: list[str]


def _uuid() -> str:
    return str(uuid.uuid4())


def _summary(text: str) -> str:
    return text if len(text) <= SUMMARY_MAX else text[: SUMMARY_MAX - 1].rstrip() + "…"


def _links(source_ids: list[str], extra: list[dict], primary_url: str) -> list[dict]:
    seen = {primary_url}
    out = []
    registry = knowledge.sources()
    for sid in source_ids:
        s = registry[sid]
        if s.url not in seen:
            seen.add(s.url)
            out.append({"label": s.label, "url": s.url, "type": "absolute"})
    for link in extra:
        if link["url"] not in seen:
            seen.add(link["url"])
            out.append(dict(link))
    return out


def _suggestions_json(finding_suggestions, selection: str) -> list[dict]:
    out = []
    recommended_given = False
    for s in finding_suggestions:
        recommended = s.recommended and not (selection == "at-most-one" and recommended_given)
        recommended_given |= recommended
        out.append({"label": s.label[:200], "uuid": _uuid(), "isRecommended": recommended,
                    "actions": s.actions})
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


def _card(*, rule_topic: dict, indicator: str, summary: str, detail: str, source_ids: list[str],
          extra_links: list[dict], suggestions: list, selection: str, override_rule: str | None,
          extension: dict | None = None) -> dict:
    primary = knowledge.sources()[source_ids[0]]
    card = {
        "uuid": _uuid(),
        "summary": _summary(summary),
        "indicator": indicator,
        "detail": detail,
        "source": {"label": primary.label, "url": primary.url, "topic": rule_topic},
    }
    links = _links(source_ids[1:], extra_links, primary.url)
    if links:
        card["links"] = links
    if suggestions:
        card["suggestions"] = _suggestions_json(suggestions, selection)
        card["selectionBehavior"] = selection
    if override_rule is not None and indicator in {"warning", "critical"}:
        card["overrideReasons"] = knowledge.override_codings(override_rule)
    if extension:
        card["extension"] = extension
    return card


def build_cards(findings: list[Finding], f: Facts, hook: str, *, merge_info: bool) -> list[BuiltCard]:
    ordered = sorted(findings, key=lambda x: (-x.rank, x.rule.order))
    # One suggestion, one card: the highest-level card keeps it, later ones name it.
    taken: dict[str, Finding] = {}
    kept: dict[int, list] = {}
    notes: dict[int, list[str]] = {}
    merging = merge_info and hook == PV
    for finding in ordered:
        mine = []
        for s in finding.suggestions:
            owner = taken.get(s.key)
            if owner is None:
                taken[s.key] = finding
                mine.append(s)
            elif owner is not finding and not (merging and owner.indicator == "info" and finding.indicator == "info"):
                notes.setdefault(id(finding), []).append(
                    f"{s.what or s.label} is suggested on the card “{_summary(owner.summary)}”.")
        kept[id(finding)] = mine

    def detail_of(finding: Finding) -> str:
        extra = notes.get(id(finding))
        return finding.detail + ("\n\n" + " ".join(extra) if extra else "")

    cards: list[BuiltCard] = []
    merged = [x for x in ordered if merging and x.indicator == "info"]
    for finding in ordered:
        if finding in merged:
            continue
        rule = finding.rule
        cards.append(BuiltCard(_card(
            rule_topic={"system": knowledge.RULE_SYSTEM, "code": rule.id, "display": rule.title},
            indicator=finding.indicator, summary=finding.summary, detail=detail_of(finding),
            source_ids=list(rule.sources), extra_links=finding.links, suggestions=kept[id(finding)],
            selection=finding.selection, override_rule=rule.id), [rule.id]))
    if merged:
        cards.append(BuiltCard(_care_plan(merged, kept, detail_of, f), [x.rule.id for x in merged]))
    return cards


def _care_plan(merged: list[Finding], kept: dict, detail_of, f: Facts) -> dict:
    sections = [f"### {x.rule.title}\n\n**{x.summary}**\n\n{detail_of(x)}" for x in merged]
    source_ids: list[str] = []
    for x in merged:
        source_ids += [s for s in x.rule.sources if s not in source_ids]
    seen: set[str] = set()
    suggestions = []
    for x in merged:
        for s in kept[id(x)]:
            if s.key not in seen:
                seen.add(s.key)
                suggestions.append(s)
    links = [link for x in merged for link in x.links]
    return _card(
        rule_topic={"system": knowledge.RULE_SYSTEM, "code": "care-plan", "display": "Back pain care plan"},
        indicator="info", summary=f"{episode_name(f)}: care plan", detail="\n\n".join(sections),
        source_ids=source_ids, extra_links=links, suggestions=suggestions, selection="any",
        override_rule=None, extension={RULES_EXTENSION: [x.rule.id for x in merged]})
