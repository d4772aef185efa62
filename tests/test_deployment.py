"""The container runs what the tests run: its CMD is a valid `cds-service serve`, its health check
names an endpoint that exists, and the compose example is consistent and refuses calls without a
JWT (Docker itself cannot run on these machines)."""

from __future__ import annotations

import fnmatch
import json
import re
from urllib.parse import urlsplit

import pytest
import yaml

from cds_service.app import create_app
from conftest import PV, ROOT, load_fixture


def test_dockerfile_runs_cds_service_serve_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    cmd = json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1))
    assert cmd[:2] == ["cds-service", "serve"]
    # The CLI accepts the container's options (argparse exits 0 on --help only when they parse).
    import contextlib
    import io

    import pytest
    from cds_service import cli
    with contextlib.redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as done:
        cli.main(cmd[1:] + ["--help"])
    assert done.value.code == 0
    assert re.search(r"^USER (?!root)\w+", text, re.M)
    assert "/readyz" in text


def test_health_endpoints_the_container_uses(client):
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200


def compose_environment(service: dict, shell: dict) -> dict:
    """The service's environment as compose sets it: `${VAR:-default}` from the shell, or the default."""
    def value(v: str) -> str:
        return re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: shell.get(m.group(1), m.group(2)), str(v))
    return {k: value(v) for k, v in service["environment"].items()}


def test_compose_runs_two_instances_on_one_postgresql():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    cds = {name: s for name, s in services.items() if s.get("build") == "."}
    assert len(cds) == 2
    dsns = {s["environment"]["CDS_SERVICE_DB"] for s in cds.values()}
    assert len(dsns) == 1  # one ledger, feedback store and JWT replay cache for both
    dsn = urlsplit(dsns.pop())
    db = services[dsn.hostname]["environment"]  # the DSN names the compose database service...
    assert (dsn.scheme, dsn.username, dsn.password, dsn.path.lstrip("/")) == (
        "postgresql", db["POSTGRES_USER"], db["POSTGRES_PASSWORD"], db["POSTGRES_DB"])  # ...and its credentials
    for service in cds.values():
        assert service["depends_on"][dsn.hostname] == {"condition": "service_healthy"}
        assert all(p.startswith("127.0.0.1:") for p in service["ports"])  # TLS terminates in front
        source, target = service["volumes"][0].split(":")[:2]
        assert service["environment"]["CDS_SERVICE_CONFIG"] == target and (ROOT / source).is_file()


@pytest.mark.parametrize("shell,status", [({}, 401), ({"CDS_SERVICE_AUTH_REQUIRED": "false"}, 200)])
def test_compose_instances_require_a_jwt_unless_switched_off(monkeypatch, tmp_path, shell, status):
    """As the README says: the Try-it call gets 401 from the compose example, and 200 with
    `CDS_SERVICE_AUTH_REQUIRED=false docker compose up`."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["cds-1"]
    env = compose_environment(service, shell)
    source, target = service["volumes"][0].split(":")[:2]
    env[next(k for k, v in env.items() if v == target)] = str(ROOT / source)  # the mounted file
    env["CDS_SERVICE_DB"] = str(tmp_path / "ledger.sqlite3")  # no PostgreSQL container here
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    app = create_app()
    try:
        response = app.test_client().post(PV, json=load_fixture("pv_spinal_metastases_with_radiculopathy"))
    finally:
        app.extensions["cds"].store.close()
    assert response.status_code == status, response.get_data(as_text=True)


def test_docker_build_context_leaves_out_local_environments():
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]

    def ignored(path: str) -> bool:
        return any(fnmatch.fnmatch(path, p) or path.startswith(p.rstrip("/") + "/") or
                   fnmatch.fnmatch(path, p.removeprefix("**/")) for p in patterns)
    for path in (".venv", ".git", "test-artifacts", ".pytest_cache", "cds_service/__pycache__", "ledger.sqlite3"):
        assert ignored(path), path
    copied = re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M)
    for source in " ".join(copied).split():
        assert (ROOT / source).exists() and not ignored(source), source
