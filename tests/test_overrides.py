"""Overrides the service remembers (issue 12), through the HTTP API: a card overridden with one of its
coded reasons is quiet for that patient (patient-view) or that draft order (order-select, order-sign)
for `overrides.quiet_days`, named in one line of the care plan, back when worse or when the period
ends; critical cards never go quiet; order-sign does not repeat order-select. The store holds only
keyed pseudonyms: never the patient's id, name or order ids."""

from __future__ import annotations

import datetime as dt
import json
import logging

import pytest

from cds_service import overrides
from cds_service.app import create_app
from cds_service.cli import main
from conftest import LOOPBACK_FHIR, OS, PV, SIGN, card_of, cards_for, load_fixture, mutate, post, rules_of

KEY = {"privacy": {"pseudonym_key": "site-key-one"}}
OTHER_KEY = {"privacy": {"pseudonym_key": "site-key-two"}}
REASON_SYSTEM = "urn:radiculopathy-cds:override-reason"
PATIENT_ID = "pt-4711-zq"
FAMILY, GIVEN = "Quixotewell", "Ambrosine"
FHIR_SERVER = "https://EHR.Example.org/fhir/"  # the scope: scheme and host lower-cased, no trailing slash


def _statement(med_id: str, text: str) -> dict:
    return {"fullUrl": f"https://ehr.example.org/fhir/MedicationStatement/{med_id}", "resource": {
        "resourceType": "MedicationStatement", "id": med_id, "status": "active",
        "medicationCodeableConcept": {"text": text}, "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": "2026-10-01", "dateAsserted": "2026-10-01"}}


def _for_patient(body: dict, patient_id: str) -> dict:
    """Every reference to the fixture's patient points at `patient_id` (the fixture's id was replaced)."""
    old = body["prefetch"]["patient"]["id"]
    text = json.dumps(body)
    return json.loads(text.replace(f'"Patient/{old}"', f'"Patient/{patient_id}"').replace(
        f'"id": "{old}"', f'"id": "{patient_id}"'))


def chart_open(*, egfr: float = 50, as_of: str = "2026-11-30", patient_id: str = PATIENT_ID,
               also_taking: tuple[str, ...] = ()) -> dict:
    """A patient with back pain on ibuprofen (Advil), with a name, an eGFR and other current drugs."""
    def change(b):
        b["fhirServer"] = FHIR_SERVER
        b["context"]["patientId"] = patient_id
        b["prefetch"]["patient"]["name"] = [{"family": FAMILY, "given": [GIVEN]}]
        b["prefetch"]["observations"]["entry"][0]["resource"]["valueQuantity"]["value"] = egfr
        b["prefetch"]["observations"]["entry"][0]["resource"]["effectiveDateTime"] = "2026-11-01"
        meds = b["prefetch"]["medicationStatements"]
        meds["entry"] += [_statement(f"med-{i}", text) for i, text in enumerate(also_taking)]
        meds["total"] = len(meds["entry"])
        b["extension"]["radiculopathy-cds.as-of"] = as_of
    return _for_patient(mutate(load_fixture("pv_acute_back_pain_on_nsaid"), change), patient_id)


def order_select(name: str, *, patient_id: str = PATIENT_ID, draft_id: str | None = None, hook: str = "order-select",
                 per_hours: float | None = None) -> dict:
    """An order-select fixture for our patient; `draft_id` renames the selected draft; hook order-sign
    signs every draft (no selections); `per_hours` changes the opioid's dosing interval."""
    def change(b):
        b["fhirServer"] = FHIR_SERVER
        b["context"]["patientId"] = patient_id
        b["prefetch"]["patient"]["name"] = [{"family": FAMILY, "given": [GIVEN]}]
        drafts = b["context"]["draftOrders"]["entry"]
        if draft_id:
            old = b["context"]["selections"][0]
            for e in drafts:
                if f"{e['resource']['resourceType']}/{e['resource']['id']}" == old:
                    e["resource"]["id"] = draft_id
                    b["context"]["selections"] = [f"{e['resource']['resourceType']}/{draft_id}"]
        if per_hours is not None:
            drafts[0]["resource"]["dosageInstruction"][0]["timing"]["repeat"]["period"] = per_hours
        if hook == "order-sign":
            b["hook"] = "order-sign"
            del b["context"]["selections"]
    return _for_patient(mutate(load_fixture(name), change), patient_id)


