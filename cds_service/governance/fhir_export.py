"""`cds-service rules --format fhir`: the rules as FHIR R4 knowledge artifacts, for review in FHIR
tooling and sharing with other sites (not for execution: there is no CQL).

A Bundle (collection) of one PlanDefinition (eca-rule) per rule of the catalogue, one ValueSet per
value set the rules use, and a Library naming the rule parameters. Everything comes from what the
service runs: the rule catalogue, knowledge/sources.csv, the terminology files and RULE_PARAMETERS.
"""

from __future__ import annotations

import ast
import csv
import re
from importlib import resources
from pathlib import Path

DEFAULT_CANONICAL_BASE = "https://example.org/radiculopathy-cds"
PUBLISHER = "radiculopathy-cds"
PLAN_DEFINITION_TYPE = "http://terminology.hl7.org/CodeSystem/plan-definition-type"
LIBRARY_TYPE = "http://terminology.hl7.org/CodeSystem/library-type"
# Card indicator → PlanDefinition.action.priority (request-priority).
PRIORITY = {"info": "routine", "warning": "urgent", "critical": "stat"}
LEVEL_ORDER = ("info", "warning", "critical")
TERMINOLOGY_VERSION_KEY = {"http://hl7.org/fhir/sid/icd-10-cm": "icd10cm", "http://snomed.info/sct": "snomed",
                           "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm"}


def canonical_base(settings=None) -> str:
    """`export.canonical_base` from the settings (the default when no settings are given)."""
    base = settings.export.canonical_base if settings is not None else DEFAULT_CANONICAL_BASE
    return str(base).rstrip("/")


def fhir_id(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]", "-", name)[:64]


def computable_name(name: str) -> str:
    """'red-flag.cauda-equina' → 'RedFlagCaudaEquina' (FHIR's name pattern: a letter, then [A-Za-z0-9_])."""
    name = "".join(part[:1].upper() + part[1:] for part in re.split(r"[^A-Za-z0-9]+", name) if part)
    return name if name[:1].isalpha() else "X" + name


def knowledge_version_string() -> str:
    """The knowledge-base (rule catalogue) version that discovery serves."""
    from ..registry import knowledge_version
    version = knowledge_version()
    return version["rules"] if isinstance(version, dict) else str(version)


