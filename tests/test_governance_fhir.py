"""`cds-service rules --format fhir`: the rules as FHIR R4 knowledge artifacts (PlanDefinition,
ValueSet, Library) in a Bundle, valid under the fhir.resources R4B models and their code bindings,
and generated from what the service runs (a changed rule or parameter shows in both governance
outputs)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import uuid

import pytest
from pydantic import BaseModel

from cds_service import knowledge, rules
from cds_service.config import RULE_PARAMETERS
from cds_service.rules import CATALOGUE
from conftest import cards_for, cli_path, fhir_model, load_fixture, mutate

BASE = "https://example.org/radiculopathy-cds"
PRIORITY = {"info": "routine", "warning": "urgent", "critical": "stat"}
# Required bindings on Coding.code and on the code types fhir.resources does not enumerate.
PLAN_DEFINITION_TYPES = {"order-set", "clinical-protocol", "eca-rule", "workflow-definition"}
LIBRARY_TYPES = {"logic-library", "model-definition", "asset-collection", "module-definition"}
PARAMETER_TYPES = {"integer", "decimal"}


def run(*args, env=None):
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def bundle() -> dict:
    result = run("rules", "--format", "fhir")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def of_type(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def codes_checked(model: BaseModel, path: str, seen: list[str]) -> None:
    """Every code-typed element with a required value set (the model's enum_values) holds one of its codes."""
    for name, field in type(model).model_fields.items():
        value = getattr(model, name)
        if value is None:
            continue
        allowed = (field.json_schema_extra or {}).get("enum_values") if isinstance(field.json_schema_extra, dict) else None
        for item in value if isinstance(value, list) else [value]:
            if allowed and isinstance(item, str):
                assert item in allowed, f"{path}.{name} = {item!r} is not in {allowed}"
                seen.append(f"{path}.{name}")
            elif isinstance(item, BaseModel):
                codes_checked(item, f"{path}.{name}", seen)


def test_bundle_is_valid_fhir_r4_and_every_code_is_in_its_value_set(bundle):
    Bundle = fhir_model("Bundle")
    Bundle.model_validate(bundle)
    assert bundle["type"] == "collection"
    seen: list[str] = []
    codes_checked(Bundle.model_validate({**bundle, "entry": []}), "Bundle", seen)
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["fullUrl"] == resource["url"]
        codes_checked(fhir_model(resource["resourceType"]).model_validate(resource), resource["resourceType"], seen)
    # The walk did reach the bindings that matter here (so this test can fail).
    for path in ("Bundle.type", "PlanDefinition.status", "PlanDefinition.action.priority",
                 "PlanDefinition.action.trigger.type", "PlanDefinition.relatedArtifact.type",
                 "ValueSet.compose.include.filter.op", "Library.parameter.use", "Library.relatedArtifact.type"):
        assert path in seen, path
    # Codes the models do not enumerate: CodeableConcept codings and FHIRAllTypes.
    for pd in of_type(bundle, "PlanDefinition"):
        assert {c["code"] for c in pd["type"]["coding"]} <= PLAN_DEFINITION_TYPES
        assert pd["type"]["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/plan-definition-type"
    (library,) = of_type(bundle, "Library")
    assert {c["code"] for c in library["type"]["coding"]} <= LIBRARY_TYPES
    assert {p["type"] for p in library["parameter"]} <= PARAMETER_TYPES
    for requirement in library["dataRequirement"]:
        fhir_model(requirement["type"])  # a resource type FHIR knows


def test_one_plan_definition_per_rule_says_what_the_rule_does(bundle):
    from cds_service.app import create_app
    app = create_app({"db": ":memory:"})
    discovery = app.test_client().get("/cds-services").get_json()
    app.extensions["cds"].store.close()
    version = discovery["extension"]["radiculopathy-cds.knowledge"]["rules"]
    plans = of_type(bundle, "PlanDefinition")
    assert [p["identifier"][0]["value"] for p in plans] == [r.id for r in CATALOGUE]
    sources = knowledge.sources()
    for rule, pd in zip(CATALOGUE, plans):
        assert pd["url"] == f"{BASE}/PlanDefinition/{pd['id']}" and pd["version"] == version
        assert pd["type"]["coding"][0]["code"] == "eca-rule" and pd["title"] == rule.title
        (action,) = pd["action"]
        assert action["title"] == rule.title
        assert [t["name"] for t in action["trigger"]] == sorted(rule.hooks)
        assert {t["type"] for t in action["trigger"]} == {"named-event"}
        assert rule.trigger in action["description"]
        highest = max(rule.levels, key=["info", "warning", "critical"].index)
        assert action["priority"] == PRIORITY[highest]
        for level in rule.levels:  # every tier, not only the highest
            assert f"{level} ({PRIORITY[level]})" in action["description"]
        assert [a["display"] for a in pd["relatedArtifact"]] == [sources[s].label for s in rule.sources]
        assert [a.get("url") for a in pd["relatedArtifact"]] == [sources[s].url or None for s in rule.sources]
        if rule.suggests != "none":
            assert rule.suggests in action["action"][0]["description"]
        assert pd["library"] == [f"{BASE}/Library/radiculopathy-cds"]
    infection = next(p for p in plans if p["identifier"][0]["value"] == "red-flag.infection")
    assert infection["action"][0]["code"][0]["coding"][0] == {
        "system": "urn:radiculopathy-cds:rule", "code": "red-flag.infection",
        "display": next(r.title for r in CATALOGUE if r.id == "red-flag.infection")}


def test_value_sets_list_the_codes_the_rules_use(bundle):
    from cds_service import terminology
    sets = {vs["identifier"][0]["value"]: vs for vs in of_type(bundle, "ValueSet")}
    # Names the rules and facts ask about, one per kind (conditions, procedures, drug classes).
    assert {"gi_bleed_ulcer", "sickle_cell_disease", "spine_imaging_lumbar", "nsaid", "opioid"} <= set(sets)
    sickle = sets["sickle_cell_disease"]
    assert sickle["url"] == f"{BASE}/ValueSet/sickle-cell-disease"
    includes = sickle["compose"]["include"]
    assert {"code": "D57.1", "display": "Sickle-cell disease without crisis"} in includes[0]["concept"]
    assert includes[0]["system"] == terminology.ICD10CM and includes[0]["version"] == terminology.VERSION["icd10cm"]
    filters = [f for inc in includes for f in inc.get("filter", [])]
    assert {"property": "concept", "op": "is-a", "value": "D57.0"} in filters  # D57.0* in the code list
    assert all("concept" not in inc for inc in includes if "filter" in inc)
    nsaid_codes = {c["code"] for inc in sets["nsaid"]["compose"]["include"] for c in inc["concept"]}
    term = terminology.load()
    assert nsaid_codes == {rxcui for rxcui, d in term.drugs.items() if any(i.drug_class == "nsaid" for i in d.ingredients)}
    lumbar = sets["spine_imaging_lumbar"]["compose"]["include"]
    assert all(c["display"] for inc in lumbar for c in inc["concept"])
    (library,) = of_type(bundle, "Library")
    assert {a["resource"] for a in library["relatedArtifact"]} == {vs["url"] for vs in sets.values()}


def test_library_names_the_rule_parameters_with_types_and_defaults(bundle):
    (library,) = of_type(bundle, "Library")
    assert library["type"]["coding"][0]["code"] == "module-definition"
    assert [(p["name"], p["type"]) for p in library["parameter"]] == [
        (name, "integer" if isinstance(v, int) else "decimal") for name, v in RULE_PARAMETERS.items()]
    assert "| `MME_WARN` | integer | 50 |" in library["description"]
    assert "| `FEVER_C` | decimal | 38.0 |" in library["description"]
    assert {d["type"] for d in library["dataRequirement"]} >= {"Patient", "Condition", "MedicationRequest"}


def test_canonical_base_comes_from_the_configuration(tmp_path):
    config = tmp_path / "site.toml"
    config.write_text('[export]\ncanonical_base = "https://cds.hospital.example/fhir/"\n')
    result = run("rules", "--format", "fhir", env={"CDS_SERVICE_CONFIG": str(config)})
    assert result.returncode == 0, result.stderr
    urls = [e["resource"]["url"] for e in json.loads(result.stdout)["entry"]]
    assert all(u.startswith("https://cds.hospital.example/fhir/") and "//fhir//" not in u for u in urls)
    assert "https://cds.hospital.example/fhir/PlanDefinition/red-flag.infection" in urls


def test_both_outputs_follow_the_rule_definitions(make_app, monkeypatch):
    """A renamed rule and a changed parameter default show in the FHIR export and the HTML report."""
    from cds_service.governance.fhir_export import export_bundle
    from cds_service.governance.report_html import report_html
    index = next(i for i, r in enumerate(CATALOGUE) if r.id == "red-flag.infection")
    renamed = f"Spinal infection suspected ({uuid.uuid4().hex[:6]})"
    catalogue = list(CATALOGUE)
    catalogue[index] = dataclasses.replace(CATALOGUE[index], title=renamed)
    monkeypatch.setattr(rules, "CATALOGUE", catalogue)
    monkeypatch.setitem(RULE_PARAMETERS, "MME_WARN", 40)

    exported = export_bundle()
    pd = next(p for p in of_type(exported, "PlanDefinition") if p["identifier"][0]["value"] == "red-flag.infection")
    assert pd["title"] == renamed and pd["action"][0]["title"] == renamed
    (library,) = of_type(exported, "Library")
    assert "| `MME_WARN` | integer | 40 |" in library["description"]

    app = make_app()
    body = mutate(load_fixture("pv_back_pain_with_fever"), lambda b: b.update(hookInstance=str(uuid.uuid4())))
    cards_for(app.test_client(), body)
    html = report_html(app.extensions["cds"].store)
    row = html.split('<tr data-rule="red-flag.infection">')[1].split("</tr>")[0]
    assert renamed in row
    parameter = html.split('<tr data-parameter="MME_WARN">')[1].split("</tr>")[0]
    assert '<td class="n">40</td>' in parameter
