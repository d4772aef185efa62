"""The container runs what the tests run: its CMD is a valid `cds-service serve` and its health
check names an endpoint that exists (Docker itself cannot run on these machines)."""

from __future__ import annotations

import json
import re

from conftest import ROOT


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


def test_compose_runs_two_instances_on_postgresql():
    text = (ROOT / "docker-compose.yml").read_text()
    assert "postgresql://" in text and "cds-1" in text and "cds-2" in text
