"""Rebuild the packaged terminology files from the project's code lists.

    python -m cds_service.terminology.build

Reads the ICD-10-CM, SNOMED CT, procedure, RxNorm class-map, RxNorm supplement and OMTK files
(see PROVENANCE.md) and writes normalised CSVs into cds_service/terminology/data/. The hand-curated
additions in curated/ are not touched: they are reviewed by clinicians and kept in git.
Run it when RxNorm, ICD-10-CM or the value sets change, then run the test suite.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

DATA_DIR = Path(__file__).parent / "data"
SOURCES_DIR = Path(__file__).parent / "sources"  # the public code lists, with their provenance

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"

INPUTS = {
    "icd10cm": "icd10cm_valuesets_FY2026-04.csv",
    "snomed": "snomed_valuesets_ips2022.csv",
    "procedures": "procedure_valuesets.csv",
    "class_map": "rxnorm_drug_class_map_2025-10.csv",
    "supplement": "rxnorm_supplement_A.csv",
    "omtk": "omtk2020_opioid_drug_ingredient_strength.csv",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _write(out: Path, name: str, header: list[str], rows: list[list[str]]) -> int:
    out.mkdir(parents=True, exist_ok=True)
    rows = sorted(set(map(tuple, rows)))
    with (out / name).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return len(rows)


def build(codes: Path, out: Path = DATA_DIR) -> dict[str, int]:
    missing = [f for f in INPUTS.values() if not (codes / f).is_file()]
    if missing:
        raise SystemExit(f"missing code lists in {codes}: {', '.join(missing)}")
    counts: dict[str, int] = {}

    conditions = [
        [r["valueset"], ICD10CM, r["code"].strip().upper(), r["description"], INPUTS["icd10cm"]]
        for r in _rows(codes / INPUTS["icd10cm"])
        if "-" not in r["code"]  # block headers such as C00-C96 are ranges, never a recorded code
    ] + [
        [r["valueset"], SNOMED, r["code"].strip(), r["display"], INPUTS["snomed"]]
        for r in _rows(codes / INPUTS["snomed"])
    ]
    counts["condition_valuesets.csv"] = _write(
        out, "condition_valuesets.csv", ["valueset", "system", "code", "display", "source"], conditions
    )

    procedures = [
        [r["valueset"], r["system"], r["code"].strip(), r["display"], INPUTS["procedures"]]
        for r in _rows(codes / INPUTS["procedures"])
    ]
    # The SNOMED file also holds procedure sets (spine surgery, non-drug therapy).
    procedures += [
        [r["valueset"], SNOMED, r["code"].strip(), r["display"], INPUTS["snomed"]]
        for r in _rows(codes / INPUTS["snomed"])
        if r["valueset"] in {"spine_surgery", "nonpharm_procedures"}
    ]
    counts["procedure_valuesets.csv"] = _write(
        out, "procedure_valuesets.csv", ["valueset", "system", "code", "display", "source"], procedures
    )

    drug_header = ["drug_rxcui", "tty", "drug_name", "ingredient_rxcui", "ingredient_name",
                   "drug_class", "route", "er_la", "source"]
    drugs = [
        [r["drug_rxcui"], r["tty"], r["drug_name"], r["ingredient_rxcui"], r["ingredient_name"].lower(),
         r["drug_class"], r["route_hint"], r["er_la_hint"], source]
        for file_key, source in (("class_map", INPUTS["class_map"]), ("supplement", INPUTS["supplement"]))
        for r in _rows(codes / INPUTS[file_key])
    ]
    counts["drugs.csv"] = _write(out, "drugs.csv", drug_header, drugs)

    omtk = [
        [r["drug_rxcui"], r["drug_name"], r["dose_form_name"], r["ingredient_rxcui"],
         r["ingredient_name"].lower(), r["strength_value"], r["strength_unit"].upper()]
        for r in _rows(codes / INPUTS["omtk"])
    ]
    counts["opioid_strength.csv"] = _write(
        out, "opioid_strength.csv",
        ["drug_rxcui", "drug_name", "dose_form", "ingredient_rxcui", "ingredient_name",
         "strength_value", "strength_unit"],
        omtk,
    )
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--codes", type=Path, default=SOURCES_DIR, help="folder with the source code lists (default: sources/)")
    p.add_argument("--out", type=Path, default=DATA_DIR, help="where to write (default: the package's data/)")
    args = p.parse_args(argv)
    for name, n in build(args.codes, args.out).items():
        print(f"{name}: {n} rows", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
