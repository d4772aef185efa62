"""Settings: defaults, then the TOML file named by $CDS_SERVICE_CONFIG, then environment variables,
then (for tests and embedding) a dict passed to create_app().

Every key is declared in the typed models below, with its type, range and meaning: an unknown key
(a typo such as `alowed_servers`), a wrong type (`timeout_seconds = "abc"`, `CDS_SERVICE_DEMO=maybe`)
or an out-of-range value is a ConfigError naming the key and where it came from, so a mistake stops
the service at start instead of silently switching a safeguard off. The README's configuration
table is generated from these models (`python -m cds_service.config`) and a test keeps it in step.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
import tomllib
from typing import Any, Literal, Mapping

from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator,
                      model_validator)

# The rule parameters (catalogue revision 2), with their defaults. A site may change the numbers, never the names.
RULE_PARAMETERS: dict[str, int | float] = {
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
    "STALE_ORDER_DAYS": 400,
    "CHRONIC_WEEKS": 12,
    "SEVERE_PAIN": 7,
}

# The services' prefetch keys (registry.py); `prefetch.required` may name only these.
PREFETCH_KEYS = ("patient", "conditions", "medicationRequests", "medicationStatements", "observations",
                 "procedures", "serviceRequests")

def _all_keys(model: type[BaseModel]) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(name)
        if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            keys |= _all_keys(field.annotation)
    return keys


# Environment variable → the key it sets (applied after the file, before create_app's dict).
ENV: dict[str, tuple[str, ...]] = {
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
    """A configuration mistake, as one line: where, which key, what is wrong (never the value)."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CardsSettings(_Section):
    merge_info: bool = Field(True, description="merge patient-view info findings into one care-plan card")
    evidence_alone: bool = Field(False, description="show evidence-only findings as cards of their own")


def _known_parameters(value: Any) -> Any:
    if not isinstance(value, Mapping):
        raise ValueError("must be a table of parameter = number")
    unknown = sorted(set(value) - set(RULE_PARAMETERS))
    if unknown:
        raise ValueError(f"unknown rule parameter(s) {', '.join(unknown)}; known: {', '.join(RULE_PARAMETERS)}")
    for name, number in value.items():
        # bool is an int in Python; a threshold of `true` is a mistake, not 1.
        if isinstance(number, bool) or not isinstance(number, (int, float)):
            raise ValueError(f"{name} must be a number")
        if not number > 0:
            raise ValueError(f"{name} must be greater than 0")
    return {**RULE_PARAMETERS, **value}


class RulesSettings(_Section):
    parameters: dict[str, int | float] = Field(
        default_factory=lambda: dict(RULE_PARAMETERS),
        description="rule thresholds by name (only the names listed here; positive numbers): "
                    + ", ".join(f"`{k}` {v}" for k, v in RULE_PARAMETERS.items()))
    disabled: list[str] = Field(default_factory=list, description="rule ids switched off at this site")
    levels: dict[str, Literal["info", "warning", "critical"]] = Field(
        default_factory=dict, description='rule id → lower level (`"nsaid.cardiovascular" = "info"`); never raises a level')

    _parameters = field_validator("parameters", mode="before")(lambda v: _known_parameters(v))


