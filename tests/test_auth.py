"""EHR authentication (CDS Hooks 2.0 "Trusting CDS Clients"): every token case of the trust issue."""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import jwt
import pytest
import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from conftest import CONFORMANCE, PV, POLL_INTERVAL, LiveServer, load_fixture, store_env

BASE = "https://cds.example.org"
ISS = "https://ehr.example.org"
AUD = BASE + PV


def ec_key():
    return ec.generate_private_key(ec.SECP384R1())


def jwk_of(private, kid: str, alg: str) -> dict:
    algo = ECAlgorithm if alg.startswith("ES") else RSAAlgorithm
    jwk = json.loads(algo.to_jwk(private.public_key()))
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


class JwksServer:
    def __init__(self, jwks: dict):
        self.jwks, self.hits = jwks, []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.hits.append(self.path)
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/jwks.json"
        threading.Thread(target=self.httpd.serve_forever, args=(POLL_INTERVAL,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def keys():
    return {"ec": ec_key(), "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048), "other": ec_key()}


@pytest.fixture
def jwks_file(tmp_path, keys):
    path = tmp_path / "ehr-jwks.json"
    path.write_text(json.dumps({"keys": [jwk_of(keys["ec"], "ec-1", "ES384"), jwk_of(keys["rsa"], "rsa-1", "RS384")]}))
    return path


@pytest.fixture
def jwks_server(keys):
    server = JwksServer({"keys": [jwk_of(keys["ec"], "remote-1", "ES384")]})
    yield server
    server.close()


@pytest.fixture
def secure(make_app, jwks_file, jwks_server):
    return make_app({"public_base_url": BASE, "auth": {"required": True, "clients": [
        {"iss": ISS, "jku": [jwks_server.url], "jwks_file": str(jwks_file)}]}})


def token(private, *, kid="ec-1", alg="ES384", headers=None, **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4()), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, private, algorithm=alg,
                      headers={"kid": kid, **(headers or {})})


def call(app, tok: str | None, path=PV, body=None):
    headers = {"Authorization": f"Bearer {tok}"} if tok else {}
    return app.test_client().post(path, data=json.dumps(body or load_fixture("pv_lumbar_radiculopathy_6_weeks")),
                                  content_type="application/json", headers=headers)


def refused(response):
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json()["issue"][0]["diagnostics"] == "Unauthorized"  # no detail
    return response


def test_valid_es384_token(secure, keys):
    assert call(secure, token(keys["ec"])).status_code == 200


def test_epic_style_token_rs384_with_sub_nbf_and_15_minutes(secure, keys):
    now = int(time.time())
    tok = token(keys["rsa"], kid="rsa-1", alg="RS384", sub="epic-client-id", nbf=now - 5, exp=now + 900,
                aud=[AUD, "https://other.example.org"], epic_claim="x")
    assert call(secure, tok).status_code == 200


def test_expired_token(secure, keys):
    now = int(time.time())
    refused(call(secure, token(keys["ec"], iat=now - 900, exp=now - 600)))


def test_spec_shaped_expired_token_is_refused(make_app):
    app = make_app({"public_base_url": "https://cds.example.org", "auth": {"required": True, "clients": [
        {"iss": "https://ehr.example.test/", "jwks_file": str(CONFORMANCE / "jwt" / "jwks-public.json")}]}})
    example = (CONFORMANCE / "jwt" / "expired-token.txt").read_text().strip().removeprefix("Bearer ").strip()
    refused(call(app, example, path="/cds-services/radiculopathy-patient-view"))


def test_wrong_audience(secure, keys):
    refused(call(secure, token(keys["ec"], aud="https://cds.example.org/cds-services/radiculopathy-order-select")))


def test_unknown_issuer(secure, keys):
    refused(call(secure, token(keys["ec"], iss="https://evil.example.com")))


def test_unknown_kid_refetches_once_rate_limited(secure, keys, jwks_server):
    refused(call(secure, token(keys["ec"], kid="nope")))
    refused(call(secure, token(keys["ec"], kid="nope-again")))
    assert len(jwks_server.hits) == 1  # one refetch, then rate-limited


def test_wrong_key(secure, keys):
    refused(call(secure, token(keys["other"], kid="ec-1")))


def test_alg_none_is_refused(secure):
    now = int(time.time())
    unsigned = jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, "jti": "n1"}, None, algorithm="none",
                          headers={"kid": "ec-1"})
    refused(call(secure, unsigned))


