"""Verifying the EHR's JWT (CDS Hooks 2.0 "Trusting CDS Clients").

Each trusted EHR is configured as an [[auth.clients]] block: its `iss`, the JWKS URLs it may name
in `jku` (allow-list; anything else is never fetched) and/or a JWKS file exchanged out of band.
A token must be signed with an asymmetric algorithm by a key of its issuer (`kid`), carry an `aud`
equal to the URL that was called, be within exp/iat/nbf (small skew, lifetime ≤ one hour) and a
`jti` never seen before — the replay cache lives in the store, so it holds across workers and
restarts. Every failure is a bare 401; the log names issuer, kid and reason, never the token.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests

log = logging.getLogger("cds_service.auth")

ALLOWED_ALGORITHMS = ["ES384", "RS384", "ES256", "RS256", "ES512", "RS512", "PS256", "PS384", "PS512"]
JWKS_TTL_SECONDS = 3600
UNKNOWN_KID_REFETCH_SECONDS = 60


class AuthError(Exception):
    """Why a token was refused (for the log only; the client sees a bare 401)."""


@dataclass
class _KeySet:
    keys: dict[str, jwt.PyJWK] = field(default_factory=dict)
    fetched_at: float = 0.0
    last_refetch: float = 0.0


class JwksCache:
    """Keys per JWKS URL (or file), cached; one rate-limited refetch when a kid is unknown."""

    def __init__(self, timeout: float = 3.0) -> None:
        self._sets: dict[str, _KeySet] = {}
        self._lock = threading.Lock()
        self._timeout = timeout
        self._session = requests.Session()
        self._session.trust_env = False

    @staticmethod
    def _parse(data: object) -> dict[str, jwt.PyJWK]:
        keys: dict[str, jwt.PyJWK] = {}
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
            return keys
        for jwk in data["keys"]:
            if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
                continue
            if jwk.get("kty") == "oct":
                continue  # symmetric keys are never accepted
            try:
                keys[jwk["kid"]] = jwt.PyJWK(jwk)
            except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError):
                log.warning("ignoring an unusable key %s in a JWKS", jwk.get("kid"))
        return keys

    def _load(self, source: str) -> dict[str, jwt.PyJWK]:
        if source.startswith("file:"):
            with open(source[5:], encoding="utf-8") as fh:
                return self._parse(json.load(fh))
        resp = self._session.get(source, timeout=self._timeout, allow_redirects=False,
                                 headers={"Accept": "application/json"})
        if resp.status_code != 200:
            raise AuthError(f"JWKS {source} answered HTTP {resp.status_code}")
        if len(resp.content) > 1_000_000:
            raise AuthError(f"JWKS {source} is too large")
        return self._parse(resp.json())

    def key(self, source: str, kid: str) -> jwt.PyJWK | None:
        now = time.monotonic()
        with self._lock:
            entry = self._sets.setdefault(source, _KeySet())
            stale = now - entry.fetched_at > JWKS_TTL_SECONDS
            unknown = kid not in entry.keys
            may_refetch = now - entry.last_refetch > UNKNOWN_KID_REFETCH_SECONDS
            if stale or (unknown and (may_refetch or not entry.fetched_at)):
                try:
                    entry.keys = self._load(source)
                    entry.fetched_at = now
                except (OSError, ValueError, requests.RequestException, AuthError) as exc:
                    log.warning("could not load JWKS %s: %s", source, type(exc).__name__)
                if unknown:
                    entry.last_refetch = now
            return entry.keys.get(kid)


class Verifier:
    def __init__(self, auth_settings: dict, public_base_url: str | None, store) -> None:
        self.settings = auth_settings
        self.base = (public_base_url or "").rstrip("/")
        self.store = store
        self.clients = {c["iss"]: c for c in auth_settings.get("clients", []) if isinstance(c, dict) and c.get("iss")}
        self.jwks = JwksCache()

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
        skew = int(self.settings.get("clock_skew_seconds", 60))
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
        lifetime = claims["exp"] - claims["iat"]
        if lifetime > int(self.settings.get("max_lifetime_seconds", 3600)):
            raise AuthError(f"{context}: lifetime {lifetime}s is longer than allowed")
        if claims["iat"] > time.time() + skew:
            raise AuthError(f"{context}: issued in the future")
        tenant = client.get("tenant")
        if tenant and claims.get("tenant") != tenant:
            raise AuthError(f"{context}: tenant does not match")
        if not isinstance(claims["jti"], str) or not claims["jti"]:
            raise AuthError(f"{context}: jti is not a string")
        if not self.store.remember_jti(iss, claims["jti"], int(claims["exp"]) + skew):
            raise AuthError(f"{context}: jti already used (replay)")
        return claims

    def _key_for(self, client: dict, header: dict, kid: str, context: str):
        sources = []
        jku = header.get("jku")
        allowed = client.get("jku") or []
        if isinstance(allowed, str):
            allowed = [allowed]
        if jku is not None:
            if jku not in allowed:
                raise AuthError(f"{context}: jku {jku!r} is not on the issuer's allow-list (not fetched)")
            sources.append(jku)
        if client.get("jwks_file"):
            sources.append("file:" + client["jwks_file"])
        if jku is None:
            sources += allowed
        for source in sources:
            key = self.jwks.key(source, kid)
            if key is not None:
                if key.key_type == "oct" or (key.algorithm_name and key.algorithm_name != header.get("alg")):
                    raise AuthError(f"{context}: key does not match the algorithm")
                return key.key
        raise AuthError(f"{context}: kid not found in the issuer's JWKS")
