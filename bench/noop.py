"""The benchmark's baseline: a Flask endpoint that only parses the JSON body (with the same parser
as the service) and answers {"cards": []}, served by the service's own gunicorn configuration."""

from __future__ import annotations

import argparse
import os

import orjson
from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication

from cds_service.cli import server_options

app = Flask(__name__)


@app.post("/cds-services/<service_id>")
def noop(service_id):
    orjson.loads(request.get_data())
    return Response(b'{"cards":[]}', mimetype="application/json")


@app.get("/healthz")
def healthz():
    return Response(b'{"status":"ok"}', mimetype="application/json")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--threads", type=int, default=4)
    args = p.parse_args()

    class Server(BaseApplication):
        def load_config(self):
            for key, value in server_options("127.0.0.1", args.port, args.workers, args.threads).items():
                self.cfg.set(key, value)

        def load(self):
            return app

    Server().run()


if __name__ == "__main__":
    main()
