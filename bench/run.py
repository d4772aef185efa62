"""The benchmark: `python bench/run.py` (see README "Performance"). Prints a table and writes
bench/results/latest.json.

It starts `cds-service serve` exactly as in production and, with the same gunicorn configuration,
a no-op Flask endpoint that only parses the same JSON body and answers {"cards": []}; drives both
over loopback with 8 keep-alive connections after a warm-up; and measures single-request latency
at 50, 300 and 5,000 prefetch resources, order-select with three drafts, the FHIR-fallback path
against a local FHIR server adding 50 ms per call, start-up time and resident memory per worker,
and the peak memory per worker while a FHIR server answers every search with a 19 MB Bundle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import scenarios  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
PV = "/cds-services/radiculopathy-patient-view"
OS = "/cds-services/radiculopathy-order-select"
TARGETS = {"ratio_300": 0.5, "p99_300_ms": 25, "single_5000_ms": 150, "fallback_ms": 150, "startup_s": 3,
           "rss_mb": 200, "huge_rss_mb": 250}


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, argv: list[str], env: dict):
        self.port = free_port()
        started = time.monotonic()
        self.proc = subprocess.Popen(argv + ["--port", str(self.port)], env={**os.environ, **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT)
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(100).startswith(b"HTTP/1.1 200"):
                        break
            except OSError:
                pass
            if time.monotonic() - started > 30:
                raise SystemExit("server did not start")
            time.sleep(0.02)
        self.startup = time.monotonic() - started

    def worker_rss_mb(self) -> list[float]:
        out = subprocess.run(["ps", "-o", "pid=,rss=", "--ppid", str(self.proc.pid)], capture_output=True, text=True)
        return [int(line.split()[1]) / 1024 for line in out.stdout.splitlines() if line.strip()]

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


# -- load generator: asyncio, HTTP/1.1 keep-alive ----------------------------------------------
def request_bytes(path: str, body: dict) -> bytes:
    data = json.dumps(body).encode()
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n").encode() + data


async def _connection(port: int, payload: bytes, stop_at: float, latencies: list[float], record_after: float):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            writer.write(payload)
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"unexpected answer: {head[:60]!r}")
            length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if t0 >= record_after:
                latencies.append(time.monotonic() - t0)
    finally:
        writer.close()


def load(port: int, payload: bytes, *, connections: int = 8, seconds: float = 5.0, warmup: float = 1.0) -> dict:
    latencies: list[float] = []

    async def main():
        start = time.monotonic()
        await asyncio.gather(*(_connection(port, payload, start + warmup + seconds, latencies, start + warmup)
                               for _ in range(connections)))
    asyncio.run(main())
    latencies.sort()
    return {"rps": len(latencies) / seconds, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "n": len(latencies)}


def sequential(port: int, payload: bytes, n: int) -> float:
    """Median latency of n requests one after another on one connection (after 3 warm-up requests)."""
    results = load_sequential(port, payload, n + 3)[3:]
    return 1000 * statistics.median(results)


def load_sequential(port: int, payload: bytes, n: int) -> list[float]:
    out = []
    with socket.create_connection(("127.0.0.1", port)) as s:
        f = s.makefile("rb")
        for _ in range(n):
            t0 = time.monotonic()
            s.sendall(payload)
            length = 0
            while (line := f.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length"):
                    length = int(line.split(b":")[1])
            f.read(length)
            out.append(time.monotonic() - t0)
    return out


# -- a FHIR server that answers after 50 ms -------------------------------------------------------
class SlowFhir:
    def __init__(self, resources: list[dict], delay: float = 0.05):
        outer = self
        self.calls = 0

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                outer.calls += 1
                time.sleep(delay)
                rtype = self.path.split("/fhir/")[1].split("?")[0].split("/")[0]
                if "/" in self.path.split("/fhir/")[1].split("?")[0]:
                    body = next(r for r in resources if r["resourceType"] == rtype)
                else:
                    body = {"resourceType": "Bundle", "type": "searchset",
                            "entry": [{"resource": r} for r in resources if r["resourceType"] == rtype]}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()  # quick shutdown


class HugeFhir:
    """A FHIR server whose every search answers the same large Bundle of real-looking resources
    (issue 11 item 9: 19 MB per key took workers to about 700 MB)."""

    def __init__(self, resources: list[dict], megabytes: float = 19):
        entries, size = [], 0
        while size < megabytes * 1_000_000:
            for r in resources:
                entries.append({"resource": r})
                size += len(json.dumps(r)) + 16
        data = json.dumps({"resourceType": "Bundle", "type": "searchset", "entry": entries}).encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Transfer-Encoding", "chunked")  # no Content-Length to refuse early
                self.end_headers()
                try:
                    for i in range(0, len(data), 1 << 20):
                        chunk = data[i:i + (1 << 20)]
                        self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                except OSError:
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def memory_under_huge_bundles(server: Server, payload: bytes, seconds: float, connections: int = 8) -> dict:
    """8 connections send requests whose FHIR fetches all return huge Bundles; the peak worker RSS
    is sampled while they run. Answers are 412 (over fhir.max_total_bytes): counted, not required."""
    statuses: dict[str, int] = {}
    peak = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.05):
            peak[0] = max([peak[0]] + server.worker_rss_mb())

    async def one(stop_at: float):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            while time.monotonic() < stop_at:
                writer.write(payload)
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ")[1].decode()
                statuses[status] = statuses.get(status, 0) + 1
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                await reader.readexactly(length)
        finally:
            writer.close()

    async def main():
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(one(stop_at) for _ in range(connections)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        asyncio.run(main())
    finally:
        stop.set()
        sampler.join()
    return {"peak_rss_mb": peak[0], "statuses": statuses}


def fallback_request() -> tuple[dict, list[dict]]:
    """A request with five keys left to the FHIR server, and the resources that server must serve."""
    body = scenarios.scaled("pv_radiculopathy_8_weeks_after_nsaid", 50)
    served = [body["prefetch"]["patient"]] + [e["resource"] for k, v in body["prefetch"].items()
                                              if isinstance(v, dict) and v.get("resourceType") == "Bundle"
                                              for e in v.get("entry", [])]
    for key in ("medicationRequests", "medicationStatements", "observations", "procedures", "serviceRequests"):
        del body["prefetch"][key]  # five missing keys, fetched at once
    return body, served


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per load scenario")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker (both servers)")
    args = parser.parse_args(argv)

    tmp = tempfile.mkdtemp(prefix="cds-bench-")
    config = Path(tmp) / "cds.toml"
    config.write_text("[fhir]\nallow_private_networks = true\n")  # the FHIR servers here are on loopback
    env = {"CDS_SERVICE_DB": f"{tmp}/ledger.sqlite3", "CDS_SERVICE_LOG_LEVEL": "WARNING",
           "CDS_SERVICE_AS_OF": "2026-03-01", "CDS_SERVICE_CONFIG": str(config)}
    cli = str(Path(sys.executable).parent / "cds-service")
    service = Server([cli, "serve", "--workers", str(args.workers), "--threads", str(args.threads)], env)
    noop = Server([sys.executable, str(Path(__file__).parent / "noop.py"), "--workers", str(args.workers), "--threads", str(args.threads)], env)
    results: dict = {"machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
                     "date": time.strftime("%Y-%m-%d"), "startup_s": service.startup}
    try:
        rows = []
        for n in (50, 300, 5000):
            payload = request_bytes(PV, scenarios.scaled("pv_radiculopathy_8_weeks_after_nsaid", n))
            single = sequential(service.port, payload, 15 if n == 5000 else 40)
            results[f"single_{n}_ms"] = single
            if n in (50, 300):
                ours = load(service.port, payload, seconds=args.seconds)
                base = load(noop.port, payload, seconds=args.seconds)
                results[f"load_{n}"] = {"service": ours, "noop": base, "ratio": ours["rps"] / base["rps"]}
                rows.append((f"patient-view, {n} resources, 8 conn", ours, base, single))
            else:
                rows.append((f"patient-view, {n} resources, sequential", None, None, single))
        os_payload = request_bytes(OS, scenarios.order_select_three_drafts())
        ours = load(service.port, os_payload, seconds=args.seconds)
        base = load(noop.port, os_payload, seconds=args.seconds)
        results["load_os"] = {"service": ours, "noop": base, "ratio": ours["rps"] / base["rps"]}
        rows.append(("order-select, 3 drafts, 300 resources", ours, base, sequential(service.port, os_payload, 40)))

        body, served = fallback_request()
        fhir_served = SlowFhir(served)
        body["fhirServer"] = fhir_served.base
        fb = request_bytes(PV, body)
        results["fallback_ms"] = sequential(service.port, fb, 20)
        results["rss_mb"] = max(service.worker_rss_mb())

        huge = HugeFhir(served)
        body["fhirServer"] = huge.base
        results["huge_bundles"] = memory_under_huge_bundles(service, request_bytes(PV, body), args.seconds)
        huge.close()
    finally:
        service.stop()
        noop.stop()

    per_resource = (results["single_5000_ms"] - results["single_300_ms"]) / 4700
    results["ms_per_1000_resources"] = per_resource * 1000
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "latest.json").write_text(json.dumps(results, indent=2))

    print(f"\nMachine: {results['machine']}; {args.workers} gunicorn workers (gthread), 8 connections, "
          f"{args.seconds:g} s measured after 1 s warm-up\n")
    print(f"{'scenario':42} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'no-op req/s':>12} {'ratio':>6} {'1 req ms':>9}")
    for name, ours, base, single in rows:
        if ours:
            print(f"{name:42} {ours['rps']:8.0f} {ours['p50_ms']:8.1f} {ours['p99_ms']:8.1f} {base['rps']:12.0f} "
                  f"{ours['rps'] / base['rps']:6.2f} {single:9.1f}")
        else:
            print(f"{name:42} {'':8} {'':8} {'':8} {'':12} {'':6} {single:9.1f}")
    print(f"\nFHIR fallback, 5 missing keys at 50 ms each: {results['fallback_ms']:.0f} ms")
    print(f"Cost per 1,000 extra resources (300 → 5,000): {results['ms_per_1000_resources']:.1f} ms")
    print(f"Start-up to first answer: {results['startup_s']:.2f} s;  resident memory per worker: {results['rss_mb']:.0f} MB")
    huge = results["huge_bundles"]
    print(f"FHIR server answering 19 MB Bundles, 8 conn: peak memory per worker {huge['peak_rss_mb']:.0f} MB; "
          f"answers {huge['statuses']}")
    checks = [("throughput ratio at 300 ≥ 0.5", results["load_300"]["ratio"] >= TARGETS["ratio_300"]),
              ("p99 at 300 ≤ 25 ms", results["load_300"]["service"]["p99_ms"] <= TARGETS["p99_300_ms"]),
              ("5,000 resources < 150 ms", results["single_5000_ms"] < TARGETS["single_5000_ms"]),
              ("fallback < 150 ms", results["fallback_ms"] < TARGETS["fallback_ms"]),
              ("start-up < 3 s", results["startup_s"] < TARGETS["startup_s"]),
              ("memory < 200 MB/worker", results["rss_mb"] < TARGETS["rss_mb"]),
              ("memory < 250 MB/worker under 19 MB Bundles", huge["peak_rss_mb"] < TARGETS["huge_rss_mb"])]
    print("\nTargets: " + "; ".join(f"{name}: {'met' if ok else 'NOT met'}" for name, ok in checks))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
