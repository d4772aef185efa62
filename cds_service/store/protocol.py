"""What the service asks of its store. Adding a backend means implementing this Protocol; the store
tests run against every implementation (tests/test_store*.py)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


class StoreUnavailable(Exception):
    """The store cannot be reached or written within `store.timeout_seconds` (a fault, a hang, a
    full or read-only disk). Callers that cannot go on without it answer 503; the ledger keeps its
    rows for retry instead."""


class UnstorableValue(ValueError):
    """A value the store refuses (control characters, too long). The message names the field,
    never the value; at the HTTP boundary it is a 400."""


@runtime_checkable
class Store(Protocol):
    kind: str  # "sqlite" or "postgresql"

    def record_cards(self, service_id: str, hook_instance: str | None,
                     cards: list[tuple[dict, dict[str, list[str]]]]) -> None:
        """Queue the ledger rows of one response — (card, {rule id: uuids of the suggestions that rule
        proposed}) — never blocking on, nor failing because of, the database."""

    def add_feedback(self, service_id: str, items: list[dict]) -> int:
        """Store feedback entries (coded override reasons only); the number newly stored."""

    def remember_jti(self, iss: str, jti: str, expires_at: int) -> bool:
        """Record a token id; False when it was seen before (a replay). StoreUnavailable on a fault."""

    def link_cards(self, links: list[tuple], quieted: list[tuple]) -> None:
        """Store, synchronously, which patient (a keyed pseudonym, never the id) each returned card was
        about with each finding's fingerprint, and the findings withheld. StoreUnavailable on a fault."""

    def remembered_overrides(self, pseudonym: str) -> list[tuple]:
        """The patient's findings overridden with a coded reason (feedback joined to the card link)."""

    def shown_since(self, pseudonym: str, service_id: str, since: str) -> list[tuple]:
        """The patient's findings a service showed since a UTC time."""

    def forget(self, pseudonym: str) -> int:
        """Remove what is remembered about one patient's cards; the number of rows removed."""

    def quieted_counts(self) -> dict[str, int]:
        """Per rule: findings withheld after an override."""

    def report(self) -> list[dict]:
        """Per rule: cards shown, accepted, overridden, override reasons and cards quieted."""

    def unmatched_feedback(self) -> int:
        """Feedback entries whose card is not in the ledger."""

    def count(self, table: str) -> int: ...

    def rows(self, sql: str, params: tuple = ()) -> list[tuple]:
        """A read-only query on the store's own tables (tests, the governance report)."""

    def dump(self) -> str: ...

    def ping(self) -> bool:
        """A real, cheap write: True when the store can be written now, else StoreUnavailable."""

    def pending_rows(self) -> int:
        """Ledger rows queued or kept for retry, not yet written."""

    def flush(self) -> None:
        """Write everything queued so far, when the store allows (tests, report, shutdown)."""

    def close(self) -> None: ...
