"""`cds-service serve | evaluate | report`."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

from . import orders
from .config import ConfigError, load_settings


def server_options(host: str, port: int, workers: int, threads: int, receive_seconds: float = 10) -> dict:
    """The production gunicorn configuration (the benchmark serves its no-op baseline with it too)."""
    def post_worker_init(worker):
        worker.receive_seconds = float(receive_seconds)

    return {
        "bind": f"{host}:{port}",
        "workers": workers or os.cpu_count() or 1,
        "worker_class": "cds_service.worker.RequestDeadlineWorker",  # gthread + a deadline per request
        "post_worker_init": post_worker_init,
        "threads": threads,
        # Instances on one machine shared ~/.gunicorn/gunicorn.ctl and one exiting removed
        # another's; in a container the path is not writable. Nothing here uses it.
        "control_socket_disable": True,
        "accesslog": None,  # one line per request comes from the service's own log, without PHI
        "errorlog": "-",
        "loglevel": "info",
        "timeout": 30,
        "graceful_timeout": 10,
        "keepalive": 5,
    }


def _serve(args: argparse.Namespace) -> int:
    from gunicorn.app.base import BaseApplication

    from .app import create_app

    # The demo's FHIR server, if any, is a local one.
    overrides = {"demo": True, "fhir": {"allow_private_networks": True}} if args.demo else {}
    try:
        settings = load_settings(overrides)  # fail fast, in the foreground, on a bad configuration
        orders.validate_orderables()  # … or a knowledge-base order that is not valid FHIR
    except ConfigError as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2

    # Metrics from every worker are aggregated through files (prometheus-client multiprocess mode);
    # the folder must be set before a worker first imports prometheus_client, and start empty.
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="cds-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    os.makedirs(metrics_dir, exist_ok=True)
    for stale in Path(metrics_dir).glob("*.db"):
        stale.unlink()

    def child_exit(server, worker):
        from prometheus_client import multiprocess
        multiprocess.mark_process_dead(worker.pid)

    def worker_exit(server, worker):  # a clean shutdown writes what the ledger still holds
        app = getattr(worker, "wsgi", None)
        if app is not None and hasattr(app, "extensions"):
            app.extensions["cds"].store.close()

    class Server(BaseApplication):
        def load_config(self):
            options = server_options(args.host, args.port, args.workers, args.threads,
                                     settings.http.header_timeout_seconds)
            options["worker_exit"] = worker_exit
            options["child_exit"] = child_exit
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):
            return create_app(overrides)

    Server().run()
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from .app import create_app
    from .http import AS_OF_EXTENSION

    try:
        body = json.loads(Path(args.request).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"cds-service: cannot read {args.request}: {exc}", file=sys.stderr)
        return 2
    if not isinstance(body, dict):
        print("cds-service: the request file must hold a JSON object", file=sys.stderr)
        return 2
    if args.fhir_server:
        body["fhirServer"] = args.fhir_server
    # Offline review never writes the ledger; its --fhir-server is usually a local one.
    overrides: dict = {"db": ":memory:", "demo": True, "fhir": {"allow_private_networks": True}}
    if args.as_of:
        overrides["as_of"] = args.as_of
        ext = body.get("extension")
        if isinstance(ext, dict):
            ext.pop(AS_OF_EXTENSION, None)
            if not ext:
                del body["extension"]  # an empty extension object is not allowed
    from .registry import service_for_hook
    found = service_for_hook(body.get("hook"))
    service = found.id if found else None
    if service is None:
        print(f"cds-service: no service answers the hook {body.get('hook')!r}", file=sys.stderr)
        return 2
    app = create_app(overrides)
    response = app.test_client().post(f"/cds-services/{service}", json=body)
    print(json.dumps(response.get_json(), indent=2, ensure_ascii=False))
    return 0 if response.status_code == 200 else 1


def _report(args: argparse.Namespace) -> int:
    from .store import StoreUnavailable, store_for

    if args.format != "html" and (args.since or args.output):
        print("cds-service: --since and --output apply to --format html", file=sys.stderr)
        return 2
    if args.since and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", args.since):
        print("cds-service: --since must be a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    settings = load_settings()
    if _missing_sqlite_ledger(settings.db):
        # Opening it would create an empty database and print an empty report as if nothing was shown.
        print(f"cds-service: no ledger at {settings.db}: nothing to report (set CDS_SERVICE_DB to the "
              f"service's database)", file=sys.stderr)
        return 1
    store = store_for(settings)
    if args.format == "html":
        return _report_html(args, store, settings)
    try:
        rows = store.report()
        unmatched = store.unmatched_feedback()
    except StoreUnavailable as exc:
        print(f"cds-service: cannot read the ledger: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    header = f"{'rule':40} {'shown':>7} {'accepted':>9} {'overridden':>11} {'quieted':>8}  override reasons"
    print(header)
    print("-" * len(header))
    for r in rows:
        reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["override_reasons"].items()))
        print(f"{r['rule']:40} {r['shown']:>7} {r['accepted']:>9} {r['overridden']:>11} {r['quieted']:>8}  {reasons}")
    if unmatched:
        print(f"\n{unmatched} feedback entries name cards that are not in this ledger.")
    return 0


def _forget(args: argparse.Namespace) -> int:
    """Remove one patient's remembered overrides (and order-select memory), found by the site's key."""
    from .overrides import Pseudonyms, load_key, scope_of
    from .store import StoreUnavailable, store_for

    settings = load_settings()
    key = load_key(settings)
    if key is None:
        print("cds-service: no privacy.pseudonym_key (or pseudonym_key_file) is set: nothing is remembered, "
              "so there is nothing to forget", file=sys.stderr)
        return 2
    if _missing_sqlite_ledger(settings.db):
        print(f"cds-service: no store at {settings.db}: nothing to forget", file=sys.stderr)
        return 1
    scope = scope_of(args.issuer, args.fhir_server)
    store = store_for(settings)
    try:
        removed = store.forget(Pseudonyms(key).patient(scope, args.patient_id))
    except StoreUnavailable as exc:
        print(f"cds-service: cannot reach the store: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    # The patient id is the operator's own input; the output names counts only.
    print(f"forgot {removed} remembered card finding(s) for that patient")
    return 0


def _missing_sqlite_ledger(db: str) -> bool:
    return not re.match(r"postgres(ql)?://", db) and db != ":memory:" and not Path(db).exists()


# Section headings of docs/rules.md, by the module that defines the rules (catalogue order).
RULE_SECTIONS = {
    "red_flags": "Red flags and differential",
    "imaging": "Imaging and procedures",
    "first_line": "First line, non-drug care and monitoring",
    "nsaid": "NSAID safety",
    "muscle_relaxant": "Muscle relaxants",
    "second_line": "Second-line drugs",
    "opioid": "Opioids",
}


def _report_html(args: argparse.Namespace, store, settings) -> int:
    import datetime as dt

    from .governance.report_html import report_html
    try:
        since = dt.date.fromisoformat(args.since) if args.since else None
    except ValueError:
        store.close()
        print("cds-service: --since must be a date (YYYY-MM-DD)", file=sys.stderr)
        return 2
    try:
        html = report_html(store, since, settings)
    finally:
        store.close()
    if not args.output:
        print(html)
        return 0
    try:
        Path(args.output).write_text(html, encoding="utf-8")
    except OSError as exc:
        print(f"cds-service: cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 2
    return 0


def rule_rows() -> list[dict]:
    """Every rule, from the code's own definitions (rules/*.py), for clinical review."""
    from . import knowledge
    from .rules import CATALOGUE
    registry = knowledge.sources()
    return [{"id": r.id, "title": r.title, "hooks": sorted(r.hooks), "trigger": r.trigger, "levels": list(r.levels),
             "suggests": r.suggests, "section": _section(r.evaluate.__module__),
             "sources": [{"id": s, "label": registry[s].label, "url": registry[s].url} for s in r.sources]}
            for r in CATALOGUE]