def test_hs256_is_refused_even_with_the_public_key_as_secret(secure, jwks_file):
    # The classic algorithm-confusion attack: HMAC keyed with the published public key.
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    now = int(time.time())
    signing_input = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "ec-1"}).encode()) + "." + b64(json.dumps(
        {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 60, "jti": "h1"}).encode())
    signature = hmac.new(jwks_file.read_bytes(), signing_input.encode(), hashlib.sha256).digest()
    refused(call(secure, signing_input + "." + b64(signature)))


def test_lifetime_over_an_hour_is_refused(secure, keys):
    now = int(time.time())
    refused(call(secure, token(keys["ec"], exp=now + 7200)))


def test_missing_token_and_feedback_needs_one_too(secure, keys):
    refused(call(secure, None))
    feedback = {"feedback": [{"card": "c1", "outcome": "overridden", "outcomeTimestamp": "2026-03-01T10:00:00Z"}]}
    refused(call(secure, None, path=PV + "/feedback", body=feedback))
    ok = call(secure, token(keys["ec"], aud=BASE + PV + "/feedback"), path=PV + "/feedback", body=feedback)
    assert ok.status_code == 200


def test_discovery_open_by_default_and_closable(secure, make_app, jwks_file):
    assert secure.test_client().get("/cds-services").status_code == 200
    closed = make_app({"public_base_url": BASE, "auth": {"required": True, "discovery": True,
                                                          "clients": [{"iss": ISS, "jwks_file": str(jwks_file)}]}})
    assert closed.test_client().get("/cds-services").status_code == 401


def test_replayed_jti_is_refused(secure, keys):
    tok = token(keys["ec"])
    assert call(secure, tok).status_code == 200
    refused(call(secure, tok))


def test_jku_off_the_allow_list_is_never_fetched(secure, keys, jwks_server):
    other = JwksServer({"keys": [jwk_of(keys["other"], "evil-1", "ES384")]})
    try:
        refused(call(secure, token(keys["other"], kid="evil-1", headers={"jku": other.url})))
        assert other.hits == []
    finally:
        other.close()


def test_allow_listed_jku_is_fetched_and_cached(secure, keys, jwks_server):
    for _ in range(3):
        tok = token(keys["ec"], kid="remote-1", headers={"jku": jwks_server.url})
        assert call(secure, tok).status_code == 200
    assert len(jwks_server.hits) == 1


def test_refusal_is_logged_with_reason_but_never_the_token(secure, keys, caplog):
    tok = token(keys["ec"], aud="https://wrong.example.org")
    with caplog.at_level(logging.INFO):
        refused(call(secure, tok))
    text = caplog.text
    assert "aud does not name" in text and ISS in text and "ec-1" in text
    assert tok not in text and tok.split(".")[2] not in text


def test_unverified_when_auth_not_required(client, keys):
    response = client.post(PV, data=json.dumps(load_fixture("pv_lumbar_radiculopathy_6_weeks")),
                           content_type="application/json", headers={"Authorization": f"Bearer {token(keys['ec'])}"})
    assert response.status_code == 200


# -- replay across processes: two `cds-service serve` instances on one store ---------------------
def test_replay_refused_across_workers_instances_and_restarts(tmp_path, keys, jwks_file, store_config):
    config = tmp_path / "cds.toml"
    config.write_text(f'public_base_url = "{BASE}"\n[auth]\nrequired = true\n[[auth.clients]]\n'
                      f'iss = "{ISS}"\njwks_file = "{jwks_file}"\n')
    env = {"CDS_SERVICE_CONFIG": str(config), **store_env(store_config())}  # one store, two instances
    body = load_fixture("pv_lumbar_radiculopathy_6_weeks")
    tok = token(keys["ec"])
    auth = {"Authorization": f"Bearer {tok}"}
    first, second = LiveServer(env), LiveServer(env)
    try:
        assert requests.post(first.base + PV, json=body, headers=auth).status_code == 200
        for base in (first.base, first.base, second.base, second.base):  # other worker, other instance
            assert requests.post(base + PV, json=body, headers=auth).status_code == 401
    finally:
        for server in (first, second):
            assert tok not in server.stop()[1]
    third = LiveServer(env)  # a restart keeps the replay cache
    try:
        assert requests.post(third.base + PV, json=body, headers=auth).status_code == 401
    finally:
        third.stop()
