"""`cds-service report --format html`: one self-contained HTML file for a CDS or pharmacy and
therapeutics committee. No JavaScript, nothing loaded from the network (hospital networks are
closed): the charts are SVG drawn here by pygal, inlined, with pygal's scripts removed, and a
Content-Security-Policy tells the browser to load nothing at all.
"""

from __future__ import annotations

import datetime as dt
import math
import statistics

import pygal
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup
from pygal.style import Style

from .ledger_figures import LedgerFigures, collect

TOP_RULES = 5  # rules drawn in the weekly trends
NO_REASON = "(no coded reason)"

_STYLE = Style(
    font_family="system-ui, 'Segoe UI', 'Liberation Sans', Arial, sans-serif",
    background="white", plot_background="white", foreground="#222", foreground_strong="#111",
    foreground_subtle="#bbb", opacity="1", opacity_hover="1", title_font_size=16, label_font_size=12,
    major_label_font_size=12, legend_font_size=13, value_font_size=12, value_colors=("white",) * 8,
    # shown, accepted, overridden, quieted: colour-blind-safe (Okabe-Ito)
    colors=("#0072B2", "#009E73", "#D55E00", "#999999", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442"))

_TEMPLATES = Environment(loader=PackageLoader("cds_service.governance", "templates"),
                         autoescape=select_autoescape(["html"]), trim_blocks=True, lstrip_blocks=True)


def _without_scripts(root):
    """pygal always embeds a configuration <script> (for its tooltips); the report runs none."""
    for parent in list(root.iter()):
        for child in list(parent):
            if str(child.tag).rsplit("}", 1)[-1] == "script":
                parent.remove(child)
    return root


def _chart(kind, *, title: str, height: int, maximum: int, **options):
    step = max(1, math.ceil(maximum / 10))  # counts: whole-number ticks
    chart = kind(style=_STYLE, js=[], disable_xml_declaration=True, width=960, height=height, title=title,
                 legend_at_bottom=True, truncate_label=60, print_zeroes=False,
                 y_labels=list(range(0, maximum + step, step)), **options)
    chart.add_xml_filter(_without_scripts)
    return chart


def _svg(chart) -> Markup:
    return Markup(chart.render(is_unicode=True))  # markup pygal generated from escaped labels


def per_rule_chart(fig: LedgerFigures) -> Markup:
    rules = fig.rules[::-1]  # pygal draws the first label at the bottom; most shown on top
    series = [("Cards shown", "shown"), ("Suggestions accepted", "accepted"), ("Overridden", "overridden")]
    if fig.has_quieted:
        series.append(("Quieted", "quieted"))
    chart = _chart(pygal.HorizontalBar, title="Per rule: cards shown, suggestions accepted, overridden",
                   height=140 + len(rules) * (16 * len(series) + 14), print_values=True,
                   maximum=max(max(getattr(r, a) for _, a in series) for r in rules))
    chart.x_labels = [r.rule for r in rules]
    for name, attr in series:
        chart.add(name, [getattr(r, attr) for r in rules])
    return _svg(chart)


def reasons_chart(fig: LedgerFigures) -> Markup | None:
    rules = [r for r in fig.rules if r.overridden][::-1]
    if not rules:
        return None
    codes = sorted({c for r in rules for c in r.override_reasons})
    chart = _chart(pygal.HorizontalStackedBar, title="Overrides by coded reason",
                   height=160 + len(rules) * 34 + 18 * (len(codes) + 1), print_values=True,
                   maximum=max(sum(r.override_reasons.values()) + r.overrides_without_reason for r in rules))
    chart.x_labels = [r.rule for r in rules]
    for code in codes:
        chart.add(fig.reason_display.get(code, code), [r.override_reasons.get(code) or None for r in rules])
    if any(r.overrides_without_reason for r in rules):
        chart.add(NO_REASON, [r.overrides_without_reason or None for r in rules])
    return _svg(chart)


def weekly_chart(fig: LedgerFigures) -> Markup | None:
    top = fig.top_rules(TOP_RULES)
    if not top or not fig.weeks:
        return None
    chart = _chart(pygal.Line, title=f"Cards shown per week, top {len(top)} rules", height=420,
                   x_title="week starting (Monday, UTC)", show_minor_x_labels=True, x_label_rotation=30,
                   dots_size=4, include_x_axis=True,
                   maximum=max(fig.weekly_shown.get(r.rule, {}).get(w, 0) for r in top for w in fig.weeks))
    chart.x_labels = [w.isoformat() for w in fig.weeks]
    for r in top:
        chart.add(r.rule, [fig.weekly_shown.get(r.rule, {}).get(w, 0) for w in fig.weeks])
    return _svg(chart)


def burden_chart(fig: LedgerFigures) -> Markup | None:
    if not fig.cards_per_chart_open:
        return None
    sizes = list(range(1, max(fig.cards_per_chart_open) + 1))
    chart = _chart(pygal.Bar, title="Cards per chart-open (patient-view responses with cards)", height=380,
                   x_title="cards on one chart-open", y_title="chart-opens", print_values=True, show_legend=False,
                   maximum=max(fig.cards_per_chart_open.values()))
    chart.x_labels = [str(n) for n in sizes]
    chart.add("chart-opens", [fig.cards_per_chart_open.get(n, 0) for n in sizes])
    return _svg(chart)


def _period(since: dt.date | None) -> str:
    return f"since {since.isoformat()}" if since else "in the whole ledger"


def headline(fig: LedgerFigures) -> str:
    """The one sentence a committee member reads first: which rule is overridden most, and why."""
    period = _period(fig.since)
    if not fig.total_cards:
        return f"No cards were recorded {period}: there is nothing to review yet."
    top = fig.most_overridden
    if top is None:
        return (f"No card was overridden {period}: {fig.total_cards} cards from "
                f"{sum(1 for r in fig.rules if r.shown)} rules were shown.")
    sentence = (f"“{top.title}” ({top.rule}) is overridden most: {top.overridden} of {top.shown} cards "
                f"({top.override_rate:.0%}) {period}")
    reason = top.top_reason
    if reason:
        code, n = reason
        return sentence + f", most often because “{fig.reason_display.get(code, code)}” ({n} of {top.overridden})."
    return sentence + ", without a coded reason."


def _median(distribution: dict[int, int]) -> float | None:
    values = [size for size, count in sorted(distribution.items()) for _ in range(count)]
    return statistics.median(values) if values else None


def render(fig: LedgerFigures, *, store_kind: str, knowledge: dict, parameters: list[dict],
           site: dict | None = None, generated: dt.datetime | None = None) -> str:
    generated = generated or dt.datetime.now(dt.timezone.utc)
    reasons_by_rule = {
        r.rule: [(fig.reason_display.get(code, code), code, n)
                 for code, n in sorted(r.override_reasons.items(), key=lambda kv: (-kv[1], kv[0]))]
        + ([(NO_REASON, "", r.overrides_without_reason)] if r.overrides_without_reason else [])
        for r in fig.rules}
    return _TEMPLATES.get_template("report.html").render(
        fig=fig, headline=headline(fig), period=_period(fig.since), reasons_by_rule=reasons_by_rule,
        per_rule_chart=per_rule_chart(fig) if fig.rules else None, reasons_chart=reasons_chart(fig),
        weekly_chart=weekly_chart(fig), burden_chart=burden_chart(fig), top_rules=fig.top_rules(TOP_RULES),
        median_cards=_median(fig.cards_per_chart_open), store_kind=store_kind, knowledge=knowledge,
        parameters=parameters, site=site or {"disabled": [], "lowered": {}},
        generated=generated.strftime("%Y-%m-%d %H:%M UTC"))


def parameter_rows(settings=None) -> list[dict]:
    """Rule parameters: the default and the value this site's configuration sets."""
    from ..config import RULE_PARAMETERS
    configured = getattr(settings, "params", None) or {}
    return [{"name": name, "default": default, "configured": configured.get(name, default)}
            for name, default in RULE_PARAMETERS.items()]


def site_choices(settings=None) -> dict:
    """Rules this site switched off or lowered (configuration), which the figures reflect."""
    return {"disabled": sorted(getattr(settings, "disabled_rules", None) or ()),
            "lowered": dict(sorted((getattr(settings, "level_caps", None) or {}).items()))}


def report_html(store, since: dt.date | None = None, settings=None) -> str:
    from ..registry import knowledge_version
    return render(collect(store, since), store_kind=getattr(store, "kind", "store"),
                  knowledge=knowledge_version(), parameters=parameter_rows(settings), site=site_choices(settings))
