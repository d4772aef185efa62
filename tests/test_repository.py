"""The repository stands alone and its generated parts are current: nothing names the team's
reference folder beside the checkout, docs/rules.md is what the code generates, and every value-set
name a rule asks for exists in the terminology data (a typo would silently match nothing)."""

from __future__ import annotations

import ast
import contextlib
import csv
import io
import subprocess
from importlib import resources
from pathlib import Path

from cds_service import cli
from conftest import ROOT

OUTSIDE = "../" + "shared"  # spelt in two parts so that this file does not match its own search
# Calls that take value-set names: condition value sets, and procedure value sets.
CONDITION_CALLS = {"has", "conditions_in"}
PROCEDURE_CALLS = {"procedures_in", "procedures_since"}


def tracked_files() -> list[Path]:
    try:
        names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True,
                               timeout=60).stdout.decode().split("\0")
        return [ROOT / n for n in names if n and (ROOT / n).is_file()]
    except (OSError, subprocess.CalledProcessError):  # an unpacked source archive: walk it
        skip = {".git", ".venv", "build", "dist", "__pycache__"}
        return [p for p in ROOT.rglob("*") if p.is_file() and not skip & set(p.relative_to(ROOT).parts)]


def test_nothing_names_the_folder_beside_the_checkout():
    files = tracked_files()
    assert len(files) > 100 and ROOT / "README.md" in files
    offenders = []
    for path in files:
        data = path.read_bytes()
        if b"\0" not in data[:4096] and OUTSIDE.encode() in data:
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"these files name {OUTSIDE}, which a clone does not have: {offenders}"


def test_docs_rules_md_is_current():
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main(["rules", "--format", "markdown"]) == 0
    current = (ROOT / "docs" / "rules.md").read_text(encoding="utf-8")
    assert current == out.getvalue(), (
        "docs/rules.md is out of date with the rules' definitions; regenerate it with\n"
        "    cds-service rules --format markdown > docs/rules.md")


def test_readme_links_inside_the_repository_exist():
    import re
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    targets = {t.split("#")[0] for t in re.findall(r"\]\(([^)\s]+)\)", text) if "://" not in t and not t.startswith("#")}
    assert "docs/rules.md" in targets
    missing = [t for t in targets if t and not (ROOT / t).exists()]
    assert not missing, missing


# -- value-set names ------------------------------------------------------------------------------
def packaged_valuesets(kind: str) -> set[str]:
    """The value sets in the terminology data (generated and curated CSVs) for conditions or procedures."""
    package = resources.files("cds_service.terminology")
    names = set()
    for folder, name in (("data", f"{kind}_valuesets.csv"), ("curated", f"{kind}_additions.csv")):
        with package.joinpath(folder, name).open(encoding="utf-8") as fh:
            names |= {row["valueset"] for row in csv.DictReader(fh)}
    return names


def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Dict):
        return set().union(*(_strings(v) for v in node.values)) if node.values else set()
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def module_constants(tree: ast.Module) -> dict[str, ast.AST]:
    return {t.id: node.value for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)}


def _loop_values(tree: ast.AST) -> dict[str, set[str]]:
    """Names bound by `for a, b in (("x", ...), ...)` over a literal: the strings each can take."""
    out: dict[str, set[str]] = {}
    for loop in ast.walk(tree):
        if not isinstance(loop, ast.For) or not isinstance(loop.iter, (ast.Tuple, ast.List)):
            continue
        if isinstance(loop.target, ast.Name):
            out.setdefault(loop.target.id, set()).update(_strings(loop.iter))
        elif isinstance(loop.target, ast.Tuple):
            for i, target in enumerate(loop.target.elts):
                if isinstance(target, ast.Name):
                    out.setdefault(target.id, set()).update(
                        *(_strings(e.elts[i]) for e in loop.iter.elts if isinstance(e, ast.Tuple) and len(e.elts) > i))
    return out


def valueset_names_used(source: str, where: str, constants: dict[str, ast.AST]) -> tuple[dict[str, set], list[str]]:
    """{"condition": {(name, "file:line")}, "procedure": {...}} from the calls in one module, and the
    arguments that cannot be read statically. An argument may be a literal, a constant (`*NAME`,
    `*NAME[key]`, from any module), a loop variable over a literal, or the enclosing function's own
    `*args` passed on (its callers are checked)."""
    tree = ast.parse(source)
    loops = _loop_values(tree)
    used: dict[str, set] = {"condition": set(), "procedure": set()}
    unreadable = []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        name = getattr(call.func, "attr", getattr(call.func, "id", None))
        kind = "condition" if name in CONDITION_CALLS else "procedure" if name in PROCEDURE_CALLS else None
        if kind is None:
            continue
        for arg in call.args:
            at = f"{where}:{call.lineno}"
            inner = arg.value if isinstance(arg, ast.Starred) else arg
            base = inner.value if isinstance(inner, ast.Subscript) else inner
            if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                used[kind].add((inner.value, at))
            elif isinstance(base, ast.Name) and base.id in constants:
                used[kind] |= {(s, at) for s in _strings(constants[base.id])}
            elif isinstance(base, ast.Name) and base.id in loops:
                used[kind] |= {(s, at) for s in loops[base.id]}
            elif isinstance(arg, ast.Starred) and isinstance(base, ast.Name) and any(
                    f.args.vararg and f.args.vararg.arg == base.id and f.lineno <= call.lineno <= f.end_lineno
                    for f in functions):
                pass  # passed on from the caller
            else:
                unreadable.append(at)
    return used, unreadable


def test_every_valueset_a_rule_asks_for_exists():
    known = {"condition": packaged_valuesets("condition"), "procedure": packaged_valuesets("procedure")}
    sources = {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in sorted((ROOT / "cds_service").rglob("*.py"))}
    constants: dict[str, ast.AST] = {}
    for text in sources.values():
        constants.update(module_constants(ast.parse(text)))
    used: dict[str, set] = {"condition": set(), "procedure": set()}
    unreadable = []
    for where, text in sources.items():
        found, odd = valueset_names_used(text, where, constants)
        for kind in used:
            used[kind] |= found[kind]
        unreadable += odd
    assert not unreadable, f"value-set names must be literals or constants to be checked: {unreadable}"
    assert len({n for n, _ in used["condition"]}) > 20 and used["procedure"]  # the scan does see the rules
    unknown = sorted(f"{where}: {kind} value set '{n}'" for kind in used for n, where in used[kind]
                     if n not in known[kind])
    assert not unknown, unknown


def test_the_valueset_scan_catches_a_typo():
    source = ('SETS = {"lumbar": ("spine_imaging_lumbar",)}\n'
              'def r(f):\n    return f.has("gi_bleed_ulcr") or f.procedures_in(*SETS["lumbar"], since=None)\n'
              'def s(f, name):\n    return f.has(name)\n')
    used, unreadable = valueset_names_used(source, "x.py", module_constants(ast.parse(source)))
    assert unreadable == ["x.py:5"]  # a name the scan cannot follow is reported, not passed
    assert {n for n, _ in used["condition"]} == {"gi_bleed_ulcr"}
    assert "gi_bleed_ulcr" not in packaged_valuesets("condition")
    assert {n for n, _ in used["procedure"]} == {"spine_imaging_lumbar"}


def test_readme_rule_count_is_the_catalogue():
    """The README's number of rules follows the catalogue (it is not written anywhere else)."""
    from cds_service.rules import CATALOGUE
    readme = (ROOT / "README.md").read_text()
    assert f"({len(CATALOGUE)} in this catalogue)" in readme
