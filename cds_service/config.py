"""Settings: defaults, then the TOML file named by $CDS_SERVICE_CONFIG, then environment variables,
then (for tests and embedding) a dict passed to create_app(). Every key is documented in README.md.
"""

from __future__ import annotations

import copy
import datetime as dt
import os
import tomllib
from dataclasses import dataclass
from typing import Any, Mapping

# RULES.md §4 parameters, with their defaults.
RULE_PARAMETERS: dict[str, float] = {
    "PERSISTENT_WEEKS": 4,
    "OLDER_AGE": 65,
    "EGFR_AVOID": 30,
    "EGFR_CAUTION": 60,
    "MME_WARN": 50,
    "MME_HIGH": 90,
    "ACUTE_OPIOID_MAX_DAYS": 7,
    "FEVER_C": 38.0,
    "LAB_LOOKBACK_DAYS": 365,
    "FRACTURE_AGE": 70,
    "THORACIC_WARN_AGE": 50,
}

DEFAULTS: dict[str, Any] = {
    "db": "./cds-service.sqlite3",  # a file path (SQLite) or postgresql://user:pass@host/db
    "db_schema": None,  # PostgreSQL schema (default: the connection's search_path)
    "as_of": None,  # fixed evaluation date (YYYY-MM-DD); None = today in UTC
    "public_base_url": None,
    "demo": False,  # enables GET /demo and the fixtures' own "as of" date (request extension)
    "demo_fixtures": "./fixtures",  # the scenarios GET /demo lists
    "log_level": "INFO",
    "log_format": "json",  # or "text"
    "cards": {"merge_info": True},
    "rules": {"parameters": dict(RULE_PARAMETERS), "disabled": [], "levels": {}},
    "fhir": {
        "timeout_seconds": 2.0,  # per HTTP call (connect and each read)
        "total_budget_seconds": 3.0,  # all FHIR calls of one hook request together
        "max_pages": 10,  # `next` links followed per search
        "max_response_bytes": 20_000_000,  # per response body
        "max_workers": 8,  # concurrent fetches per request
        "allowed_servers": None,  # list of fhirServer base URLs; None = any
        "require_https": False,
        "ca_bundle": None,
        "client_cert": None,
        "client_key": None,
        "proxy": None,
        "allow_private_networks": False,  # loopback/private/link-local fhirServer addresses (tests, demo)
        "max_total_bytes": 20_000_000,  # all FHIR responses of one hook request together
    },
    "prefetch": {"required": ["patient", "conditions", "medicationRequests", "medicationStatements"]},
    "http": {"max_body_bytes": 10 * 1024 * 1024, "cors_origins": ["*"],
             "header_timeout_seconds": 10},  # to receive a whole request (gunicorn)
    "auth": {"required": False, "discovery": False, "clock_skew_seconds": 60,
             "max_lifetime_seconds": 3600, "clients": [],
             "jwks_max_stale_seconds": 86400},  # last good keys served while a JWKS endpoint is down
}

ENV = {
    "CDS_SERVICE_DB": ("db",),
    "CDS_SERVICE_DB_SCHEMA": ("db_schema",),
    "CDS_SERVICE_AS_OF": ("as_of",),
    "CDS_SERVICE_PUBLIC_BASE_URL": ("public_base_url",),
    "CDS_SERVICE_DEMO": ("demo",),
    "CDS_SERVICE_LOG_LEVEL": ("log_level",),
    "CDS_SERVICE_LOG_FORMAT": ("log_format",),
    "CDS_SERVICE_REQUIRE_HTTPS": ("fhir", "require_https"),
    "CDS_SERVICE_AUTH_REQUIRED": ("auth", "required"),
}


class ConfigError(ValueError):
    pass


def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def _env_value(raw: str) -> Any:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    return raw


@dataclass(frozen=True)
class Settings:
    raw: dict

    # Convenience accessors for the values read on every request.
    @property
    def db(self) -> str:
        return str(self.raw["db"])

    @property
    def params(self) -> dict[str, float]:
        return self.raw["rules"]["parameters"]

    @property
    def fhir(self) -> dict:
        return self.raw["fhir"]

    @property
    def http(self) -> dict:
        return self.raw["http"]

    @property
    def auth(self) -> dict:
        return self.raw["auth"]

    @property
    def demo(self) -> bool:
        return bool(self.raw["demo"])

    @property
    def merge_info(self) -> bool:
        return bool(self.raw["cards"]["merge_info"])

    @property
    def disabled_rules(self) -> frozenset[str]:
        return frozenset(self.raw["rules"]["disabled"])

    @property
    def level_caps(self) -> dict[str, str]:
        return self.raw["rules"]["levels"]

    def today(self) -> dt.date:
        if self.raw["as_of"]:
            return dt.date.fromisoformat(str(self.raw["as_of"]))
        return dt.datetime.now(dt.timezone.utc).date()


def load_settings(overrides: Mapping | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    raw = copy.deepcopy(DEFAULTS)
    path = environ.get("CDS_SERVICE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                _merge(raw, tomllib.load(fh))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"cannot read configuration file {path}: {exc}") from exc
    for var, keys in ENV.items():
        if var in environ:
            target = raw
            for k in keys[:-1]:
                target = target[k]
            target[keys[-1]] = _env_value(environ[var])
    if overrides:
        _merge(raw, copy.deepcopy(dict(overrides)))
    _validate(raw)
    return Settings(raw)


def _validate(raw: dict) -> None:
    unknown = set(raw["rules"]["parameters"]) - set(RULE_PARAMETERS)
    if unknown:
        raise ConfigError(f"unknown rule parameters: {', '.join(sorted(unknown))}")
    for key, value in raw["rules"]["parameters"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"rule parameter {key} must be a number")
    for rule_id, level in raw["rules"]["levels"].items():
        if level not in {"info", "warning", "critical"}:
            raise ConfigError(f"rules.levels.{rule_id}: level must be info, warning or critical")
    if raw["as_of"]:
        try:
            dt.date.fromisoformat(str(raw["as_of"]))
        except ValueError as exc:
            raise ConfigError(f"as_of must be a date (YYYY-MM-DD): {raw['as_of']!r}") from exc
    if raw["auth"]["required"] and not raw["public_base_url"]:
        raise ConfigError("auth.required needs public_base_url (the base URL EHRs call; the JWT aud is checked against it)")
    for client in raw["auth"]["clients"]:
        if not isinstance(client, dict) or not isinstance(client.get("iss"), str):
            raise ConfigError("every [[auth.clients]] block needs an iss")
        if not client.get("jku") and not client.get("jwks_file"):
            raise ConfigError(f"auth client {client['iss']}: give jku (allow-listed JWKS URLs) and/or jwks_file")
    allowed = raw["fhir"]["allowed_servers"]
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
        raise ConfigError("fhir.allowed_servers must be a list of base URLs")
