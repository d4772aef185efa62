"""The benchmark's scaled-up records are realistic filler: inactive and irrelevant entries that
must not change what the clinician sees."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import cards_for, rules_of

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import scenarios  # noqa: E402


@pytest.mark.parametrize("total", [50, 300, 1000])
def test_scaled_record_has_the_size_and_the_same_cards(client, total):
    body = scenarios.scaled("pv_radiculopathy_8_weeks_after_nsaid", total)
    assert scenarios.count_resources(body) == total
    assert rules_of(cards_for(client, body)) == rules_of(cards_for(client, "pv_radiculopathy_8_weeks_after_nsaid"))


def test_order_select_scenario_has_three_drafts(client):
    body = scenarios.order_select_three_drafts()
    assert len(body["context"]["draftOrders"]["entry"]) == 3
    rules = rules_of(cards_for(client, body))
    assert "opioid.benzodiazepine" in rules and "muscle-relaxant.cns-depressants" in rules
