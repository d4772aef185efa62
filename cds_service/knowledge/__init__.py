"""Guideline sources, orderables and override reasons: reviewable data files, loaded once."""

from __future__ import annotations

import csv
import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

RULE_SYSTEM = "urn:radiculopathy-cds:rule"
# This repository's rule catalogue (docs/rules.md, generated from rules/) and its sources (sources.csv).
CATALOGUE_VERSION = "radiculopathy-cds rule catalogue 2026-12 (docs/rules.md, knowledge/sources.csv)"


@dataclass(frozen=True)
class Source:
    id: str
    label: str
    reference: str
    url: str
    checked: str


def _text(name: str) -> str:
    return resources.files(__package__).joinpath(name).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def sources() -> dict[str, Source]:
    rows = csv.DictReader(_text("sources.csv").splitlines())
    return {r["id"]: Source(r["id"], r["label"], r["reference"], r["url"], r["checked"]) for r in rows}


@lru_cache(maxsize=1)
def orderables() -> dict:
    return tomllib.loads(_text("orderables.toml"))


@lru_cache(maxsize=1)
def override_reasons() -> dict:
    return tomllib.loads(_text("override_reasons.toml"))


def override_codings(rule_id: str) -> list[dict]:
    data = override_reasons()
    system = data["system"]
    specific = data.get("rules", {}).get(rule_id, {})
    merged = {**specific, **data["default"]}
    return [{"system": system, "code": code, "display": display} for code, display in merged.items()]