class PrefetchSettings(_Section):
    required: list[Literal[PREFETCH_KEYS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["patient", "conditions", "medicationRequests", "medicationStatements"],
        description="prefetch keys whose absence answers 412")


class FhirSettings(_Section):
    timeout_seconds: float = Field(2.0, gt=0, description="per FHIR call (connect and each read)")
    total_budget_seconds: float = Field(3.0, gt=0, description="all FHIR calls of one hook request together")
    max_pages: int = Field(10, ge=1, description="`next` links followed per search")
    # A page over 10 MB is refused before it is parsed: parsing one takes ~6× its size in memory, and
    # FHIR servers page their searches (a 5,000-resource record is a few MB).
    max_response_bytes: int = Field(10_000_000, gt=0, description="per FHIR response body (one search page); "
                                    "larger pages are refused before they are parsed")
    max_total_bytes: int = Field(20_000_000, gt=0, description="FHIR response bytes a worker holds at once, all its requests together (so "
                                 "also per request); over it the fetch fails")
    max_workers: int = Field(8, ge=1, description="concurrent FHIR fetches per worker")
    allowed_servers: list[str] | None = Field(
        None, description="`fhirServer` base URLs the service may call (others get 400 before any fetch); none = any")
    allow_private_networks: bool = Field(
        False, description="allow loopback, link-local and private fhirServer addresses not on `allowed_servers`")
    require_https: bool = Field(False, description="refuse `http://` fhirServer values (production)")
    ca_bundle: str | None = Field(None, description="CA bundle file for the FHIR server's certificate")
    client_cert: str | None = Field(None, description="client certificate file (mutual TLS)")
    client_key: str | None = Field(None, description="client certificate key file")
    proxy: str | None = Field(None, description="HTTP(S) proxy URL for FHIR calls")


class HttpSettings(_Section):
    max_body_bytes: int = Field(10 * 1024 * 1024, gt=0, description="request body limit (413 above)")
    cors_origins: list[str] = Field(default_factory=lambda: ["*"],
                                    description="allowed CORS origins (answered as `*`, never with credentials); preflight "
                                                "is never authenticated")
    header_timeout_seconds: float = Field(10, gt=0, description="`serve`: time a client has to send a whole request "
                                     "(line, headers, body) before the connection is closed")


class AuthClient(_Section):
    iss: str = Field(min_length=1)
    jku: list[str] = Field(default_factory=list)
    jwks_file: str | None = None
    tenant: str | None = None

    @field_validator("jku", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_keys(self) -> "AuthClient":
        if not self.jku and not self.jwks_file:
            raise ValueError("give jku (allow-listed JWKS URLs) and/or jwks_file")
        return self


class AuthSettings(_Section):
    required: bool = Field(False, description="every service and feedback call needs the EHR's JWT")
    discovery: bool = Field(False, description="GET /cds-services needs a JWT too")
    clock_skew_seconds: int = Field(60, ge=0, description="tolerance for `exp`, `iat` and `nbf`")
    max_lifetime_seconds: int = Field(3600, gt=0, description="longest accepted `exp - iat`")
    jwks_max_stale_seconds: int = Field(86400, ge=0,
                                        description="serve the last good JWKS keys this long while the endpoint is down")
    clients: list[AuthClient] = Field(default_factory=list,
                                      description="trusted EHRs: `[[auth.clients]]` with `iss`, `jku` and/or `jwks_file`, optional `tenant`")


class StoreSettings(_Section):
    timeout_seconds: float = Field(1.0, gt=0, description="deadline of every store operation (connect, statement, lock wait)")
    retry_queue_max_rows: int = Field(100_000, gt=0,
                                      description="ledger rows kept for retry while the store cannot be written; more are dropped and counted")


class OrderSignSettings(_Section):
    repeat_window_hours: int = Field(12, gt=0, description="order-sign: an order repeated within this window is a repeat")


class PrivacySettings(_Section):
    pseudonym_key: SecretStr | None = Field(None, description="site key for HMAC pseudonyms of patients (remembered overrides)")
    pseudonym_key_file: str | None = Field(None, description="file holding the site pseudonym key (instead of `pseudonym_key`)")

    @model_validator(mode="after")
    def _one_key(self) -> "PrivacySettings":
        if self.pseudonym_key is not None and self.pseudonym_key_file is not None:
            raise ValueError("give pseudonym_key or pseudonym_key_file, not both")
        return self


class OverridesSettings(_Section):
    enabled: bool = Field(False, description="remember clinicians' overrides per patient (default: on when a pseudonym key is set)")
    quiet_days: int = Field(30, ge=0, description="days an overridden card stays quiet for that patient")
    rules: dict[str, int] = Field(default_factory=dict, description="rule id → quiet days for that rule (0 = never quiet)")

    @field_validator("rules")
    @classmethod
    def _not_negative(cls, value: dict[str, int]) -> dict[str, int]:
        for rule_id, days in value.items():
            if days < 0:
                raise ValueError(f"{rule_id}: days must be 0 or more")
        return value


class ExportSettings(_Section):
    canonical_base: str = Field("https://example.org/radiculopathy-cds", pattern=r"^https?://\S+$",
                                description="canonical URL base of the exported FHIR knowledge artifacts")


class Settings(_Section):
    db: str = Field("./cds-service.sqlite3", min_length=1,
                    description="the store (card ledger, feedback, JWT replay cache; no PHI): a file path for SQLite, "
                                "or `postgresql://user:password@host:5432/db`")
    db_schema: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,62}$",
                                  description="PostgreSQL schema for the tables (default: the connection's search_path)")
    as_of: dt.date | None = Field(None, description="fixed evaluation date (YYYY-MM-DD), for tests and demos; none = today (UTC)")
    public_base_url: str | None = Field(None, pattern=r"^https?://\S+$", description="the base URL EHRs call (JWT `aud`)")
    demo: bool = Field(False, description='honour a request\'s `extension["radiculopathy-cds.as-of"]` date and serve GET /demo')
    demo_fixtures: str | None = Field(None, description="a folder of scenarios for `GET /demo` (demo mode only); "
                                                        "unset = the scenarios shipped in the package")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field("INFO", description="Python log level")
    log_format: Literal["json", "text"] = Field("json", description="`json` (one object per line) or `text`")
    cards: CardsSettings = CardsSettings()
    rules: RulesSettings = RulesSettings()
    prefetch: PrefetchSettings = PrefetchSettings()
    fhir: FhirSettings = FhirSettings()
    http: HttpSettings = HttpSettings()
    auth: AuthSettings = AuthSettings()
    store: StoreSettings = StoreSettings()
    order_sign: OrderSignSettings = OrderSignSettings()
    privacy: PrivacySettings = PrivacySettings()
    overrides: OverridesSettings = OverridesSettings()
    export: ExportSettings = ExportSettings()

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _overrides_follow_the_key(cls, data: Any) -> Any:
        # overrides.enabled defaults to "a pseudonym key is set": remembered overrides need one.
        if isinstance(data, dict):
            privacy = data.get("privacy") if isinstance(data.get("privacy"), Mapping) else {}
            overrides = data.get("overrides") if isinstance(data.get("overrides"), Mapping) else None
            if overrides is None or "enabled" not in overrides:
                keyed = privacy.get("pseudonym_key") is not None or privacy.get("pseudonym_key_file") is not None
                data = {**data, "overrides": {**(overrides or {}), "enabled": keyed}}
        return data

    @model_validator(mode="after")
    def _consistent(self) -> "Settings":
        if self.auth.required and not self.public_base_url:
            raise ValueError("auth.required needs public_base_url (the base URL EHRs call; the JWT aud is checked against it)")
        return self

    # The accessors the code reads on every request.
    @property
    def params(self) -> dict[str, int | float]:
        return self.rules.parameters

    @property
    def merge_info(self) -> bool:
        return self.cards.merge_info

    @property
    def evidence_alone(self) -> bool:
        return self.cards.evidence_alone

    @property
    def disabled_rules(self) -> frozenset[str]:
        return frozenset(self.rules.disabled)

    @property
    def level_caps(self) -> dict[str, str]:
        return self.rules.levels

    def today(self) -> dt.date:
        return self.as_of or dt.datetime.now(dt.timezone.utc).date()


