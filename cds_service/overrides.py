"""Overrides the service remembers, and order-sign without repeats from order-select.

The store never sees a patient id: a patient is HMAC-SHA256(site key, scope + "|" + patient id),
where the scope is the verified JWT issuer (auth on), else the fhirServer base URL, else `local`.
Draft-order ids, pair drugs and a finding's summary are kept as keyed hashes too: they are only ever
compared for equality. This is pseudonymous, not anonymous: whoever holds the key and a patient id
can find that patient's rows. A new key unlinks (forgets) everything.

A returned card is linked to its patient's pseudonym and to each finding's fingerprint (level,
key-figure band, pair drugs) before the response leaves; feedback that overrides the card with a
coded reason then quiets that rule for the patient (patient-view) or for that draft order
(order-select, order-sign) for `overrides.quiet_days`, unless the finding is critical or worse than
when it was overridden. The link and the feedback are joined when read, so their order never matters.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from . import knowledge
from .cards import CARE_PLAN_TOPIC, BuiltCard, care_plan_note, order_ref
from .config import ConfigError, Settings
from .facts import Facts
from .rules import LEVELS, PV, Finding
from .store import Store, StoreUnavailable

log = logging.getLogger("cds_service.overrides")



def utcnow() -> dt.datetime:
    """The wall clock of the order-sign repeat window (tests move it)."""
    return dt.datetime.now(dt.timezone.utc)


def load_key(settings: Settings) -> bytes | None:
    """The site's pseudonym key, or None (the feature is off). A named key file that cannot be read,
    or an empty key, is a configuration error: silently forgetting every override would be worse."""
    privacy = settings.privacy
    if privacy.pseudonym_key is not None:
        key = privacy.pseudonym_key.get_secret_value().encode()
        name = "privacy.pseudonym_key"
    elif privacy.pseudonym_key_file is not None:
        name = "privacy.pseudonym_key_file"
        try:
            key = Path(privacy.pseudonym_key_file).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read the key file ({exc.strerror or type(exc).__name__})") from None
    else:
        return None
    if not key:
        raise ConfigError(f"{name}: the key is empty")
    return key


def scope_of(issuer: str | None, fhir_server: object) -> str:
    """Whose patient ids these are: the verified issuer, else the FHIR server's base URL (scheme and
    host lower-cased, no trailing slash), else `local`."""
    if issuer:
        return issuer
    if isinstance(fhir_server, str) and fhir_server.strip():
        try:
            parts = urlsplit(fhir_server.strip())
            host = parts.hostname or ""
            port = f":{parts.port}" if parts.port else ""
        except ValueError:
            return fhir_server.strip().rstrip("/")
        return f"{parts.scheme.lower()}://{host}{port}{parts.path}".rstrip("/")
    return "local"


@dataclass(frozen=True)
class Pseudonyms:
    key: bytes

    def _hash(self, *parts: str) -> str:
        return hmac.new(self.key, "|".join(parts).encode(), hashlib.sha256).hexdigest()

    def patient(self, scope: str, patient_id: str) -> str:
        return self._hash(scope, patient_id)

    def order(self, scope: str, ref: str | None) -> str:
        return self._hash("order", scope, ref)[:32] if ref else ""

    def drug(self, name: str) -> str:
        return self._hash("drug", name)[:16]

    def summary(self, text: str) -> str:
        return self._hash("summary", text)[:16]


@dataclass(frozen=True)
class Fingerprint:
    level: str
    band: int
    partners: frozenset[str]

    def worse_than(self, before: "Fingerprint") -> bool:
        """A higher level, the next band of the key figure, or a drug new to the pair."""
        return (LEVELS.index(self.level) > LEVELS.index(before.level) or self.band > before.band
                or not self.partners <= before.partners)


@dataclass
class Remembered:
    rule_id: str
    order_token: str
    fingerprint: Fingerprint
    on: dt.date
    reason_code: str = ""
    digest: str = ""


def _remembered(row: tuple) -> Remembered:
    rule_id, token, level, band, partners, on, *rest = row
    return Remembered(rule_id, token, Fingerprint(level, int(band), frozenset(json.loads(partners))),
                      dt.date.fromisoformat(on), *rest)


def reason_display(rule_id: str, code: str) -> str | None:
    """The reason's words as knowledge/override_reasons.toml has them; None for a code it does not know."""
    data = knowledge.override_reasons()
    return data.get("rules", {}).get(rule_id, {}).get(code) or data["default"].get(code) or next(
        (t[code] for t in data.get("rules", {}).values() if code in t), None)


@dataclass
class Withheld:
    finding: Finding
    order: str | None
    kind: str  # "override" or "repeat"
    line: str = ""


