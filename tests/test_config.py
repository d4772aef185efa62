"""Configuration that refuses mistakes: a typo, a wrong type or an out-of-range value stops the
service at start with one line naming the key and where it was given; valid settings reach the
behaviour they configure."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cds_service import cli
from cds_service.app import create_app
from cds_service.config import ENV, ConfigError, load_settings, markdown_table

from conftest import FIXTURES, PV, load_fixture, post

README = Path(__file__).resolve().parents[1] / "README.md"
REQUEST = str(FIXTURES / "pv_lumbar_radiculopathy_6_weeks.json")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for var in [*ENV, "CDS_SERVICE_CONFIG"]:
        monkeypatch.delenv(var, raising=False)


def config_file(tmp_path, text: str) -> str:
    path = tmp_path / "cds.toml"
    path.write_text(text)
    return str(path)


MISTAKES = [
    # (TOML, the key the error must name)
    ('[fhir]\nalowed_servers = ["https://ehr.example.org/fhir"]\n', "fhir.alowed_servers"),
    ("[auth]\nrequried = true\n", "auth.requried"),
    ('[fhir]\ntimeout_seconds = "abc"\n', "fhir.timeout_seconds"),
    ("[store]\ntimeout_seconds = 0\n", "store.timeout_seconds"),
    ("[store]\nretry_queue_max_rows = -5\n", "store.retry_queue_max_rows"),
    ("[rules.parameters]\nPERSISTANT_WEEKS = 6\n", "PERSISTANT_WEEKS"),
    ("[rules.parameters]\nMME_HIGH = 0\n", "MME_HIGH"),
    ('[rules.levels]\n"nsaid.cardiovascular" = "quiet"\n', "rules.levels.nsaid.cardiovascular"),
    ('[prefetch]\nrequired = ["conditons"]\n', "prefetch.required"),
    ('[[auth.clients]]\niss = "https://ehr.example.org"\n', "auth.clients.0"),
    ("[auth]\nrequired = true\n", "auth.required"),
    ('log_format = "xml"\n', "log_format"),
]


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["evaluate", REQUEST], ["report"]])
@pytest.mark.parametrize("toml,key", MISTAKES, ids=[k for _, k in MISTAKES])
def test_a_mistake_stops_the_command_with_one_line_naming_key_and_file(command, toml, key, tmp_path,
                                                                       monkeypatch, capsys):
    path = config_file(tmp_path, toml)
    monkeypatch.setenv("CDS_SERVICE_CONFIG", path)
    monkeypatch.setenv("CDS_SERVICE_DB", str(tmp_path / "ledger.sqlite3"))
    assert cli.main(command) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert key in lines[0] and path in lines[0], lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert not (tmp_path / "ledger.sqlite3").exists()  # nothing started


def test_an_error_never_repeats_the_value(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_CONFIG", config_file(tmp_path, '[fhir]\nproxy = 12345678\n'))
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "fhir.proxy" in str(err.value) and "12345678" not in str(err.value)


@pytest.mark.parametrize("value", ["maybe", "2", "enabled"])
def test_a_boolean_environment_variable_must_say_yes_or_no(value, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_DEMO", value)
    with pytest.raises(ConfigError, match="environment variable CDS_SERVICE_DEMO: demo"):
        load_settings()


@pytest.mark.parametrize("value,expected", [("true", True), ("yes", True), ("1", True), ("off", False), ("0", False)])
def test_boolean_environment_spellings(value, expected, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_DEMO", value)
    assert load_settings().demo is expected


def test_sources_apply_in_order_file_environment_then_create_app(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_CONFIG", config_file(tmp_path, 'as_of = 2026-01-01\nlog_format = "text"\n'
                                                                   "[fhir]\nmax_pages = 3\n"))
    monkeypatch.setenv("CDS_SERVICE_AS_OF", "2026-02-02")
    settings = load_settings({"fhir": {"max_workers": 2}})
    assert (settings.log_format, settings.fhir.max_pages, settings.fhir.max_workers) == ("text", 3, 2)
    assert settings.today().isoformat() == "2026-02-02"  # the environment beat the file
    assert load_settings({"as_of": "2026-03-03"}).today().isoformat() == "2026-03-03"  # create_app beats both


def test_a_typo_in_the_allow_list_no_longer_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_CONFIG", config_file(
        tmp_path, f'db = "{tmp_path / "l.sqlite3"}"\n[fhir]\nalowed_servers = ["https://ehr.example.org/fhir"]\n'))
    with pytest.raises(ConfigError, match="fhir.alowed_servers: unknown key"):
        create_app()


def test_the_allow_list_from_a_file_refuses_other_servers(tmp_path, monkeypatch):
    monkeypatch.setenv("CDS_SERVICE_CONFIG", config_file(
        tmp_path, f'db = "{tmp_path / "l.sqlite3"}"\ndemo = true\n'
                  '[fhir]\nallowed_servers = ["https://ehr.example.org/fhir"]\n'))
    app = create_app()
    try:
        body = {**load_fixture("pv_lumbar_radiculopathy_6_weeks"), "fhirServer": "https://elsewhere.example.org/fhir"}
        response = post(app.test_client(), PV, body)
        assert response.status_code == 400
        assert "allowed FHIR servers" in response.get_json()["issue"][0]["diagnostics"]
    finally:
        app.extensions["cds"].store.close()


def test_rule_parameters_keep_their_names_and_take_new_numbers():
    settings = load_settings({"rules": {"parameters": {"PERSISTENT_WEEKS": 6, "SEVERE_PAIN": 8}}})
    assert settings.params["PERSISTENT_WEEKS"] == 6 and settings.params["SEVERE_PAIN"] == 8
    # Parameters not named keep the the catalogue's defaults, including revision 2's.
    assert {k: settings.params[k] for k in ("STALE_ORDER_DAYS", "CHRONIC_WEEKS", "EGFR_CAUTION")} == \
        {"STALE_ORDER_DAYS": 400, "CHRONIC_WEEKS": 12, "EGFR_CAUTION": 60}
    with pytest.raises(ConfigError, match="MME_WARN must be a number"):
        load_settings({"rules": {"parameters": {"MME_WARN": True}}})


def test_the_settings_other_modules_add_this_round_are_accepted_and_checked():
    settings = load_settings({
        "fhir": {"allow_private_networks": True, "max_total_bytes": 1000},
        "http": {"header_timeout_seconds": 5}, "auth": {"jwks_max_stale_seconds": 60},
        "cards": {"evidence_alone": True}, "order_sign": {"repeat_window_hours": 24},
        "privacy": {"pseudonym_key": "site-secret"}, "overrides": {"quiet_days": 7, "rules": {"opioid.mme": 0}},
        "export": {"canonical_base": "https://cds.example.org/kb"}})
    assert settings.overrides.enabled  # on because a pseudonym key is set
    assert "site-secret" not in repr(settings)  # the key never reaches a log or a traceback
    assert settings.privacy.pseudonym_key.get_secret_value() == "site-secret"
    assert not load_settings({}).overrides.enabled
    for bad, key in [({"order_sign": {"repeat_window_hours": 0}}, "order_sign.repeat_window_hours"),
                     ({"fhir": {"max_total_bytes": 0}}, "fhir.max_total_bytes"),
                     ({"overrides": {"rules": {"opioid.mme": -1}}}, "overrides.rules"),
                     ({"export": {"canonical_base": "not a url"}}, "export.canonical_base"),
                     ({"privacy": {"pseudonym_key": "a", "pseudonym_key_file": "/k"}}, "privacy")]:
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_settings(bad)


def test_the_readme_configuration_table_is_the_settings_model():
    """Every setting appears in the README with its default and meaning, and the README lists no
    other key. Regenerate the table with `python -m cds_service.config`."""
    section = README.read_text().split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    lines = section.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| key (TOML)"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    readme_table = "\n".join(lines[start:end])
    documented = re.findall(r"^\| `([A-Za-z_.]+)` \|", readme_table, re.M)
    assert "store.timeout_seconds" in documented and "rules.parameters" in documented
    assert readme_table == markdown_table(), "README configuration table is out of date: python -m cds_service.config"


def test_every_toml_example_in_the_readme_and_deploy_loads(tmp_path, monkeypatch):
    """An example a hospital copies must not be refused by the settings model it documents."""
    examples = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    examples += [p.read_text() for p in (README.parent / "deploy").glob("*.toml")]
    assert len(examples) >= 3
    for i, text in enumerate(examples):
        monkeypatch.setenv("CDS_SERVICE_CONFIG", config_file(tmp_path, text))
        settings = load_settings()
        assert settings.db  # loaded, typed
