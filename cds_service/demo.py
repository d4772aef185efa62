"""GET /demo (only with `demo = true`): the scenario fixtures, and for each one its cards drawn as an
EHR sidebar would draw them. Server-rendered; the cards come from the same pipeline as the API."""

from __future__ import annotations

import html
import json
import re
from importlib import resources
from pathlib import Path

import markdown
from flask import Blueprint, Flask, abort, current_app, render_template_string
from markupsafe import Markup

from .registry import SERVICES, service_for_hook

bp = Blueprint("demo", __name__)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
 body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f4f5f7; color: #1d2330; }
 header { background: #1d3557; color: #fff; padding: 12px 24px; } header a { color: #fff; }
 main { display: flex; gap: 24px; padding: 20px 24px; }
 nav { flex: 0 0 380px; } nav li { margin: 6px 0; } nav small { color: #5a6270; display: block; }
 .sidebar { flex: 1; max-width: 760px; }
 .card { background: #fff; border-left: 6px solid; border-radius: 6px; padding: 12px 16px; margin-bottom: 14px;
         box-shadow: 0 1px 3px rgba(0,0,0,.12); }
 .card.info { border-color: #2f6fde; } .card.warning { border-color: #e89b0c; } .card.critical { border-color: #c62828; }
 .indicator { font-size: 12px; font-weight: 700; text-transform: uppercase; letter-spacing: .05em; }
 .info .indicator { color: #2f6fde; } .warning .indicator { color: #b36f00; } .critical .indicator { color: #c62828; }
 .summary { font-weight: 600; font-size: 16px; margin: 4px 0 8px; }
 .suggestion { display: inline-block; background: #e8eefc; border: 1px solid #aac0f0; border-radius: 4px;
               padding: 4px 8px; margin: 4px 6px 0 0; font-size: 13px; }
 .source, .links { font-size: 13px; color: #5a6270; } .rule { font-family: monospace; font-size: 12px; color: #5a6270; }
</style></head><body>
<header><strong>radiculopathy-cds</strong> · demo — <a href="/demo">scenarios</a></header>
<main>
<nav><h2>Scenarios</h2><ul>
{% for f in fixtures %}<li><a href="/demo/{{ f.name }}">{{ f.name }}</a><small>{{ f.scenario }}</small></li>{% endfor %}
</ul></nav>
<section class="sidebar">
{% if chosen %}<h2>{{ chosen.name }}</h2><p>{{ chosen.scenario }}</p>
 {% if status != 200 %}<div class="card critical"><div class="summary">HTTP {{ status }}</div>{{ error }}</div>{% endif %}
 {% if status == 200 and not cards %}<p class="nocards">No cards: nothing to say for this patient.</p>{% endif %}
 {% for c in cards %}
 <article class="card {{ c.indicator }}" data-rule="{{ c.rule }}">
  <div class="indicator">{{ c.indicator }}</div>
  <div class="summary">{{ c.summary }}</div>
  <div class="detail">{{ c.detail }}</div>
  {% for s in c.suggestions %}<span class="suggestion">{{ s.label }}</span>{% endfor %}
  <p class="source">Source: <a href="{{ c.source.url }}">{{ c.source.label }}</a> · <span class="rule">{{ c.rule }}</span></p>
  {% if c.links %}<p class="links">{% for l in c.links %}<a href="{{ l.url }}">{{ l.label }}</a>{% if not loop.last %} · {% endif %}{% endfor %}</p>{% endif %}
 </article>
 {% endfor %}
{% else %}<p>Pick a scenario to see its cards as an EHR sidebar shows them.</p>{% endif %}
</section></main></body></html>"""


def scenario_files(folder: str | None) -> list:
    """The demo's scenario files: a configured folder, or those shipped in the package (so that a
    deployed install lists them whatever folder it was started from)."""
    root = Path(folder) if folder else resources.files("cds_service.fixtures")
    return sorted((p for p in root.iterdir() if p.name.endswith(".json")), key=lambda p: p.name)


def _fixtures() -> list[dict]:
    out = []
    for path in scenario_files(current_app.extensions["cds"].settings.demo_fixtures):
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        scenario = (body.get("extension") or {}).get("radiculopathy-cds.scenario", "")
        out.append({"name": path.name.removesuffix(".json"), "scenario": scenario, "body": body})
    return out


def _viewer() -> Flask:
    """The app that answers for the demo page: this one's settings with a throwaway in-memory ledger
    (viewing a scenario is not a card shown to a clinician, so it never reaches the real ledger)
    and without EHR authentication (the page itself is the caller). Made once per app."""
    app = current_app._get_current_object()
    viewer = app.extensions.get("cds.demo_viewer")
    if viewer is None:
        from .app import create_app
        settings = app.extensions["cds"].settings.model_dump()
        viewer = create_app({**settings, "db": ":memory:", "db_schema": None,
                             "auth": {**settings["auth"], "required": False}})
        app.extensions["cds.demo_viewer"] = viewer
    return viewer


def _detail(text: str) -> Markup:
    # Escape first: the detail quotes record content, which must never become markup. Record text
    # arrives escaped for GFM already (fhir_json.markdown_text): its "&lt;" and its "\:" (which breaks
    # GFM's bare-URL links; Python-Markdown has none) are shown as "<" and ":".
    # Python-Markdown wants a blank line before a list that follows a paragraph (GFM does not).
    text = html.escape(text, quote=False).replace("&amp;lt;", "&lt;").replace("\\:", ":")
    text = re.sub(r"(?m)^(?!- )(.+)\n- ", r"\1\n\n- ", text)
    return Markup(markdown.markdown(text))


@bp.before_request
def _only_in_demo_mode():
    if not current_app.extensions["cds"].settings.demo:
        abort(404)


@bp.get("/demo")
def index():
    return render_template_string(PAGE, title="radiculopathy-cds demo", fixtures=_fixtures(), chosen=None)


@bp.get("/demo/<name>")
def scenario(name: str):
    fixtures = _fixtures()
    chosen = next((f for f in fixtures if f["name"] == name), None)
    if chosen is None:
        abort(404)
    hook = chosen["body"].get("hook")
    service = (service_for_hook(hook) or SERVICES["radiculopathy-patient-view"]).id
    # The same pipeline as an EHR's call: through the service endpoint itself (of the viewer app).
    response = _viewer().test_client().post(f"/cds-services/{service}", json=chosen["body"])
    payload = response.get_json() or {}
    cards = [{"indicator": c["indicator"], "summary": c["summary"], "detail": _detail(c.get("detail", "")),
              "suggestions": c.get("suggestions", []), "source": c["source"], "links": c.get("links", []),
              "rule": c["source"]["topic"]["code"]} for c in payload.get("cards", [])]
    error = "" if response.status_code == 200 else (payload.get("issue") or [{}])[0].get("diagnostics", "")
    return render_template_string(PAGE, title=f"{name} — demo", fixtures=fixtures, chosen=chosen, cards=cards,
                                  status=response.status_code, error=error)