_KEYS = _all_keys(Settings) | _all_keys(AuthClient)


# -- loading -----------------------------------------------------------------------------------

def _merge(base: dict, extra: Mapping) -> dict:
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = dict(value) if isinstance(value, Mapping) else value
    return base


def _has(layer: Any, path: tuple) -> bool:
    for part in path:
        if isinstance(layer, Mapping) and part in layer:
            layer = layer[part]
        elif isinstance(layer, list) and isinstance(part, int) and part < len(layer):
            layer = layer[part]
        else:
            return False
    return True


def _describe(error: dict, layers: list[tuple[str, dict]]) -> str:
    """One line: where the offending key was given, the key, and what is wrong with it (never its value)."""
    # pydantic adds the tag of a union or a literal member to the location: keep keys and indexes only.
    loc = tuple(p for p in error["loc"] if isinstance(p, int) or p in _KEYS or not _is_tag(p))
    message = error["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    if not loc:  # a check across keys names its key first: "auth.required needs public_base_url"
        loc = tuple(message.split(" ", 1)[0].split("."))
    source = next((name for name, layer in reversed(layers) if loc and _has(layer, loc)), None)
    source = source or next((name for name, layer in reversed(layers) if loc and _has(layer, loc[:1])),
                            "the configuration")
    key = ".".join(str(p) for p in loc)
    return f"{source}: {message}" if message.startswith(key + " ") else f"{source}: {key}: {message}"


def _is_tag(part: str) -> bool:
    return part in {"int", "float", "str", "bool", "list", "dict"} or part.startswith(("literal[", "function-"))


def load_settings(overrides: Mapping | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    layers: list[tuple[str, dict]] = []
    path = environ.get("CDS_SERVICE_CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                layers.append((path, tomllib.load(fh)))
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the configuration file ({exc.strerror or type(exc).__name__})") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    for var, keys in ENV.items():
        if var in environ:
            layer: dict = {}
            target = layer
            for k in keys[:-1]:
                target = target.setdefault(k, {})
            target[keys[-1]] = environ[var]
            layers.append((f"environment variable {var}", layer))
    if overrides:
        layers.append(("create_app(config)", _merge({}, overrides)))
    merged: dict = {}
    for _, layer in layers:
        _merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        errors = exc.errors(include_input=False)
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ConfigError(_describe(errors[0], layers) + more) from None


# -- documentation -----------------------------------------------------------------------------

def _default_text(field) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, BaseModel):
        return ""
    if isinstance(value, str):
        return f"`{value}`"
    if isinstance(value, list):
        return "`[" + ", ".join(f'"{v}"' for v in value) + "]`"
    if isinstance(value, dict):
        return "`{}`" if not value else "see meaning"
    return f"`{value}`"


def documented_keys(model: type[BaseModel] = Settings, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, default, meaning) for every setting, in declaration order."""
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += documented_keys(annotation, f"{prefix}{name}.")
        else:
            rows.append((prefix + name, _default_text(field), field.description or ""))
    return rows


def markdown_table() -> str:
    env = {".".join(keys): var for var, keys in ENV.items()}
    lines = ["| key (TOML) | environment | default | meaning |", "|---|---|---|---|"]
    for key, default, meaning in documented_keys():
        lines.append(f"| `{key}` | {'`' + env[key] + '`' if key in env else ''} | {default} | {meaning} |")
    return "\n".join(lines)


if __name__ == "__main__":  # python -m cds_service.config > the README's configuration table
    sys.stdout.write(markdown_table() + "\n")