# -- value sets -----------------------------------------------------------------------------------
def _code_lists() -> dict[str, dict[str, list[tuple[str, str, str]]]]:
    """Every value set the terminology defines: name → system → [(code as listed, display, kind)]."""
    from .. import terminology
    term = terminology.load()
    out: dict[str, dict[str, list[tuple[str, str, str]]]] = {}
    for vs, members in term.condition_members.items():
        for system, raw in members:
            display = term.condition_display.get((system, terminology.normalise_code(system, raw.rstrip("*"))), "")
            out.setdefault(vs, {}).setdefault(system, []).append((raw, display, "condition"))
    folder = resources.files(terminology.__name__)
    for name in ("data/procedure_valuesets.csv", "curated/procedure_additions.csv"):
        with folder.joinpath(name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                out.setdefault(row["valueset"], {}).setdefault(row["system"], []).append(
                    (row["code"], row["display"], "procedure"))
    for entry in term.drugs.values():  # drug classes: every RxNorm concept the service classifies
        for drug_class in {i.drug_class for i in entry.ingredients}:
            out.setdefault(drug_class, {}).setdefault(terminology.RXNORM, []).append(
                (entry.rxcui, entry.name, "drug class"))
    return out


def _string_literals(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def valuesets_used(known: set[str]) -> list[str]:
    """Value-set and drug-class names written in the rules, facts and drug classification (a static
    scan of literals)."""
    from .. import drugs, facts, rules
    paths = sorted(Path(rules.__file__).parent.glob("*.py")) + [Path(facts.__file__), Path(drugs.__file__)]
    literals = set().union(*(_string_literals(p) for p in paths))
    return sorted(literals & known)


def _include(system: str, codes: list[tuple[str, str, str]]) -> list[dict]:
    """compose.include entries for one system: listed codes together; each pattern (F11.2*) its own
    is-a filter, because one include cannot hold both, and filters in one include must all hold."""
    from .. import terminology
    version = terminology.VERSION.get(TERMINOLOGY_VERSION_KEY.get(system, ""))
    base = {"system": system, **({"version": version} if version else {})}
    concepts, seen = [], set()
    for code, display, _ in sorted(codes):
        if code.endswith("*") or code in seen:
            continue
        seen.add(code)
        concepts.append({"code": code, **({"display": display} if display else {})})
    out = [{**base, "concept": concepts}] if concepts else []
    for prefix in sorted({c.rstrip("*") for c, _, _ in codes if c.endswith("*")}):
        out.append({**base, "filter": [{"property": "concept", "op": "is-a", "value": prefix}]})
    return out


def value_set(name: str, systems: dict[str, list[tuple[str, str, str]]], base: str, version: str) -> dict:
    kinds = sorted({kind for codes in systems.values() for _, _, kind in codes})
    words = name.replace("_", " ")
    return {
        "resourceType": "ValueSet", "id": fhir_id(name), "url": f"{base}/ValueSet/{fhir_id(name)}",
        "identifier": [{"system": f"{base}/valueset-name", "value": name}],
        "version": version, "name": computable_name(name), "title": words[:1].upper() + words[1:],
        "status": "active", "publisher": PUBLISHER,
        "description": f"The codes this service classifies as `{name}` ({' and '.join(kinds)} codes), as its "
                       "terminology files list them."
                       + (" A medication without an RxNorm code is also recognised by its drug name."
                          if "drug class" in kinds else ""),
        "compose": {"include": [inc for system in sorted(systems) for inc in _include(system, systems[system])]},
    }


# -- rules ----------------------------------------------------------------------------------------
def _highest(levels) -> str:
    return max(levels, key=LEVEL_ORDER.index)


def plan_definition(rule, sources: dict, base: str, version: str, library_url: str) -> dict:
    from .. import knowledge
    highest = _highest(rule.levels)
    tiers = ", ".join(f"{level} ({PRIORITY[level]})" for level in sorted(rule.levels, key=LEVEL_ORDER.index))
    cited = [sources[s] for s in rule.sources if s in sources]
    action = {
        "title": rule.title,
        "description": f"Fires when: {rule.trigger}. Card levels: {tiers}; the priority is the highest.",
        "code": [{"coding": [{"system": knowledge.RULE_SYSTEM, "code": rule.id, "display": rule.title}]}],
        "priority": PRIORITY[highest],
        "trigger": [{"type": "named-event", "name": hook} for hook in sorted(rule.hooks)],
        "documentation": [{"type": "documentation", "display": s.label, **({"url": s.url} if s.url else {})}
                          for s in cited],
    }
    if rule.suggests and rule.suggests.strip().lower() != "none":
        action["action"] = [{"title": "Suggestions", "description": f"Suggests: {rule.suggests}."}]
    return {
        "resourceType": "PlanDefinition", "id": fhir_id(rule.id), "url": f"{base}/PlanDefinition/{fhir_id(rule.id)}",
        "identifier": [{"system": knowledge.RULE_SYSTEM, "value": rule.id}],
        "version": version, "name": computable_name(rule.id), "title": rule.title,
        "type": {"coding": [{"system": PLAN_DEFINITION_TYPE, "code": "eca-rule", "display": "ECA Rule"}]},
        "status": "active", "publisher": PUBLISHER,
        "description": f"{rule.title}. Fires when: {rule.trigger}.",
        "relatedArtifact": [{"type": "citation", "label": s.id, "display": s.label, "citation": s.reference,
                             **({"url": s.url} if s.url else {})} for s in cited],
        "library": [library_url],
        "action": [action],
    }


def library(base: str, version: str, valuesets: list[dict]) -> dict:
    from ..config import RULE_PARAMETERS
    from ..registry import PREFETCH
    rows = "\n".join(f"| `{name}` | {_fhir_type(default)} | {default} |" for name, default in RULE_PARAMETERS.items())
    data_types = sorted({re.match(r"[A-Za-z]+", template).group(0) for template in PREFETCH.values()})
    return {
        "resourceType": "Library", "id": "radiculopathy-cds", "url": f"{base}/Library/radiculopathy-cds",
        "version": version, "name": "RadiculopathyCds", "title": "Back pain with radiculopathy CDS: rule parameters",
        "status": "active", "publisher": PUBLISHER,
        "type": {"coding": [{"system": LIBRARY_TYPE, "code": "module-definition", "display": "Module Definition"}]},
        "description": "The parameters every rule reads, the data the service asks the EHR for, and the value "
                       "sets the rules use. A site may configure other values (`rules.parameters`); the "
                       "defaults are:\n\n| parameter | type | default |\n|---|---|---|\n" + rows,
        "parameter": [{"name": name, "use": "in", "min": 0, "max": "1", "type": _fhir_type(default)}
                      for name, default in RULE_PARAMETERS.items()],
        "dataRequirement": [{"type": t} for t in data_types],
        "relatedArtifact": [{"type": "depends-on", "display": vs["title"], "resource": vs["url"]} for vs in valuesets],
    }


def _fhir_type(value) -> str:
    return "integer" if isinstance(value, int) and not isinstance(value, bool) else "decimal"


def export_bundle(settings=None) -> dict:
    """The Bundle, validated against the fhir.resources R4B models (an invalid export is a bug)."""
    from fhir.resources.R4B.bundle import Bundle

    from .. import knowledge
    from ..rules import CATALOGUE
    base, version = canonical_base(settings), knowledge_version_string()
    code_lists = _code_lists()
    valuesets = [value_set(name, code_lists[name], base, version) for name in valuesets_used(set(code_lists))]
    lib = library(base, version, valuesets)
    sources = knowledge.sources()
    resources_ = [plan_definition(r, sources, base, version, lib["url"]) for r in CATALOGUE] + valuesets + [lib]
    bundle = {"resourceType": "Bundle", "id": "radiculopathy-cds-knowledge", "type": "collection",
              "entry": [{"fullUrl": r["url"], "resource": r} for r in resources_]}
    Bundle.model_validate(bundle)
    return bundle