def override(client, service_path: str, card: dict, code: str = "benefit-outweighs-risk", **extra):
    reason = {"system": REASON_SYSTEM, "code": code, "display": "free text the service must not keep"}
    body = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "overrideReason": {"reason": reason},
                          "outcomeTimestamp": "2026-11-30T10:00:00Z", **extra}]}
    response = post(client, service_path + "/feedback", body)
    assert response.status_code == 200, response.get_json()


def care_plan(cards: list[dict]) -> dict:
    return next(c for c in cards if c["source"]["topic"]["code"] == "care-plan")


QUIET_LINE = ("quieted after an override on 2026-11-30 (reason: Benefit outweighs risk for this patient) "
              "until 2026-12-30")


# -- patient-view -----------------------------------------------------------------------------------
@pytest.mark.store
def test_an_overridden_warning_is_quiet_named_in_the_care_plan_and_returns_after_quiet_days(make_app):
    client = make_app(KEY).test_client()
    renal = card_of(cards_for(client, chart_open()), "nsaid.renal")  # (1) shown
    assert renal["indicator"] == "warning"
    override(client, PV, renal)  # (2) overridden with one of its reasons

    cards = cards_for(client, chart_open(as_of="2026-12-15"))  # (3) the next chart-open
    assert "nsaid.renal" not in rules_of(cards)
    plan = care_plan(cards)
    assert plan["indicator"] == "info"
    assert f"“{renal['summary']}”: {QUIET_LINE}." in plan["detail"]

    assert "nsaid.renal" not in rules_of(cards_for(client, chart_open(as_of="2026-12-29")))  # the last quiet day
    back = cards_for(client, chart_open(as_of="2026-12-30"))  # (4) past quiet_days
    assert card_of(back, "nsaid.renal")["indicator"] == "warning"
    assert "quieted after an override" not in care_plan(back)["detail"]


def test_quiet_days_per_rule_and_zero_means_never(make_app):
    client = make_app({**KEY, "overrides": {"quiet_days": 30, "rules": {"nsaid.renal": 5}}}).test_client()
    override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
    quiet = care_plan(cards_for(client, chart_open(as_of="2026-12-04")))["detail"]
    assert "until 2026-12-05" in quiet
    assert "nsaid.renal" in rules_of(cards_for(client, chart_open(as_of="2026-12-05")))

    never = make_app({**KEY, "overrides": {"rules": {"nsaid.renal": 0}}}).test_client()
    override(never, PV, card_of(cards_for(never, chart_open()), "nsaid.renal"))
    assert "nsaid.renal" in rules_of(cards_for(never, chart_open(as_of="2026-12-01")))


def test_a_worse_value_brings_the_card_back_early(make_app):
    client = make_app(KEY).test_client()
    first = cards_for(client, chart_open(also_taking=("sertraline 50 mg tablet",)))
    override(client, PV, card_of(first, "nsaid.ssri-snri"))
    override(client, PV, card_of(first, "nsaid.renal"))
    same = cards_for(client, chart_open(egfr=45, also_taking=("sertraline 50 mg tablet",), as_of="2026-12-02"))
    assert {"nsaid.ssri-snri", "nsaid.renal"}.isdisjoint(rules_of(same))  # eGFR 45: the same band as 50
    # (5) a new drug in the pair is worse: that card returns, the renal one stays quiet
    worse = cards_for(client, chart_open(egfr=45, also_taking=("sertraline 50 mg tablet", "venlafaxine 75 mg capsule"),
                                         as_of="2026-12-02"))
    assert card_of(worse, "nsaid.ssri-snri")["indicator"] == "warning"
    assert "nsaid.renal" not in rules_of(worse)


