"""Prometheus metrics (no PHI: service ids, rule ids, indicators, outcomes only).

Under gunicorn every worker writes to $PROMETHEUS_MULTIPROC_DIR (set by `cds-service serve`
before the workers import this module) and GET /metrics aggregates them."""

from __future__ import annotations

import os

from prometheus_client import (CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Counter, Histogram,
                               generate_latest, multiprocess)

REQUEST_SECONDS = Histogram("cds_request_duration_seconds", "Time to answer a CDS Hooks call",
                            ["service", "status"],
                            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5))
CARDS = Counter("cds_cards_total", "Cards returned, per rule and indicator", ["rule", "indicator"])
FHIR_FETCHES = Counter("cds_fhir_fetches_total", "Prefetch keys read from the EHR's FHIR server", ["outcome"])
DATA_UNAVAILABLE = Counter("cds_data_unavailable_total", "Calls answered 412: required data unobtainable",
                           ["service"])
AUTH_FAILURES = Counter("cds_auth_failures_total", "Calls refused 401", ["endpoint"])
QUIETED = Counter("cds_findings_withheld_total", "Findings not shown: override (quieted after a remembered "
                  "override) or repeat (shown on order-select already)", ["rule", "kind"])
FEEDBACK = Counter("cds_feedback_total", "Feedback entries received", ["outcome"])
LEDGER_DROPPED = Counter("cds_ledger_dropped_total", "Ledger rows given up: queue_full (store down too long), "
                         "rejected (refused by the database), shutdown, killed (lost with a killed worker)", ["reason"])
STORE_UNAVAILABLE = Counter("cds_store_unavailable_total", "Store operations that failed or passed their deadline",
                            ["operation"])
FEEDBACK_UNKNOWN_CARD = Counter("cds_feedback_unknown_card_total", "Feedback entries naming cards not in the ledger",
                                ["stored"])


def render() -> tuple[bytes, str]:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
