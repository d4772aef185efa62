"""What the ledger says about each rule, read through `store.rows(sql)` (SQLite and PostgreSQL alike).

Counts follow `Store.report()` exactly (cards per rule = distinct card uuids; overridden = distinct
cards overridden; accepted = acceptances of a suggestion the rule proposed; override reasons =
feedback entries per coded reason), so the HTML report and `report --format json` agree.
`since` keeps the cards shown on or after that date (ledger shown_at, UTC) with the feedback given
on them; unmatched feedback is filtered on the time the service received it.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass, field

PATIENT_VIEW = "patient-view"


@dataclass
class RuleFigures:
    rule: str
    title: str
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    override_reasons: dict[str, int] = field(default_factory=dict)  # coded reason → feedback entries
    overrides_without_reason: int = 0
    # Findings the service withheld after an earlier override (store table `quieted`); the report
    # shows the column as soon as any rule has a non-zero count.
    quieted: int = 0

    @property
    def override_rate(self) -> float:
        return self.overridden / self.shown if self.shown else 0.0

    @property
    def top_reason(self) -> tuple[str, int] | None:
        if not self.override_reasons:
            return None
        return min(self.override_reasons.items(), key=lambda kv: (-kv[1], kv[0]))  # most given; ties by code


@dataclass
class LedgerFigures:
    since: dt.date | None
    rules: list[RuleFigures]  # rules with at least one card (or quieted card), most shown first
    silent_rules: list[str]  # catalogue rules without a card in the period
    reason_display: dict[str, str]
    weeks: list[dt.date]  # Mondays, oldest first
    weekly_shown: dict[str, dict[dt.date, int]]
    weekly_overridden: dict[str, dict[dt.date, int]]
    cards_per_chart_open: dict[int, int]  # cards on one patient-view response → number of responses
    total_cards: int
    unmatched_feedback: int

    @property
    def chart_opens(self) -> int:
        return sum(self.cards_per_chart_open.values())

    @property
    def has_quieted(self) -> bool:
        return any(r.quieted for r in self.rules)

    @property
    def most_overridden(self) -> RuleFigures | None:
        candidates = [r for r in self.rules if r.overridden]
        if not candidates:
            return None
        return max(candidates, key=lambda r: (r.overridden, r.override_rate, r.rule))

    def top_rules(self, n: int = 5) -> list[RuleFigures]:
        return sorted((r for r in self.rules if r.shown), key=lambda r: (-r.shown, r.rule))[:n]


def _since(column: str, since: dt.date | None, joiner: str = "WHERE") -> str:
    # `rows(sql)` takes no parameters on every store version; the date was parsed by
    # dt.date and is re-rendered from it, so only digits and dashes reach the SQL.
    return f" {joiner} {column} >= '{since.isoformat()}'" if since else ""


def _quoted(values) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def week_of(day: str) -> dt.date:
    d = dt.date.fromisoformat(day[:10])
    return d - dt.timedelta(days=d.weekday())


def quieted_counts(store, since: dt.date | None) -> dict[str, int]:
    """Findings withheld after a remembered override, per rule (repeats at signing are not counted:
    those cards were shown on order-select)."""
    return {rule: int(n) for rule, n in store.rows(
        f"SELECT rule_id, COUNT(*) FROM quieted WHERE kind = 'override'{_since('quieted_at', since, 'AND')} "
        "GROUP BY rule_id")}


def collect(store, since: dt.date | None = None) -> LedgerFigures:
    from .. import knowledge
    from ..registry import SERVICES
    from ..rules import CATALOGUE

    flush = getattr(store, "flush", None)
    if flush is not None:  # cards still queued by this process's ledger writer (in-process use)
        flush()
    titles = {r.id: r.title for r in CATALOGUE}
    shown_in = _since("c.shown_at", since)
    and_shown_in = _since("c.shown_at", since, "AND")

    figures: dict[str, RuleFigures] = {}

    def row(rule: str) -> RuleFigures:
        if rule not in figures:
            figures[rule] = RuleFigures(rule, titles.get(rule, "(not in the current rule catalogue)"))
        return figures[rule]

    for rule, n in store.rows(f"SELECT c.rule_id, COUNT(DISTINCT c.card_uuid) FROM card_rule c{shown_in} "
                              "GROUP BY c.rule_id"):
        row(rule).shown = n
    for rule, n in store.rows(
            "SELECT c.rule_id, COUNT(DISTINCT f.card_uuid) FROM feedback f JOIN card_rule c "
            f"ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden'{and_shown_in} GROUP BY c.rule_id"):
        row(rule).overridden = n
    # An accepted suggestion counts for every rule that proposed it and for no other rule of the
    # card; each acceptance (card, time) once.
    accepted: dict[str, set] = defaultdict(set)
    for rule, proposed, card, when, chosen in store.rows(
            "SELECT c.rule_id, c.suggestion_uuids, f.card_uuid, f.outcome_timestamp, f.accepted_suggestions "
            "FROM feedback f JOIN card_rule c ON c.card_uuid = f.card_uuid WHERE f.outcome = 'accepted'"
            f"{and_shown_in}"):
        if set(json.loads(chosen or "[]")) & set(json.loads(proposed or "[]")):
            accepted[rule].add((card, when))
    for rule, events in accepted.items():
        row(rule).accepted = len(events)
    stored_display: dict[str, str] = {}
    for rule, code, display, n in store.rows(
            "SELECT c.rule_id, f.override_code, MAX(f.override_display), COUNT(*) FROM feedback f "
            "JOIN card_rule c ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' "
            f"AND f.override_code IS NOT NULL{and_shown_in} GROUP BY c.rule_id, f.override_code"):
        row(rule).override_reasons[code] = n
        if display:
            stored_display[code] = display
    for rule, n in store.rows(
            "SELECT c.rule_id, COUNT(DISTINCT f.card_uuid) FROM feedback f JOIN card_rule c "
            "ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden' AND f.override_code IS NULL"
            f"{and_shown_in} GROUP BY c.rule_id"):
        row(rule).overrides_without_reason = n
    for rule, n in quieted_counts(store, since).items():
        row(rule).quieted = n

    # Displays as the knowledge base words them today; a retired code keeps the one stored with it.
    reasons = knowledge.override_reasons()
    reason_display = dict(stored_display)
    for table in [*reasons.get("rules", {}).values(), reasons["default"]]:
        reason_display.update(table)

    weekly_shown: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    weekly_overridden: dict[str, dict[dt.date, int]] = defaultdict(lambda: defaultdict(int))
    for rule, day, n in store.rows(
            f"SELECT c.rule_id, substr(c.shown_at, 1, 10), COUNT(DISTINCT c.card_uuid) FROM card_rule c{shown_in} "
            "GROUP BY c.rule_id, substr(c.shown_at, 1, 10)"):
        weekly_shown[rule][week_of(day)] += n
    for rule, day, n in store.rows(
            "SELECT c.rule_id, substr(c.shown_at, 1, 10), COUNT(DISTINCT f.card_uuid) FROM feedback f "
            "JOIN card_rule c ON c.card_uuid = f.card_uuid WHERE f.outcome = 'overridden'"
            f"{and_shown_in} GROUP BY c.rule_id, substr(c.shown_at, 1, 10)"):
        weekly_overridden[rule][week_of(day)] += n
    all_weeks = {w for per_rule in weekly_shown.values() for w in per_rule}
    weeks = []
    if all_weeks:  # every week from the first to the last, so quiet weeks show as zero
        w, last = min(all_weeks), max(all_weeks)
        while w <= last:
            weeks.append(w)
            w += dt.timedelta(days=7)

    pv_services = [s.id for s in SERVICES.values() if s.hook == PATIENT_VIEW]
    per_open = store.rows(
        "SELECT n, COUNT(*) FROM (SELECT c.hook_instance, COUNT(DISTINCT c.card_uuid) AS n FROM card_rule c "
        f"WHERE c.service_id IN ({_quoted(pv_services)}) AND c.hook_instance IS NOT NULL{and_shown_in} "
        "GROUP BY c.hook_instance) per_response GROUP BY n") if pv_services else []

    total = store.rows(f"SELECT COUNT(DISTINCT c.card_uuid) FROM card_rule c{shown_in}")[0][0]
    unmatched = store.rows(
        "SELECT COUNT(*) FROM feedback f WHERE NOT EXISTS (SELECT 1 FROM card_rule c WHERE "
        f"c.card_uuid = f.card_uuid){_since('f.received_at', since, 'AND')}")[0][0]

    rules = sorted(figures.values(), key=lambda r: (-r.shown, r.rule))
    return LedgerFigures(
        since=since, rules=rules,
        silent_rules=[r.id for r in CATALOGUE if r.id not in figures],
        reason_display=reason_display, weeks=weeks,
        weekly_shown={k: dict(v) for k, v in weekly_shown.items()},
        weekly_overridden={k: dict(v) for k, v in weekly_overridden.items()},
        cards_per_chart_open={int(n): int(k) for n, k in per_open},
        total_cards=int(total or 0), unmatched_feedback=int(unmatched or 0))
