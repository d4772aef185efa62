"""order-sign: every draft order being signed gets the order rules, one card per order; pairs among
the drafts fire, on the card of the rule's own drug; evidence notes are never shown at signing."""

from __future__ import annotations

from conftest import SIGN, card_of, cards_for, codes_of, created, load_fixture, mutate, post, rules_of

ACETAMINOPHEN = "198440"


def by_topic(cards):
    return {c["source"]["topic"]["code"]: c for c in cards}


def deleted(card):
    return [a["resourceId"] for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == "delete"]


def test_discovery_lists_the_order_sign_service_with_order_select_prefetch(client):
    services = {s["id"]: s for s in client.get("/cds-services").get_json()["services"]}
    sign, select = services["radiculopathy-order-sign"], services["radiculopathy-order-select"]
    assert sign["hook"] == "order-sign" and sign["prefetch"] == select["prefetch"]


def test_triple_threat_signed_together_is_critical_on_the_relaxant_card(client):
    cards = cards_for(client, "sign_opioid_benzodiazepine_and_muscle_relaxant")
    relaxant = card_of(cards, "muscle-relaxant.cns-depressants")
    assert relaxant["indicator"] == "critical" and relaxant["summary"].startswith("3 CNS depressants")
    assert deleted(relaxant) == ["MedicationRequest/draft-cyclobenzaprine"]
    opioid = card_of(cards, "opioid.benzodiazepine")  # the opioid rule's finding is on the opioid's card
    assert opioid is not relaxant and "MedicationRequest/draft-oxycodone" in deleted(opioid)
    assert "1725059" in codes_of(created(opioid))  # naloxone
    assert cards[0] is relaxant  # critical first


def test_each_order_has_one_card_whatever_its_fhir_version(client):
    cards = cards_for(client, "sign_dstu2_stu3_and_r4_drafts")
    nsaid = card_of(cards, "nsaid.renal")
    assert nsaid["indicator"] == "critical" and rules_of([nsaid]) == ["nsaid.renal", "nsaid.older-adult"]
    # DSTU2: delete the MedicationOrder and create an R4 MedicationRequest, never `update`.
    replace = nsaid["suggestions"][0]["actions"]
    assert [a["type"] for a in replace] == ["delete", "create"]
    assert replace[0]["resourceId"] == "MedicationOrder/draft-ibuprofen-dstu2"
    assert replace[1]["resource"]["resourceType"] == "MedicationRequest" and codes_of([replace[1]["resource"]]) == {
        ACETAMINOPHEN}
    assert not [a for s in nsaid["suggestions"] for a in s["actions"] if a["type"] == "update"]
    relaxant = card_of(cards, "muscle-relaxant.older-adult")  # STU3 MedicationRequest (doseQuantity)
    assert deleted(relaxant) == ["MedicationRequest/draft-cyclobenzaprine-stu3"]
    imaging = card_of(cards, "imaging.avoid-early")  # R4 ServiceRequest
    assert deleted(imaging) == ["ServiceRequest/draft-mri-r4"]
    assert len({id(c) for c in (nsaid, relaxant, imaging)}) == 3


def test_evidence_notes_are_never_shown_at_signing(client, make_app):
    rules = rules_of(cards_for(client, "sign_dstu2_stu3_and_r4_drafts"))
    assert "muscle-relaxant.sedation" not in rules and "nsaid.radiculopathy-evidence" not in rules
    signing_alone = mutate(load_fixture("sign_dstu2_stu3_and_r4_drafts"), lambda b: b["context"]["draftOrders"].update(
        entry=[e for e in b["context"]["draftOrders"]["entry"] if "stu3" in e["resource"]["id"]]))
    signing_alone["prefetch"]["patient"]["birthDate"] = "1990-01-01"
    app = make_app({"cards": {"evidence_alone": True}})
    assert cards_for(app.test_client(), signing_alone) == []  # even when evidence notes may stand alone


def test_order_select_body_is_refused_by_the_order_sign_service(client):
    body = load_fixture("os_nsaid_with_egfr_45")
    response = post(client, SIGN, body)
    assert response.status_code == 400 and response.get_json()["resourceType"] == "OperationOutcome"


def test_order_sign_without_draft_orders_is_a_clear_400(client):
    body = load_fixture("sign_dstu2_stu3_and_r4_drafts")
    del body["context"]["draftOrders"]
    response = post(client, SIGN, body)
    assert response.status_code == 400 and "draftOrders" in response.get_json()["issue"][0]["diagnostics"]
