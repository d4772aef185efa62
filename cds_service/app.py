"""Application factory: create_app(config) wires settings, store, FHIR client and the HTTP routes."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Mapping

from flask import Flask
from flask_cors import CORS

from . import knowledge, terminology
from .config import Settings, load_settings
from .fhir_client import FhirClient
from .store import Store


@dataclass
class State:
    settings: Settings
    store: Store
    fhir: FhirClient

    def authenticate(self, request, endpoint: str) -> None:
        """EHR JWT verification; filled in by the trust issue (auth.py). Unverified for now."""


def create_app(config: Mapping | None = None) -> Flask:
    settings = load_settings(config)
    logging.basicConfig(level=settings.raw["log_level"], format="%(asctime)s %(levelname)s %(name)s %(message)s")
    # Load the knowledge base now, so the first request does not pay for it.
    terminology.load()
    knowledge.sources(), knowledge.orderables(), knowledge.override_reasons()

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = int(settings.http["max_body_bytes"])
    app.extensions["cds"] = State(settings, Store(settings.db), FhirClient(settings.fhir))
    CORS(app, origins=settings.http["cors_origins"], allow_headers=["Authorization", "Content-Type"],
         methods=["GET", "POST", "OPTIONS"], max_age=600)

    from .http import bp
    app.register_blueprint(bp)
    return app