def test_a_critical_card_is_never_quieted(make_app):
    client = make_app(KEY).test_client()
    critical = card_of(cards_for(client, chart_open(egfr=24)), "nsaid.renal")
    assert critical["indicator"] == "critical"
    override(client, PV, critical)
    again = card_of(cards_for(client, chart_open(egfr=24, as_of="2026-12-01")), "nsaid.renal")  # (6)
    assert again["indicator"] == "critical"


def test_a_warning_overridden_then_critical_is_shown(make_app):
    client = make_app(KEY).test_client()
    override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
    assert card_of(cards_for(client, chart_open(egfr=24, as_of="2026-12-01")), "nsaid.renal")["indicator"] == "critical"


def test_a_second_instance_sharing_the_store_honours_the_override(store_config):
    config = {**store_config(), **LOOPBACK_FHIR, "demo": True, **KEY}
    first, second = create_app(config), create_app(config)
    try:
        override(first.test_client(), PV, card_of(cards_for(first.test_client(), chart_open()), "nsaid.renal"))
        cards = cards_for(second.test_client(), chart_open(as_of="2026-12-01"))  # (7)
        assert "nsaid.renal" not in rules_of(cards) and QUIET_LINE in care_plan(cards)["detail"]
    finally:
        first.extensions["cds"].store.close()
        second.extensions["cds"].store.close()


def test_another_patient_is_unaffected_and_a_new_key_forgets(store_config):
    config = {**store_config(), **LOOPBACK_FHIR, "demo": True}
    app = create_app({**config, **KEY})
    rekeyed = create_app({**config, **OTHER_KEY})
    try:
        client = app.test_client()
        override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
        assert "nsaid.renal" not in rules_of(cards_for(client, chart_open(as_of="2026-12-01")))
        assert "nsaid.renal" in rules_of(cards_for(client, chart_open(as_of="2026-12-01", patient_id="pt-other")))  # (8)
        assert "nsaid.renal" in rules_of(cards_for(rekeyed.test_client(), chart_open(as_of="2026-12-01")))  # (9)
    finally:
        app.extensions["cds"].store.close()
        rekeyed.extensions["cds"].store.close()


