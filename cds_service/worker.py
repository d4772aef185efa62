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

import socket
import threading

from gunicorn.workers.gthread import ThreadWorker


def _stop_reading(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RD)
    except OSError:
        pass  # already closed


class RequestDeadlineWorker(ThreadWorker):
    receive_seconds = 10.0  # set from the configuration by cli.server_options (post_worker_init)

    def handle(self, conn):
        timer = threading.Timer(self.receive_seconds, _stop_reading, (conn.sock,))
        timer.daemon = True
        timer.start()
        try:
            return super().handle(conn)
        finally:
            timer.cancel()
