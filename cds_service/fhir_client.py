"""Reads from the EHR's FHIR server when prefetch is missing: pooled sessions, concurrent
searches, `next` paging under the fhirServer's base, a per-call timeout, one deadline for all
fetches of a hook request (reads included), a byte cap on every response and a byte allowance
per worker, and no connection to a non-public address unless configured.

The access token is sent only under the fhirServer's base path and is never logged or echoed.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Callable, Mapping
from urllib.parse import urljoin, urlsplit

import orjson
import requests
import urllib3
from requests.adapters import HTTPAdapter

log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
MAX_REDIRECTS = 3
UNAVAILABLE = "FHIR server unavailable"


class FhirFetchError(Exception):
    """A fetch failed. What the EHR sees is the same for every cause, so that the service cannot be
    used to tell "answered 404" from "could not be reached" (a port scanner); `reason` is for the
    log (no token, no PHI)."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(UNAVAILABLE)


class NotAwaited(FhirFetchError):
    """A fetch left behind because the request's answer was already known."""


class ByteAllowance:
    """Bytes of FHIR responses one worker process holds at a time, all its requests together
    (fhir.max_total_bytes). A parsed Bundle takes about five times its size in memory, so this,
    not a per-request cap alone, is what bounds a worker's memory when FHIR servers answer with
    huge Bundles to several requests at once."""

    def __init__(self, total: int) -> None:
        self.left = int(total)
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        with self._lock:
            if size > self.left:
                return False
            self.left -= size
            return True

    def give(self, size: int) -> None:
        with self._lock:
            self.left += size


class FetchBudget:
    """One hook request's allowance for all its fetches together: a deadline (including reading the
    bodies) and bytes drawn from the worker's allowance, held until release() (when the request's
    data is dropped). `cancel()` stops the fetches still running once the answer is known."""

    def __init__(self, seconds: float, allowance: ByteAllowance) -> None:
        self.deadline = time.monotonic() + seconds
        self._allowance = allowance
        self._held = 0
        self._lock = threading.Lock()
        self.cancelled = False

    def take(self, size: int) -> None:
        if self.cancelled:
            raise FhirFetchError("cancelled: the request already has its answer")
        if not self._allowance.take(size):
            raise FhirFetchError("over fhir.max_total_bytes (this request, or this worker's requests together)")
        with self._lock:
            self._held += size

    def check(self, declared: int) -> None:
        if self.cancelled:
            raise FhirFetchError("cancelled: the request already has its answer")
        if declared > self._allowance.left:
            raise FhirFetchError("the response would exceed fhir.max_total_bytes")

    def cancel(self) -> None:
        self.cancelled = True

    def release(self) -> None:
        with self._lock:
            held, self._held = self._held, 0
        self._allowance.give(held)


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


def under_base(url: str, base: str) -> bool:
    """Same origin and inside the base path: the access token goes nowhere else on that host."""
    root = urlsplit(base).path.rstrip("/")
    path = urlsplit(url).path
    return same_origin(url, base) and (path == root or path.startswith(root + "/"))


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


_RESOLVED: dict[str, tuple[float, bool]] = {}  # host -> (until, private): one lookup a minute per host
RESOLVED_SECONDS = 60


def resolves_to_private(url: str) -> bool:
    """True when the URL's host is, or resolves to (any of its addresses), a loopback, private,
    link-local or otherwise non-public address. A name that does not resolve is left to the fetch."""
    host = urlsplit(url).hostname or ""
    try:
        return is_private_address(host)
    except ValueError:
        pass  # a name, not an address literal
    now = time.monotonic()
    cached = _RESOLVED.get(host)
    if cached and cached[0] > now:
        return cached[1]
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    private = any(is_private_address(str(info[4][0])) for info in infos)
    if len(_RESOLVED) > 1000:
        _RESOLVED.clear()
    _RESOLVED[host] = (now + RESOLVED_SECONDS, private)
    return private