def test_only_a_coded_reason_of_the_card_quiets_it(make_app):
    client = make_app(KEY).test_client()
    renal = card_of(cards_for(client, chart_open()), "nsaid.renal")
    override(client, PV, renal, code="not-a-reason-we-offer")
    response = post(client, PV + "/feedback", {"feedback": [
        {"card": renal["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:01:00Z"}]})
    assert response.status_code == 200
    assert "nsaid.renal" in rules_of(cards_for(client, chart_open(as_of="2026-12-01")))


def test_without_a_key_nothing_is_remembered_and_the_log_says_so_once(make_app, caplog):
    with caplog.at_level(logging.INFO, logger="cds_service.overrides"):
        client = make_app().test_client()
    said = [r for r in caplog.records if "pseudonym_key" in r.getMessage()]
    assert len(said) == 1 and "not remembered" in said[0].getMessage()
    override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
    assert "nsaid.renal" in rules_of(cards_for(client, chart_open(as_of="2026-12-01")))


def test_a_quiet_line_without_a_care_plan_makes_an_info_card_of_its_own(make_app):
    client = make_app({**KEY, "cards": {"merge_info": False}}).test_client()
    override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
    cards = cards_for(client, chart_open(as_of="2026-12-01"))
    own = [c for c in cards if QUIET_LINE in c["detail"]]
    assert len(own) == 1 and own[0]["indicator"] == "info" and own[0]["source"]["topic"]["code"] == "care-plan"
    assert own[0]["summary"].endswith(": care plan")


# -- order-select and order-sign: the same draft order only -------------------------------------------
@pytest.mark.store
def test_an_order_override_quiets_that_draft_at_select_and_sign_and_a_new_draft_is_a_new_decision(make_app):
    client = make_app(KEY).test_client()
    renal = card_of(cards_for(client, order_select("os_nsaid_with_egfr_45")), "nsaid.renal")
    assert renal["indicator"] == "warning"
    override(client, OS, renal)

    again = cards_for(client, order_select("os_nsaid_with_egfr_45"))
    assert "nsaid.renal" not in rules_of(again)
    assert [c for c in again if "quieted after an override on 2026-03-01" in c["detail"]]
    assert "nsaid.renal" not in rules_of(cards_for(client, order_select("os_nsaid_with_egfr_45", hook="order-sign")))
    new_draft = cards_for(client, order_select("os_nsaid_with_egfr_45", draft_id="draft-nsaid-2"))
    assert card_of(new_draft, "nsaid.renal")["indicator"] == "warning"
    # The override is about this order: the patient's chart open is another decision.
    other_key = make_app(OTHER_KEY).test_client()
    assert "nsaid.renal" in rules_of(cards_for(other_key, order_select("os_nsaid_with_egfr_45")))


def test_an_order_override_ends_when_the_dose_crosses_the_next_mme_band(make_app):
    client = make_app(KEY).test_client()
    mme = card_of(cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg")), "opioid.mme")
    assert "60 MME/day" in mme["summary"]
    override(client, OS, mme)
    assert "opioid.mme" not in rules_of(cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg")))
    higher = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", per_hours=2))  # 90 MME/day
    assert "90 MME/day" in card_of(higher, "opioid.mme")["summary"]


def test_a_critical_order_card_is_never_quieted(make_app):
    client = make_app(KEY).test_client()
    critical = card_of(cards_for(client, order_select("os_nsaid_with_egfr_24")), "nsaid.renal")
    assert critical["indicator"] == "critical"
    override(client, OS, critical)
    assert card_of(cards_for(client, order_select("os_nsaid_with_egfr_24")), "nsaid.renal")["indicator"] == "critical"


# -- order-sign does not repeat order-select -------------------------------------------------------------
@pytest.mark.store
def test_order_sign_does_not_repeat_what_order_select_showed_for_the_same_draft(make_app):
    client = make_app(KEY).test_client()
    shown = rules_of(cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg")))
    assert {"opioid.mme", "opioid.naloxone"} <= set(shown)
    signed = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", hook="order-sign"))
    assert {"opioid.mme", "opioid.naloxone"}.isdisjoint(rules_of(signed))
    # A new draft id is a new order: all its findings are shown at signing.
    renamed = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", draft_id="draft-oxy-2",
                                             hook="order-sign"))
    assert {"opioid.mme", "opioid.naloxone"} <= set(rules_of(renamed))


def test_order_sign_repeats_when_the_dose_changed_the_mme(make_app):
    client = make_app(KEY).test_client()
    cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg"))  # 60 MME/day
    signed = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", hook="order-sign",
                                            per_hours=2.5))  # 48 mg/day = 72 MME/day: same band, new figure
    assert "72 MME/day" in card_of(signed, "opioid.mme")["summary"]


def test_order_sign_repeats_critical_findings(make_app):
    client = make_app(KEY).test_client()
    assert card_of(cards_for(client, order_select("os_opioid_with_benzodiazepine")), "opioid.benzodiazepine")[
        "indicator"] == "critical"
    signed = cards_for(client, order_select("os_opioid_with_benzodiazepine", hook="order-sign"))
    assert card_of(signed, "opioid.benzodiazepine")["indicator"] == "critical"


def test_order_sign_repeats_after_the_window_and_without_a_key(make_app, monkeypatch):
    client = make_app(KEY).test_client()
    cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg"))
    later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=12, minutes=5)
    monkeypatch.setattr(overrides, "utcnow", lambda: later)
    signed = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", hook="order-sign"))
    assert "opioid.mme" in rules_of(signed)

    keyless = make_app().test_client()
    cards_for(keyless, order_select("os_oxycodone_ingredient_code_dose_in_mg"))
    assert "opioid.mme" in rules_of(cards_for(keyless, order_select("os_oxycodone_ingredient_code_dose_in_mg",
                                                                    hook="order-sign")))