def _section(module: str) -> str:
    name = module.rsplit(".", 1)[-1]
    return RULE_SECTIONS.get(name, name.replace("_", " ").capitalize())


def rules_markdown(rows: list[dict]) -> str:
    """docs/rules.md: the catalogue as reviewers read it, one table per section."""
    from . import knowledge
    out = ["# Rule catalogue", "",
           "Generated from the rules' own definitions (`cds_service/rules/`) by",
           "`cds-service rules --format markdown > docs/rules.md`; do not edit by hand.",
           f"Catalogue version: {knowledge.CATALOGUE_VERSION}. Each card names its rule id in",
           "`source.topic.code`; merged care-plan cards list theirs in the `radiculopathy-cds.rules` extension.",
           ""]
    sections: dict[str, list[dict]] = {}
    for r in rows:
        sections.setdefault(r["section"], []).append(r)
    for title, members in sections.items():
        out += [f"## {title}", "", "| id | hooks | fires when | level | suggests | sources |",
                "|---|---|---|---|---|---|"]
        for r in members:
            sources = "; ".join(f"[{s['label']}]({s['url']})" if s["url"] else s["label"] for s in r["sources"])
            out.append(f"| `{r['id']}` | {', '.join(r['hooks'])} | {_cell(r['trigger'])} | {' / '.join(r['levels'])} | "
                       f"{_cell(r['suggests'])} | {sources} |")
        out.append("")
    return "\n".join(out)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rules(args: argparse.Namespace) -> int:
    if args.format == "fhir":
        from .governance.fhir_export import export_bundle
        print(json.dumps(export_bundle(load_settings()), indent=2, ensure_ascii=False))
        return 0
    rows = rule_rows()
    if args.format == "json":
        print(json.dumps(rows, indent=2, ensure_ascii=False))
    elif args.format == "markdown":
        print(rules_markdown(rows), end="")
    else:
        for r in rows:
            print(f"{r['id']}  [{', '.join(r['hooks'])}]  {' / '.join(r['levels'])}\n    {r['title']}\n"
                  f"    fires when: {r['trigger']}\n    suggests: {r['suggests']}\n"
                  f"    sources: {', '.join(s['label'] for s in r['sources'])}\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cds-service", description="CDS Hooks service for back pain with radiculopathy")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the production server (gunicorn) in the foreground")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=0, help="worker processes (default: CPU count)")
    serve.add_argument("--threads", type=int, default=4, help="threads per worker")
    serve.add_argument("--demo", action="store_true",
                       help="demo mode: fixtures' own 'as of' dates are honoured and GET /demo is on")
    serve.set_defaults(func=_serve)

    ev = sub.add_parser("evaluate", help="run the HTTP pipeline on a request file and print the response")
    ev.add_argument("request")
    ev.add_argument("--fhir-server", help="fhirServer to use instead of the request's")
    ev.add_argument("--as-of", help="evaluation date (YYYY-MM-DD) instead of the request's or today")
    ev.set_defaults(func=_evaluate)

    rep = sub.add_parser("report", help="per rule: cards shown, accepted, overridden, quieted")
    rep.add_argument("--format", choices=("table", "json", "html"), default="table")
    rep.add_argument("--since", metavar="DATE", help="html: cards shown on or after DATE (YYYY-MM-DD, UTC)")
    rep.add_argument("--output", metavar="FILE", help="html: write the report to FILE (default: standard output)")
    rep.set_defaults(func=_report)

    forget = sub.add_parser("forget", help="remove one patient's remembered overrides (with the site's pseudonym key)")
    forget.add_argument("--patient-id", required=True, help="the patient's id on the EHR's FHIR server")
    whose = forget.add_mutually_exclusive_group(required=True)
    whose.add_argument("--issuer", help="the EHR's JWT issuer (sites with auth.required)")
    whose.add_argument("--fhir-server", help="the EHR's fhirServer base URL (sites without auth)")
    forget.set_defaults(func=_forget)

    rules = sub.add_parser("rules", help="every rule: id, hooks, trigger, levels, suggestions, sources")
    rules.add_argument("--format", choices=("table", "json", "markdown", "fhir"), default="table",
                       help="fhir: a FHIR R4 Bundle of PlanDefinitions, ValueSets and a Library")
    rules.set_defaults(func=_rules)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # `cds-service rules | head`
        return 0
    except ConfigError as exc:
        print(f"cds-service: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