class _PublicOnly:
    """Checks the address a connection actually reached: the check at request time resolved the
    name once, and DNS may answer differently a moment later (rebinding)."""

    def _new_conn(self):
        sock = super()._new_conn()
        try:
            private = is_private_address(sock.getpeername()[0])
        except (OSError, ValueError):
            private = True
        if private:
            sock.close()
            raise urllib3.exceptions.NewConnectionError(self, "the address reached is not a public one")
        return sock


class _PublicOnlyHTTPConnection(_PublicOnly, urllib3.connection.HTTPConnection):
    pass


class _PublicOnlyHTTPSConnection(_PublicOnly, urllib3.connection.HTTPSConnection):
    pass


class _PublicOnlyHTTPPool(urllib3.HTTPConnectionPool):
    ConnectionCls = _PublicOnlyHTTPConnection


class _PublicOnlyHTTPSPool(urllib3.HTTPSConnectionPool):
    ConnectionCls = _PublicOnlyHTTPSConnection


class PublicOnlyAdapter(HTTPAdapter):
    """An HTTPAdapter whose connections refuse loopback, private and link-local peers."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _PublicOnlyHTTPPool, "https": _PublicOnlyHTTPSPool}


def read_capped(resp: requests.Response, cap: int, deadline: float,
                budget: FetchBudget | None = None) -> bytearray:
    """The body, refused as soon as it is (or says it will be) larger than `cap` or the budget's
    bytes, or is still arriving at the deadline."""
    declared = resp.headers.get("Content-Length")
    if declared and declared.isdigit():
        if int(declared) > cap:
            raise FhirFetchError(f"the response is larger than {cap} bytes")
        if budget is not None:
            budget.check(int(declared))
    body = bytearray()
    try:
        # read1 returns whatever one socket read brings, so a server that drips bytes slowly
        # is caught by the deadline check instead of blocking until a full chunk arrives.
        while chunk := resp.raw.read1(65536, decode_content=True):
            body += chunk
            if len(body) > cap:
                raise FhirFetchError(f"the response is larger than {cap} bytes")
            if budget is not None:
                budget.take(len(chunk))
            if time.monotonic() > deadline:
                raise FhirFetchError("the server was too slow sending its answer")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
        body.clear()
        raise FhirFetchError("the connection failed while reading") from None
    except FhirFetchError:
        body.clear()  # the error's traceback keeps this frame alive, and with it the buffer
        raise
    return body


def _capture(job: Callable[[], dict]) -> dict | FhirFetchError:
    try:
        return job()
    except FhirFetchError as exc:
        return exc
    except Exception as exc:  # never let a fetch bug become a 500; the log names the type only
        log.error("unexpected error while fetching FHIR data: %s", type(exc).__name__)
        return FhirFetchError(f"unexpected {type(exc).__name__}")


class FhirClient:
    def __init__(self, fhir_settings) -> None:
        self.settings = fhir_settings  # config.FhirSettings
        self._local = threading.local()
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._allowance = ByteAllowance(int(self.settings.max_total_bytes))

    # A session per thread: requests.Session is not documented as thread-safe; each keeps its own
    # connection pool alive across requests, so connections are still reused.
    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False  # proxies come from configuration only
            s = self.settings
            # The same rule as the request-time check (http._check_fhir_server), enforced again on
            # every connection. Not through a proxy, which makes the connections itself.
            public_only = s.allowed_servers is None and not s.allow_private_networks and not s.proxy
            adapter = (PublicOnlyAdapter if public_only else HTTPAdapter)(pool_connections=4, pool_maxsize=8,
                                                                          max_retries=0)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            if s.ca_bundle:
                session.verify = s.ca_bundle
            if s.client_cert:
                session.cert = (s.client_cert, s.client_key) if s.client_key else s.client_cert
            if s.proxy:
                session.proxies = {"http": s.proxy, "https": s.proxy}
            self._local.session = session
        return session

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=int(self.settings.max_workers),
                                                    thread_name_prefix="fhir-fetch")
            return self._executor

    # -- public ----------------------------------------------------------------------------
    def budget(self) -> FetchBudget:
        """A new request's time and byte budget; release() it when its data is dropped."""
        return FetchBudget(float(self.settings.total_budget_seconds), self._allowance)

    def run_all(self, jobs: Mapping[str, Callable[[], dict]], budget: FetchBudget,
                required: frozenset[str] = frozenset()) -> dict[str, dict | FhirFetchError]:
        """Run fetch jobs concurrently; each result is a resource or the FhirFetchError it raised.

        Always through the pool: the request thread then waits no longer than the deadline,
        whatever a misbehaving server does to a worker's socket. As soon as a required key has
        failed the answer is known (412): the others are cancelled, not waited for.
        """
        futures = {self._pool().submit(_capture, job): key for key, job in jobs.items()}
        results: dict[str, dict | FhirFetchError] = {}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, timeout=max(0.0, budget.deadline - time.monotonic()) + 0.05,
                                 return_when=FIRST_COMPLETED)
            if not done:
                break  # the workers left are still waiting on the server
            for fut in done:
                results[futures[fut]] = fut.result()
            if any(isinstance(results[futures[f]], FhirFetchError) and futures[f] in required for f in done):
                budget.cancel()
                break
        for fut in pending:
            results[futures[fut]] = (NotAwaited("a required key already failed") if budget.cancelled
                                     else FhirFetchError("the FHIR server did not answer within the time budget"))
        return results

    def read(self, base: str, token: str | None, relative: str, budget: FetchBudget) -> dict:
        """GET one resource or search (relative to base); Bundle pages are merged into one."""
        url = urljoin(base.rstrip("/") + "/", relative)
        resource = self._get_json(base, token, url, budget)
        if resource.get("resourceType") == "Bundle":
            resource = self._follow_pages(base, token, resource, budget, pages=1)
        return resource

    def continue_bundle(self, base: str, token: str | None, bundle: dict, budget: FetchBudget) -> dict:
        """Follow the `next` links of a Bundle the EHR prefetched only in part."""
        return self._follow_pages(base, token, bundle, budget, pages=1)

    # -- internals -------------------------------------------------------------------------
    def _follow_pages(self, base, token, bundle: dict, budget: FetchBudget, pages: int) -> dict:
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
            if pages >= int(self.settings.max_pages):
                raise FhirFetchError(f"the search has more than {self.settings.max_pages} pages")
            if not under_base(nxt, base):
                raise FhirFetchError("a paging link points outside the fhirServer base; it was not followed")
            seen_urls.add(nxt)
            current = self._get_json(base, token, nxt, budget)
            if current.get("resourceType") != "Bundle":
                raise FhirFetchError("a paging link did not return a Bundle")
            entries.extend(current.get("entry") or [])
            pages += 1
        merged = dict(bundle)
        merged["entry"] = entries
        merged.pop("link", None)
        return merged

    def _get_json(self, base: str, token: str | None, url: str, budget: FetchBudget) -> dict:
        headers = {"Accept": FHIR_JSON}
        per_call = float(self.settings.timeout_seconds)
        cap = int(self.settings.max_response_bytes)
        for _ in range(MAX_REDIRECTS + 1):
            if not under_base(url, base):
                raise FhirFetchError("a redirect pointed outside the fhirServer base; it was not followed")
            if token:
                headers["Authorization"] = f"Bearer {token}"
            remaining = budget.deadline - time.monotonic()
            if remaining <= 0:
                raise FhirFetchError("the FHIR time budget was used up")
            if budget.cancelled:
                raise FhirFetchError("cancelled: the request already has its answer")
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
                if resp.status_code != 200:
                    raise FhirFetchError(f"the FHIR server answered HTTP {resp.status_code}")
                body = read_capped(resp, cap, budget.deadline, budget)
            try:
                data = orjson.loads(body)
            except orjson.JSONDecodeError:
                raise FhirFetchError("the FHIR server answered with something that is not JSON") from None
            del body
            if not isinstance(data, dict) or not isinstance(data.get("resourceType"), str):
                raise FhirFetchError("the FHIR server answered with JSON that is not a FHIR resource")
            if data["resourceType"] == "OperationOutcome":
                raise FhirFetchError("the FHIR server answered with an OperationOutcome")
            return data
        raise FhirFetchError("too many redirects")
