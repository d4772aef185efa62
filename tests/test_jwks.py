"""JWKS outages and key shapes (issue 11 items 5, 7, 12): a slow, failing or oversized JWKS endpoint
never stalls other callers, the last good keys carry an outage, keys without "alg" work, and a
sandbox-style token whose kid is in the client's jwks_file verifies even with a foreign jku."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds_service import auth
from test_auth import AUD, BASE, ISS, call, jwk_of, refused, token

OTHER_ISS = "https://other-ehr.example.org"


class JwksEndpoint:
    """A JWKS URL on loopback whose behaviour the test switches: ok, hang, 500, oversized."""

    def __init__(self, jwks: dict):
        self.jwks, self.mode, self.hits = jwks, "ok", 0
        self.release = threading.Event()  # ends a hang early when the test is done
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.hits += 1
                try:
                    outer.answer(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, h):
        if self.mode == "hang":
            self.release.wait(8)
            return
        if self.mode == "500":
            h.send_response(500)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        if self.mode == "oversized":  # declares 5 MB, then drips: only a size check up front is quick
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(5_000_000))
            h.end_headers()
            for _ in range(80):
                if self.release.wait(0.1):
                    return
                h.wfile.write(b" ")
                h.wfile.flush()
            return
        body = json.dumps(self.jwks).encode()
        h.send_response(200)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def ec_private():
    return ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def endpoint(ec_private):
    server = JwksEndpoint({"keys": [jwk_of(ec_private, "remote-1", "ES384")]})
    yield server
    server.close()


@pytest.fixture
def other_file(tmp_path, ec_private):
    path = tmp_path / "other-jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(ec_private, "other-1", "ES384")]}))
    return path


def two_issuers(make_app, endpoint, other_file, **auth_extra):
    """ISS publishes its keys only at the (test-controlled) JWKS URL; OTHER_ISS has a jwks_file."""
    return make_app({"public_base_url": BASE, "auth": {"required": True, **auth_extra, "clients": [
        {"iss": ISS, "jku": [endpoint.url]}, {"iss": OTHER_ISS, "jwks_file": str(other_file)}]}})


def timed_call(app, tok):
    started = time.monotonic()
    response = call(app, tok)
    return response, time.monotonic() - started


# -- item 5: a JWKS outage never stalls other callers --------------------------------------------
def test_a_hanging_jwks_endpoint_does_not_delay_another_issuer(make_app, endpoint, other_file, ec_private):
    app = two_issuers(make_app, endpoint, other_file)
    endpoint.mode = "hang"
    stuck = threading.Thread(target=lambda: call(app, token(ec_private, kid="remote-1")), daemon=True)
    stuck.start()
    for _ in range(100):  # wait until the first issuer's fetch is on the wire
        if endpoint.hits:
            break
        time.sleep(0.02)
    assert endpoint.hits == 1
    response, elapsed = timed_call(app, token(ec_private, kid="other-1", iss=OTHER_ISS))
    assert response.status_code == 200
    # The JWKS fetch waits up to 3 s; the other issuer's call must not wait behind it.
    assert elapsed < 2.0, elapsed
    endpoint.release.set()
    stuck.join(10)


def test_a_failed_fetch_is_not_retried_on_every_call(make_app, endpoint, other_file, ec_private):
    app = two_issuers(make_app, endpoint, other_file)
    endpoint.mode = "500"
    for _ in range(3):
        refused(call(app, token(ec_private, kid="remote-1")))
    assert endpoint.hits == 1  # negative caching: backoff after a failure
    endpoint.mode = "ok"
    refused(call(app, token(ec_private, kid="remote-1")))  # still backing off: no fetch yet
    assert endpoint.hits == 1


def test_one_fetch_per_url_in_flight(make_app, endpoint, other_file, ec_private):
    app = two_issuers(make_app, endpoint, other_file)
    endpoint.mode = "hang"
    callers = [threading.Thread(target=lambda: call(app, token(ec_private, kid="remote-1")), daemon=True)
               for _ in range(4)]
    for t in callers:
        t.start()
    time.sleep(0.5)
    endpoint.release.set()
    for t in callers:
        t.join(10)
    assert endpoint.hits == 1


def test_last_good_keys_are_served_while_the_endpoint_is_down(make_app, endpoint, other_file, ec_private,
                                                             monkeypatch):
    app = two_issuers(make_app, endpoint, other_file)
    assert call(app, token(ec_private, kid="remote-1")).status_code == 200
    monkeypatch.setattr(auth, "JWKS_TTL_SECONDS", 0)  # the cached keys are now due for a refresh
    endpoint.mode = "hang"
    started = time.monotonic()
    for _ in range(3):
        assert call(app, token(ec_private, kid="remote-1")).status_code == 200
    # Refreshing happens beside the calls: three calls take far less than three 3 s fetch timeouts.
    assert time.monotonic() - started < 5
    assert endpoint.hits == 2  # the first load, then one refresh for all three calls


def test_keys_older_than_the_stale_limit_are_not_used(make_app, endpoint, other_file, ec_private, monkeypatch):
    app = two_issuers(make_app, endpoint, other_file, jwks_max_stale_seconds=0)
    assert call(app, token(ec_private, kid="remote-1")).status_code == 200
    monkeypatch.setattr(auth, "JWKS_TTL_SECONDS", 0)
    endpoint.mode = "500"
    time.sleep(0.05)
    refused(call(app, token(ec_private, kid="remote-1")))


def test_an_oversized_jwks_is_refused_from_its_declared_length(make_app, endpoint, other_file, ec_private):
    app = two_issuers(make_app, endpoint, other_file)
    endpoint.mode = "oversized"
    response, elapsed = timed_call(app, token(ec_private, kid="remote-1"))
    refused(response)
    assert elapsed < 4, elapsed  # the body (dripped over 8 s) is never read


# -- item 7: keys without "alg" -----------------------------------------------------------------
@pytest.mark.parametrize("alg", ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"])
def test_rsa_key_without_alg_accepts_every_rsa_algorithm(make_app, tmp_path, alg):
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = jwk_of(private, "rsa-noalg", "RS256")
    del jwk["alg"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    app = make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": ISS, "jwks_file": str(path)}]}})
    assert call(app, token(private, kid="rsa-noalg", alg=alg)).status_code == 200


def test_key_without_alg_still_binds_the_key_type(make_app, tmp_path):
    """An EC token header naming an RSA key (or the other way round) is refused."""
    rsa_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_private = ec.generate_private_key(ec.SECP256R1())
    keys = [jwk_of(rsa_private, "rsa-noalg", "RS256"), jwk_of(ec_private, "ec-noalg", "ES256")]
    for k in keys:
        del k["alg"]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    app = make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": ISS, "jwks_file": str(path)}]}})
    assert call(app, token(ec_private, kid="ec-noalg", alg="ES256")).status_code == 200
    refused(call(app, token(ec_private, kid="rsa-noalg", alg="ES256")))
    refused(call(app, token(rsa_private, kid="ec-noalg", alg="RS256")))
    p384 = ec.generate_private_key(ec.SECP384R1())
    refused(call(app, token(p384, kid="ec-noalg", alg="ES384")))  # a P-256 key verifies ES256 only


# -- item 12: the CDS Hooks sandbox's token shape -------------------------------------------------
SANDBOX_ISS = "https://sandbox.cds-hooks.org"
SANDBOX_JKU = "https://sandbox.cds-hooks.org/.well-known/jwks.json"
SANDBOX_KID = "44823f3d-0b01-4a6c-a80e-b9d3e8a7226f"


def sandbox_token(private, **claims) -> str:
    now = int(time.time())
    payload = {"iss": SANDBOX_ISS, "aud": AUD, "exp": now + 300, "iat": now, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode(payload, private, algorithm="ES384",
                      headers={"typ": "JWT", "kid": SANDBOX_KID, "jku": SANDBOX_JKU})


def test_sandbox_token_with_out_of_band_key_and_foreign_jku_verifies(make_app, tmp_path, endpoint):
    private = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "sandbox-jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(private, SANDBOX_KID, "ES384")]}))
    app = make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": SANDBOX_ISS, "jwks_file": str(path), "jku": [endpoint.url]}]}})
    assert call(app, sandbox_token(private)).status_code == 200
    refused(call(app, token(private, kid="not-there", iss=SANDBOX_ISS, headers={"jku": SANDBOX_JKU})))
    assert endpoint.hits == 0  # the allow-listed URL is not consulted for a foreign jku either


def test_foreign_jku_is_never_fetched_even_when_the_kid_is_unknown(make_app, tmp_path, endpoint):
    private = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "sandbox-jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(private, SANDBOX_KID, "ES384")]}))
    app = make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": SANDBOX_ISS, "jwks_file": str(path)}]}})
    refused(call(app, token(private, kid="remote-1", iss=SANDBOX_ISS, headers={"jku": endpoint.url})))
    assert endpoint.hits == 0


# -- Low: malformed numeric claims --------------------------------------------------------------
@pytest.mark.parametrize("claim", ["exp", "iat"])
def test_numeric_claim_as_a_string_is_401_not_500(make_app, tmp_path, claim):
    private = ec.generate_private_key(ec.SECP384R1())
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(private, "k1", "ES384")]}))
    app = make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": ISS, "jwks_file": str(path)}]}})
    now = int(time.time())
    value = str(now + 300) if claim == "exp" else str(now)
    refused(call(app, token(private, kid="k1", **{claim: value})))
