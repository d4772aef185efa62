"""Reads from the EHR's FHIR server when prefetch is missing: one pooled requests.Session per
process, concurrent searches, `next` paging within the same server, a per-call timeout, a total
deadline for the whole hook request and a byte cap on every response.

The access token is sent only to the fhirServer's own origin and is never logged or echoed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MAX_REDIRECTS = 3


class FhirFetchError(Exception):
    """A search could not be completed; the message is safe to show (no token, no PHI)."""


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def under_base(url: str, base: str) -> bool:
    return same_origin(url, base) and urlsplit(url).path.startswith(urlsplit(base).path.rstrip("/"))


def _capture(job: Callable[[], dict]) -> dict | FhirFetchError:
    try:
        return job()
    except FhirFetchError as exc:
        return exc
    except Exception as exc:  # never let a fetch bug become a 500; the log names the type only
        log.error("unexpected error while fetching FHIR data: %s", type(exc).__name__)
        return FhirFetchError("the FHIR data could not be read")


class FhirClient:
    def __init__(self, fhir_settings: Mapping) -> None:
        self.settings = dict(fhir_settings)
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    # A session per thread: requests.Session is not documented as thread-safe; each keeps its own
    # connection pool alive across requests, so connections are still reused.
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # proxies come from configuration only
            adapter = HTTPAdapter(pool_connections=4, pool_maxsize=8, max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            s = self.settings
            if s.get("ca_bundle"):
                session.verify = s["ca_bundle"]
            if s.get("client_cert"):
                session.cert = (s["client_cert"], s["client_key"]) if s.get("client_key") else s["client_cert"]
            if s.get("proxy"):
                session.proxies = {"http": s["proxy"], "https": s["proxy"]}
            self._local.session = session
        return session

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=int(self.settings["max_workers"]),
                                                    thread_name_prefix="fhir-fetch")
            return self._executor

    # -- public ----------------------------------------------------------------------------
    def run_all(self, jobs: Mapping[str, Callable[[], dict]], deadline: float) -> dict[str, dict | FhirFetchError]:
        """Run fetch jobs concurrently; each result is a resource or the FhirFetchError it raised.

        Always through the pool: the request thread then waits no longer than the deadline,
        whatever a misbehaving server does to a worker's socket.
        """
        futures = {key: self._pool().submit(_capture, job) for key, job in jobs.items()}
        results: dict[str, dict | FhirFetchError] = {}
        for key, fut in futures.items():
            try:
                results[key] = fut.result(timeout=max(0.0, deadline - time.monotonic()) + 0.05)
            except Exception:  # the worker is still waiting on the server
                results[key] = FhirFetchError("the FHIR server did not answer within the time budget")
        return results

    def read(self, base: str, token: str | None, relative: str, deadline: float) -> dict:
        """GET one resource or search (relative to base); Bundle pages are merged into one."""
        url = urljoin(base.rstrip("/") + "/", relative)
        resource = self._get_json(base, token, url, deadline)
        if resource.get("resourceType") == "Bundle":
            resource = self._follow_pages(base, token, resource, deadline, pages=1)
        return resource

    def continue_bundle(self, base: str, token: str | None, bundle: dict, deadline: float) -> dict:
        """Follow the `next` links of a Bundle the EHR prefetched only in part."""
        return self._follow_pages(base, token, bundle, deadline, pages=1)

    # -- internals -------------------------------------------------------------------------
    def _follow_pages(self, base, token, bundle: dict, deadline: float, pages: int) -> dict:
        entries = list(bundle.get("entry") or [])
        seen_urls: set[str] = set()
        current = bundle
        while True:
            nxt = next((l.get("url") for l in current.get("link") or []
                        if isinstance(l, dict) and l.get("relation") == "next" and isinstance(l.get("url"), str)),
                       None)
            if not nxt:
                break
            if nxt in seen_urls:
                break  # a server that links a page to itself: what we have is complete
            if pages >= int(self.settings["max_pages"]):
                raise FhirFetchError(f"the search has more than {self.settings['max_pages']} pages")
            if not under_base(nxt, base):
                raise FhirFetchError("a paging link points outside the fhirServer; it was not followed")
            seen_urls.add(nxt)
            current = self._get_json(base, token, nxt, deadline)
            if current.get("resourceType") != "Bundle":
                raise FhirFetchError("a paging link did not return a Bundle")
            entries.extend(current.get("entry") or [])
            pages += 1
        merged = dict(bundle)
        merged["entry"] = entries
        merged.pop("link", None)
        return merged

    def _get_json(self, base: str, token: str | None, url: str, deadline: float) -> dict:
        headers = {"Accept": FHIR_JSON}
        per_call = float(self.settings["timeout_seconds"])
        cap = int(self.settings["max_response_bytes"])
        for _ in range(MAX_REDIRECTS + 1):
            if not same_origin(url, base):
                raise FhirFetchError("a redirect or link pointed to another host; it was not followed")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise FhirFetchError("the FHIR time budget was used up")
            timeout = min(per_call, remaining)
            try:
                resp = self._session().get(url, headers=headers, timeout=(timeout, timeout),
                                           stream=True, allow_redirects=False)
            except requests.Timeout:
                raise FhirFetchError("the FHIR server did not answer in time") from None
            except requests.RequestException as exc:
                raise FhirFetchError(f"the FHIR server could not be reached ({type(exc).__name__})") from None
            with resp:
                if resp.status_code in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                    url = urljoin(url, resp.headers["Location"])
                    continue
                body = self._read_capped(resp, cap, deadline)
                if resp.status_code != 200:
                    raise FhirFetchError(f"the FHIR server answered HTTP {resp.status_code}")
            try:
                data = json.loads(body)
            except (ValueError, UnicodeDecodeError):
                raise FhirFetchError("the FHIR server answered with something that is not JSON") from None
            if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
                raise FhirFetchError("the FHIR server answered with JSON that is not a FHIR resource")
            if data["resourceType"] == "OperationOutcome":
                raise FhirFetchError("the FHIR server answered with an OperationOutcome")
            return data
        raise FhirFetchError("too many redirects")

    @staticmethod
    def _read_capped(resp: requests.Response, cap: int, deadline: float) -> bytes:
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > cap:
            raise FhirFetchError(f"the FHIR response is larger than {cap} bytes")
        chunks, size = [], 0
        try:
            # read1 returns whatever one socket read brings, so a server that drips bytes slowly
            # is caught by the deadline check instead of blocking until a full chunk arrives.
            while chunk := resp.raw.read1(65536, decode_content=True):
                size += len(chunk)
                if size > cap:
                    raise FhirFetchError(f"the FHIR response is larger than {cap} bytes")
                if time.monotonic() > deadline:
                    raise FhirFetchError("the FHIR server was too slow sending its answer")
                chunks.append(chunk)
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            raise FhirFetchError("the FHIR server connection failed while reading") from None
        return b"".join(chunks)