# -- the store: pseudonyms only; feedback first; forget; report ---------------------------------------------
@pytest.mark.store
def test_the_store_holds_no_patient_id_name_or_order_id_after_a_full_cycle(app_with_key):
    app, client = app_with_key
    first = cards_for(client, chart_open())
    override(client, PV, card_of(first, "nsaid.renal"))
    cards_for(client, chart_open(as_of="2026-12-01"))
    select = cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg"))
    override(client, OS, card_of(select, "opioid.mme"))
    cards_for(client, order_select("os_oxycodone_ingredient_code_dose_in_mg", hook="order-sign"))
    store = app.extensions["cds"].store
    store.flush()
    assert store.count("card_link") > 0 and store.count("quieted") > 0
    dump = store.dump()
    for secret in (PATIENT_ID, FAMILY, GIVEN, "draft-oxy", "sertraline", "Advil", "free text the service must not keep"):
        assert secret not in dump, secret


@pytest.fixture
def app_with_key(store_config):
    app = create_app({**store_config(), **LOOPBACK_FHIR, "demo": True, **KEY})
    yield app, app.test_client()
    app.extensions["cds"].store.close()


@pytest.mark.store
def test_feedback_that_arrives_before_the_link_is_joined_later(app_with_key):
    app, _ = app_with_key
    store = app.extensions["cds"].store
    store.add_feedback("radiculopathy-patient-view", [{
        "card": "early-card", "outcome": "overridden", "outcomeTimestamp": "2026-11-30T10:00:00Z",
        "overrideReason": {"reason": {"system": REASON_SYSTEM, "code": "already-addressed"}}}])
    assert store.remembered_overrides("p" * 64) == []
    store.link_cards([("early-card", "nsaid.renal", "p" * 64, "radiculopathy-patient-view", "", "warning", 1, "[]",
                       "d" * 16, "2026-11-30")], [])
    (row,) = store.remembered_overrides("p" * 64)
    assert row[0] == "nsaid.renal" and row[-1] == "already-addressed"


