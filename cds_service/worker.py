"""The gunicorn worker: gthread, plus a deadline to receive each request.

gthread reads a request's line, headers and body in a pool thread with blocking reads and no
deadline, so a client sending a byte every few seconds holds a thread for as long as it likes
(slowloris); a handful of such clients blocked every valid request. Here a request must arrive
whole within `receive_seconds` (http.header_timeout_seconds): when the deadline passes, the
socket's read side is shut, the parser sees the end of the input and the thread is free. Writing
is untouched, so a slow answer still reaches its client. Production runs behind the nginx front,
which buffers whole requests; this bounds the harm when the service is exposed directly.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
import time

from gunicorn.workers.gthread import ThreadWorker

TICK_SECONDS = 0.25


def _stop_reading(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # already closed


class _Watchdog:
    """One thread per worker that cuts off connections whose deadline has passed (cheaper than a
    timer thread per request)."""

    def __init__(self) -> None:
        self._deadlines: dict[socket.socket, float] = {}
        self._lock = threading.Lock()
        threading.Thread(target=self._run, name="request-deadlines", daemon=True).start()

    def watch(self, sock: socket.socket, seconds: float) -> None:
        with self._lock:
            self._deadlines[sock] = time.monotonic() + seconds

    def forget(self, sock: socket.socket) -> None:
        with self._lock:
            self._deadlines.pop(sock, None)

    def _run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                expired = [s for s, deadline in self._deadlines.items() if deadline <= now]
                for sock in expired:
                    del self._deadlines[sock]
            for sock in expired:
                _stop_reading(sock)


M_ARENA_MAX = -8  # glibc mallopt parameter
MALLOC_ARENAS = 2


def _limit_malloc_arenas() -> None:
    """Few malloc arenas per worker. glibc gives each thread that allocates its own arena, and memory a
    request freed (a large FHIR response) stays in that thread's arena: with 4 request threads and
    8 fetch threads, a worker under 19 MB Bundles grew past 370 MB; with 2 arenas it stays near its
    resting size (bench/run.py measures it). Without glibc this does nothing."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return  # the operator chose
    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(M_ARENA_MAX, MALLOC_ARENAS)
    except (OSError, AttributeError):
        pass


class RequestDeadlineWorker(ThreadWorker):
    receive_seconds = 10.0  # set from the configuration by cli.server_options (post_worker_init)

    def init_process(self):
        _limit_malloc_arenas()  # before the worker's threads start
        self._watchdog = _Watchdog()  # in the worker process, after the fork
        super().init_process()

    def handle(self, conn):
        sock = conn.sock
        self._watchdog.watch(sock, self.receive_seconds)
        try:
            return super().handle(conn)
        finally:
            self._watchdog.forget(sock)
