"""Verifying the EHR's JWT (CDS Hooks 2.0 "Trusting CDS Clients").

Each trusted EHR is configured as an [[auth.clients]] block: its `iss`, the JWKS URLs it may name
in `jku` (allow-list; anything else is never fetched) and/or a JWKS file exchanged out of band.
A token must be signed with an asymmetric algorithm by a key of its issuer (`kid`), carry an `aud`
equal to the URL that was called, be within exp/iat/nbf (small skew, lifetime ≤ one hour) and a
`jti` never seen before — the replay cache lives in the store, so it holds across workers and
restarts. Every failure is a bare 401; the log names issuer, kid and reason, never the token.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import jwt
import orjson
import requests

from .fhir_client import FhirFetchError, read_capped

log = logging.getLogger("cds_service.auth")

ALLOWED_ALGORITHMS = ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512"]
# A key without "alg" (optional, RFC 7517) verifies any algorithm of its type; an EC key only the
# one its curve fixes.
RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
EC_ALGORITHMS = {"P-256": frozenset({"ES256"}), "P-384": frozenset({"ES384"}), "P-521": frozenset({"ES512"})}
JWKS_TTL_SECONDS = 3600  # keys older than this are refreshed (in the background while they still serve)
UNKNOWN_KID_REFETCH_SECONDS = 60  # an unknown kid triggers at most one refetch per URL this often
JWKS_TIMEOUT_SECONDS = 3.0  # one whole JWKS download (connect, headers and body)
JWKS_MAX_BYTES = 1_000_000
BACKOFF_SECONDS = (5, 15, 60, 300)  # no fetch of a URL for this long after 1, 2, 3, 4+ failures


class AuthError(Exception):
    """Why a token was refused (for the log only; the client sees a bare 401)."""


@dataclass(frozen=True)
class _Key:
    jwk: jwt.PyJWK
    algorithms: frozenset[str]  # what this key may verify


@dataclass
class _Source:
    keys: dict[str, _Key] = field(default_factory=dict)
    good_at: float | None = None  # when the keys were last loaded successfully
    tried_at: float = float("-inf")  # when the last load started
    failures: int = 0
    retry_at: float = 0.0  # backoff: no load before this
    loading: threading.Event | None = None  # set when the load in flight ends


def parse_jwks(data: object) -> dict[str, _Key]:
    """Signature keys by kid (PyJWKSet parses; symmetric, encryption and unusable keys are dropped)."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS")
    raw: dict[str, dict] = {}
    for k in data["keys"]:
        if (isinstance(k, dict) and isinstance(k.get("kid"), str) and k["kid"] not in raw
                and k.get("kty") in ("RSA", "EC") and k.get("use", "sig") == "sig"):
            raw[k["kid"]] = k
    try:
        key_set = jwt.PyJWKSet(list(raw.values()))
    except jwt.PyJWKSetError:
        return {}
    keys: dict[str, _Key] = {}
    for jwk in key_set:
        spec = raw[jwk.key_id]
        allowed = RSA_ALGORITHMS if spec["kty"] == "RSA" else EC_ALGORITHMS.get(spec.get("crv"), frozenset())
        if spec.get("alg"):
            allowed = allowed & {spec["alg"]}
        if allowed:
            keys[jwk.key_id] = _Key(jwk, allowed)
    return keys


class JwksCache:
    """Keys per JWKS URL or file. Loads run in their own thread, outside the lock, one per source at
    a time; a caller waits only when it has no usable key, and only for its own source. Failures back
    off; the last good keys keep serving while a source is down, up to max_stale seconds.

    PyJWKClient does not fit: it keeps no stale keys, does not share a fetch in flight and reads the
    whole body before any size check.
    """

    def __init__(self, max_stale_seconds: float) -> None:
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()
        self._max_stale = float(max_stale_seconds)

    def key(self, source: str, kid: str) -> _Key | None:
        with self._lock:
            entry = self._sources.setdefault(source, _Source())
            found, fresh = self._lookup(entry, kid)
            if found is not None and fresh:
                return found
            now = time.monotonic()
            wanted = not fresh or now - entry.tried_at >= UNKNOWN_KID_REFETCH_SECONDS
            if wanted and entry.loading is None and now >= entry.retry_at:
                entry.loading = threading.Event()
                entry.tried_at = now
                threading.Thread(target=self._load_into, args=(source, entry, entry.loading),
                                 name="jwks-load", daemon=True).start()
            loading = entry.loading
        if found is not None or loading is None:
            return found  # a stale key serves while the refresh runs
        loading.wait(JWKS_TIMEOUT_SECONDS + 0.5)
        with self._lock:
            return self._lookup(entry, kid)[0]

    def _lookup(self, entry: _Source, kid: str) -> tuple[_Key | None, bool]:
        if entry.good_at is None:
            return None, False
        age = time.monotonic() - entry.good_at
        if age > max(self._max_stale, JWKS_TTL_SECONDS):
            return None, False
        return entry.keys.get(kid), age < JWKS_TTL_SECONDS

    def _load_into(self, source: str, entry: _Source, done: threading.Event) -> None:
        try:
            keys = parse_jwks(orjson.loads(self._download(source)))
        except Exception as exc:  # any failure of a load is the same outage to the callers
            with self._lock:
                entry.failures += 1
                wait = BACKOFF_SECONDS[min(entry.failures, len(BACKOFF_SECONDS)) - 1]
                entry.retry_at = time.monotonic() + wait
            log.warning("could not load JWKS %s (%s); next attempt in %ss", source, exc, wait)
        else:
            with self._lock:
                entry.keys, entry.good_at, entry.failures, entry.retry_at = keys, time.monotonic(), 0, 0.0
        finally:
            with self._lock:
                entry.loading = None
            done.set()

    @staticmethod
    def _download(source: str) -> bytes | bytearray:
        if source.startswith("file:"):
            with open(source[5:], "rb") as fh:
                data = fh.read(JWKS_MAX_BYTES + 1)
            if len(data) > JWKS_MAX_BYTES:
                raise AuthError("the JWKS file is too large")
            return data
        deadline = time.monotonic() + JWKS_TIMEOUT_SECONDS
        with requests.Session() as session:
            session.trust_env = False
            with session.get(source, timeout=JWKS_TIMEOUT_SECONDS, allow_redirects=False, stream=True,
                             headers={"Accept": "application/json"}) as resp:
                if resp.status_code != 200:
                    raise AuthError(f"answered HTTP {resp.status_code}")
                try:
                    return read_capped(resp, JWKS_MAX_BYTES, deadline)
                except FhirFetchError as exc:
                    raise AuthError(exc.reason) from None


