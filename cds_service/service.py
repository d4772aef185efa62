"""The service layer behind the HTTP controller: one call answers one CDS Hooks request.

It evaluates (registry.evaluate_request), applies the patient's remembered overrides (overrides.py),
queues the ledger rows, stores the card → pseudonym links before the response leaves, and counts the
metrics. http.call_service only checks the request and turns the outcome into HTTP.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from . import metrics
from .overrides import screen_for
from .record import DataUnavailable, PatientRecord
from .registry import Service, evaluate_request, service_for_hook
from .store import StoreUnavailable

log = logging.getLogger("cds_service.service")

__all__ = ["Answer", "DataUnavailable", "answer"]


@dataclass
class Answer:
    cards: list[dict]
    rules: list[str]  # rule ids behind the cards, for the request log
    record: PatientRecord


def _earlier_service_id(service: Service) -> str | None:
    """The service whose findings this one does not repeat (order-sign: order-select's)."""
    earlier = service_for_hook(service.profile.after) if service.profile.after else None
    return earlier.id if earlier else None


def answer(state, service: Service, body: dict, today: dt.date, issuer: str | None) -> Answer:
    """The cards for one request. Raises DataUnavailable (→ 412) when required data cannot be had."""
    screen = screen_for(state.pseudonyms, state.store, state.settings, service, body, issuer, today,
                        _earlier_service_id(service))
    try:
        result = evaluate_request(service, body, state.settings, state.fhir, today, screen=screen)
    except DataUnavailable as exc:
        metrics.DATA_UNAVAILABLE.labels(service.id).inc()
        metrics.FHIR_FETCHES.labels("failed").inc(len(exc.problems))
        raise
    built = result.cards
    if screen is not None:
        built = screen.name_quieted(built)
        try:  # before the response: feedback on these cards must find their patient
            state.store.link_cards(screen.links(built), screen.withheld_rows())
        except StoreUnavailable as exc:  # the cards are still shown; an override of them is not remembered
            log.warning("cards not linked to their patient, overrides of them will not be remembered: %s", exc)
        for w in screen.withheld:
            metrics.QUIETED.labels(w.finding.rule.id, w.kind).inc()
    state.store.record_cards(service.id, body.get("hookInstance"),
                             [(c.card, c.rule_suggestions) for c in built if c.rule_ids])
    _count(service, result.record, built)
    return Answer([c.card for c in built], sorted({r for c in built for r in c.rule_ids}), result.record)


def _count(service: Service, record: PatientRecord, built) -> None:
    fetched = record.fetch_count
    if fetched:
        failed = len(record.unavailable)
        metrics.FHIR_FETCHES.labels("ok").inc(fetched - failed)
        if failed:
            metrics.FHIR_FETCHES.labels("failed").inc(failed)
    for card in built:
        for rule_id in card.rule_ids:
            metrics.CARDS.labels(rule_id, card.card["indicator"]).inc()