@dataclass
class Screen:
    """One request's view of what the patient's earlier cards and overrides allow it to show."""
    names: Pseudonyms
    store: Store
    settings: Settings
    service_id: str
    hook: str
    scope: str
    pseudonym: str
    today: dt.date
    select_service_id: str | None = None  # order-sign: the order-select service whose findings not to repeat
    withheld: list[Withheld] = field(default_factory=list)
    facts: Facts | None = None

    def fingerprint(self, x: Finding) -> Fingerprint:
        return Fingerprint(x.indicator, x.band, frozenset(self.names.drug(p) for p in x.partners))

    def quiet_days(self, rule_id: str) -> int:
        return self.settings.overrides.rules.get(rule_id, self.settings.overrides.quiet_days)

    def __call__(self, findings: list[Finding], facts: Facts) -> list[Finding]:
        self.facts = facts
        try:
            overrides = self._overrides()
            shown = self._shown_on_select()
        except StoreUnavailable as exc:  # fail open: an unreadable memory shows every card
            log.warning("remembered overrides not read, every finding shown: %s", exc)
            return findings
        kept = []
        for x in findings:
            order = order_ref(x, facts) if self.hook != PV else None
            token = self.names.order(self.scope, order)
            if x.indicator == "warning" and (self.hook == PV or token):
                before = overrides.get((x.rule.id, token))
                days = self.quiet_days(x.rule.id)
                if before and days and self.today < before.on + dt.timedelta(days=days) \
                        and not self.fingerprint(x).worse_than(before.fingerprint):
                    until = before.on + dt.timedelta(days=days)
                    self.withheld.append(Withheld(x, order, "override", (
                        f"“{x.summary}”: quieted after an override on {before.on.isoformat()} "
                        f"(reason: {reason_display(x.rule.id, before.reason_code)}) until {until.isoformat()}.")))
                    continue
            if x.indicator != "critical" and token and (x.rule.id, token) in shown:
                mark = (self.fingerprint(x), self.names.summary(x.summary))
                if mark in shown[(x.rule.id, token)]:
                    self.withheld.append(Withheld(x, order, "repeat"))
                    continue
            kept.append(x)
        return kept

    def _overrides(self) -> dict[tuple[str, str], Remembered]:
        latest: dict[tuple[str, str], Remembered] = {}
        system = knowledge.override_reasons()["system"]
        for row in self.store.remembered_overrides(self.pseudonym):  # newest first
            r = _remembered(row[:6])
            reason_system, r.reason_code = row[6], row[7]
            if reason_system != system or reason_display(r.rule_id, r.reason_code) is None:
                continue  # only one of the card's own coded reasons quiets it
            latest.setdefault((r.rule_id, r.order_token), r)
        return latest

    def _shown_on_select(self) -> dict[tuple[str, str], set]:
        if self.select_service_id is None:
            return {}
        hours = self.settings.order_sign.repeat_window_hours
        since = (utcnow() - dt.timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        out: dict[tuple[str, str], set] = {}
        for row in self.store.shown_since(self.pseudonym, self.select_service_id, since):
            r = _remembered(row[:6])
            out.setdefault((r.rule_id, r.order_token), set()).add((r.fingerprint, row[6]))
        return out

    # -- after the cards are built ------------------------------------------------------------
    def name_quieted(self, cards: list[BuiltCard]) -> list[BuiltCard]:
        """Nothing disappears without a trace: each quieted finding is a line of the care-plan card
        (patient-view) or of its order's card; with no such card, an info care-plan card of its own."""
        quieted = [w for w in self.withheld if w.kind == "override"]
        if not quieted:
            return cards
        facts = self.facts
        by_target: dict[int | None, list[str]] = {}
        for w in quieted:
            target = next((i for i, c in enumerate(cards) if (
                c.card["source"]["topic"]["code"] == CARE_PLAN_TOPIC["code"] if self.hook == PV
                else c.findings and order_ref(c.findings[0], facts) == w.order)), None)
            by_target.setdefault(target, []).append(w.line)
        for target, lines in by_target.items():
            text = "**Quieted after an override:**\n" + "\n".join(f"- {line}" for line in lines)
            if target is not None:
                cards[target].card["detail"] += "\n\n" + text
            else:
                first = next(w for w in quieted if w.line in lines)
                cards.append(care_plan_note(facts, text, first.finding.rule.sources[0]))
        return cards

    def links(self, cards: list[BuiltCard]) -> list[tuple]:
        rows = []
        for built in cards:
            for x in built.findings:
                order = order_ref(x, self.facts) if self.hook != PV else None
                fp = self.fingerprint(x)
                rows.append((built.card["uuid"], x.rule.id, self.pseudonym, self.service_id,
                             self.names.order(self.scope, order), x.indicator, x.band,
                             json.dumps(sorted(fp.partners)), self.names.summary(x.summary), self.today.isoformat()))
        return rows

    def withheld_rows(self) -> list[tuple]:
        return [(w.finding.rule.id, self.service_id, w.kind) for w in self.withheld]


def screen_for(names: Pseudonyms | None, store: Store, settings: Settings, service, body: dict,
               issuer: str | None, today: dt.date, select_service_id: str | None) -> Screen | None:
    """The request's screen, or None when the feature is off or the request names no patient."""
    if names is None or not settings.overrides.enabled:
        return None
    patient_id = (body.get("context") or {}).get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        return None
    scope = scope_of(issuer, body.get("fhirServer"))
    return Screen(names, store, settings, service.id, service.hook, scope, names.patient(scope, patient_id), today,
                  select_service_id)
