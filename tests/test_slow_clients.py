"""`cds-service serve` under slow clients (issue 11 items 10 and 11): a slowloris client does not hold
the server's threads, and an instance keeps no shared control socket. Live server on loopback,
always stopped."""

from __future__ import annotations

import socket
import threading
import time

import requests

from conftest import PV, LiveServer, load_fixture, store_env


def _slowloris(base: str, stop: threading.Event, opened: list) -> None:
    """Opens a request and sends its headers one byte at a time, never finishing."""
    host, port = base.removeprefix("http://").split(":")
    try:
        sock = socket.create_connection((host, int(port)), timeout=30)
    except OSError:
        return
    opened.append(sock)
    try:
        sock.sendall(f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1\r\n".encode())
        while not stop.wait(0.5):
            sock.sendall(b"X")
    except OSError:
        pass  # the server closed it: what we want


def test_slow_header_clients_do_not_block_a_valid_request(tmp_path, store_config):
    config = tmp_path / "cds.toml"
    config.write_text("[http]\nheader_timeout_seconds = 2\n")
    server = LiveServer({"CDS_SERVICE_CONFIG": str(config), **store_env(store_config())}, workers=1)
    stop, opened = threading.Event(), []
    attackers = [threading.Thread(target=_slowloris, args=(server.base, stop, opened), daemon=True)
                 for _ in range(12)]  # more than the worker's 4 threads
    try:
        for t in attackers:
            t.start()
        time.sleep(1.0)  # every thread of the worker is now reading a slow request
        started = time.monotonic()
        response = requests.post(server.base + PV, json=load_fixture("pv_lumbar_radiculopathy_6_weeks"), timeout=20)
        elapsed = time.monotonic() - started
        assert response.status_code == 200
        # The slow clients are cut off after 2 s; the drip itself would go on for 20 s.
        assert elapsed < 8, elapsed
    finally:
        stop.set()
        for sock in opened:
            sock.close()
        server.stop()


def test_an_instance_keeps_no_shared_control_socket(tmp_path, store_config):
    home = tmp_path / "home"
    home.mkdir()
    server = LiveServer({"HOME": str(home), **store_env(store_config())}, workers=1)
    try:
        assert requests.get(server.base + "/healthz", timeout=10).status_code == 200
        assert not (home / ".gunicorn").exists()
    finally:
        _, stderr = server.stop()
    assert "control" not in stderr.lower(), stderr[-2000:]