class Verifier:
    def __init__(self, auth_settings, public_base_url: str | None, store) -> None:
        self.settings = auth_settings
        self.base = (public_base_url or "").rstrip("/")
        self.store = store
        self.clients = {c.iss: c for c in auth_settings.clients}
        self.jwks = JwksCache(auth_settings.jwks_max_stale_seconds)

    def verify(self, token: str, audience: str) -> dict:
        """The verified claims, or AuthError saying why (never including the token)."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise AuthError("not a well-formed JWT") from None
        alg, kid, iss = header.get("alg"), header.get("kid"), unverified.get("iss")
        context = f"iss={iss!r} kid={kid!r}"
        if alg not in ALLOWED_ALGORITHMS:
            raise AuthError(f"{context}: algorithm {alg!r} is not accepted")
        client = self.clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise AuthError(f"{context}: issuer is not trusted")
        if not isinstance(kid, str):
            raise AuthError(f"{context}: no kid in the header")
        key = self._key_for(client, header, kid, context)
        skew = self.settings.clock_skew_seconds
        try:
            claims = jwt.decode(token, key=key, algorithms=[alg], audience=audience, issuer=iss, leeway=skew,
                                options={"require": ["exp", "iat", "iss", "aud", "jti"]})
        except jwt.ExpiredSignatureError:
            raise AuthError(f"{context}: token expired") from None
        except jwt.InvalidAudienceError:
            raise AuthError(f"{context}: aud does not name {audience}") from None
        except jwt.ImmatureSignatureError:
            raise AuthError(f"{context}: token not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidSignatureError:
            raise AuthError(f"{context}: signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"{context}: missing claim {exc.claim}") from None
        except jwt.PyJWTError as exc:
            raise AuthError(f"{context}: {type(exc).__name__}") from None
        for claim in ("exp", "iat"):
            if not isinstance(claims[claim], (int, float)) or isinstance(claims[claim], bool):
                raise AuthError(f"{context}: {claim} is not a number")
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > self.settings.max_lifetime_seconds:
            raise AuthError(f"{context}: lifetime {lifetime}s is longer than allowed")
        if claims["iat"] > time.time() + skew:
            raise AuthError(f"{context}: issued in the future")
        tenant = client.tenant
        if tenant and claims.get("tenant") != tenant:
            raise AuthError(f"{context}: tenant does not match")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError(f"{context}: jti is not a string")
        if not self.store.remember_jti(iss, claims["jti"], int(claims["exp"]) + skew):
            raise AuthError(f"{context}: jti already used (replay)")
        return claims

    def _key_for(self, client: dict, header: dict, kid: str, context: str):
        allowed = client.jku
        if isinstance(allowed, str):
            allowed = [allowed]
        jku = header.get("jku")
        own_file = ["file:" + client.jwks_file] if client.jwks_file else []
        if jku is None:
            sources = own_file + allowed
        elif jku in allowed:
            sources = [jku] + own_file
        else:
            # Never fetched; a key exchanged out of band (the CDS Hooks sandbox's way) still counts.
            sources = own_file
            context += f" jku={jku!r} (not on the allow-list, not fetched)"
        for source in sources:
            key = self.jwks.key(source, kid)
            if key is not None:
                if header.get("alg") not in key.algorithms:
                    raise AuthError(f"{context}: key does not match the algorithm")
                return key.jwk.key
        raise AuthError(f"{context}: kid not found in the issuer's JWKS")