def test_forget_removes_one_patients_remembered_overrides(store_config, tmp_path, monkeypatch, capsys):
    config = {**store_config(), **LOOPBACK_FHIR, "demo": True, **KEY}
    app = create_app(config)
    try:
        client = app.test_client()
        override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
        override(client, PV, card_of(cards_for(client, chart_open(patient_id="pt-other")), "nsaid.renal"))
        toml = tmp_path / "cds.toml"
        schema = f'db_schema = "{config["db_schema"]}"\n' if config.get("db_schema") else ""
        toml.write_text(f'db = "{config["db"]}"\n{schema}[privacy]\npseudonym_key = "site-key-one"\n')
        monkeypatch.setenv("CDS_SERVICE_CONFIG", str(toml))
        assert main(["forget", "--patient-id", PATIENT_ID, "--fhir-server", "https://ehr.example.org/fhir"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("forgot ") and PATIENT_ID not in out
        assert "nsaid.renal" in rules_of(cards_for(client, chart_open(as_of="2026-12-01")))
        assert "nsaid.renal" not in rules_of(cards_for(client, chart_open(as_of="2026-12-01", patient_id="pt-other")))
    finally:
        app.extensions["cds"].store.close()


def test_forget_needs_the_key_and_says_whose_scope(tmp_path, monkeypatch, capsys):
    toml = tmp_path / "cds.toml"
    toml.write_text(f'db = "{tmp_path / "store.sqlite3"}"\n')
    monkeypatch.setenv("CDS_SERVICE_CONFIG", str(toml))
    assert main(["forget", "--patient-id", PATIENT_ID, "--issuer", "https://ehr.example.org"]) == 2
    assert "pseudonym_key" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --issuer or --fhir-server: the scope the pseudonym was made in
        main(["forget", "--patient-id", PATIENT_ID])


def test_report_counts_quieted_cards_per_rule(store_config, tmp_path, monkeypatch, capsys):
    config = {**store_config(), **LOOPBACK_FHIR, "demo": True, **KEY}
    app = create_app(config)
    try:
        client = app.test_client()
        override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
        cards_for(client, chart_open(as_of="2026-12-01"))
        cards_for(client, chart_open(as_of="2026-12-02"))
        app.extensions["cds"].store.flush()
    finally:
        app.extensions["cds"].store.close()
    toml = tmp_path / "cds.toml"
    schema = f'db_schema = "{config["db_schema"]}"\n' if config.get("db_schema") else ""
    toml.write_text(f'db = "{config["db"]}"\n{schema}')
    monkeypatch.setenv("CDS_SERVICE_CONFIG", str(toml))
    assert main(["report", "--format", "json"]) == 0
    rows = {r["rule"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["nsaid.renal"]["quieted"] == 2 and rows["nsaid.renal"]["overridden"] == 1
    assert main(["report", "--format", "html"]) == 0
    assert ">Quieted<" in capsys.readouterr().out


def test_a_key_file_works_and_an_unreadable_one_stops_the_start(make_app, tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_text("site-key-one\n")
    from_file = make_app({"privacy": {"pseudonym_key_file": str(key_file)}}).test_client()
    override(from_file, PV, card_of(cards_for(from_file, chart_open()), "nsaid.renal"))
    assert "nsaid.renal" not in rules_of(cards_for(from_file, chart_open(as_of="2026-12-01")))
    from cds_service.config import ConfigError
    with pytest.raises(ConfigError, match="privacy.pseudonym_key_file"):
        make_app({"privacy": {"pseudonym_key_file": str(tmp_path / "missing.key")}})


def test_scope_is_the_issuer_else_the_normalised_fhir_server_else_local():
    assert overrides.scope_of("https://ehr.example.org/iss", FHIR_SERVER) == "https://ehr.example.org/iss"
    assert overrides.scope_of(None, "HTTPS://EHR.Example.org:8443/Fhir/R4/") == "https://ehr.example.org:8443/Fhir/R4"
    assert overrides.scope_of(None, None) == "local"


def test_with_auth_the_scope_is_the_verified_issuer_not_the_fhir_server(make_app, tmp_path):
    import time
    import uuid

    import jwt
    from cryptography.hazmat.primitives.asymmetric import ec
    from jwt.algorithms import ECAlgorithm

    base, issuer, private = "https://cds.example.org", "https://ehr.example.org", ec.generate_private_key(ec.SECP384R1())
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**json.loads(ECAlgorithm.to_jwk(private.public_key())), "kid": "k1",
                                          "alg": "ES384", "use": "sig"}]}))
    client = make_app({**KEY, "public_base_url": base, "auth": {"required": True, "clients": [
        {"iss": issuer, "jwks_file": str(jwks)}]}}).test_client()

    def signed(path: str, body: dict):
        now = int(time.time())
        tok = jwt.encode({"iss": issuer, "aud": base + path, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())},
                         private, algorithm="ES384", headers={"kid": "k1"})
        response = client.post(path, data=json.dumps(body), content_type="application/json",
                               headers={"Authorization": f"Bearer {tok}"})
        assert response.status_code == 200, response.get_json()
        return response.get_json()

    renal = card_of(signed(PV, chart_open())["cards"], "nsaid.renal")
    signed(PV + "/feedback", {"feedback": [{"card": renal["uuid"], "outcome": "overridden", "outcomeTimestamp":
                                            "2026-11-30T10:00:00Z", "overrideReason": {"reason": {
                                                "system": REASON_SYSTEM, "code": "already-addressed"}}}]})
    moved = mutate(chart_open(as_of="2026-12-01"), lambda b: b.update(fhirServer="https://fhir-2.example.org/r4"))
    assert "nsaid.renal" not in rules_of(signed(PV, moved)["cards"])  # same issuer, same patient


def test_without_auth_another_fhir_server_is_another_patient(make_app):
    client = make_app(KEY).test_client()
    override(client, PV, card_of(cards_for(client, chart_open()), "nsaid.renal"))
    same_server = mutate(chart_open(as_of="2026-12-01"), lambda b: b.update(fhirServer="https://ehr.example.ORG/fhir"))
    assert "nsaid.renal" not in rules_of(cards_for(client, same_server))
    other = mutate(chart_open(as_of="2026-12-01"), lambda b: b.update(fhirServer="https://fhir-2.example.org/r4"))
    assert "nsaid.renal" in rules_of(cards_for(client, other))
