"""The OpenAPI document, made to say what the service does.

FastAPI documents every 422 as its own ``HTTPValidationError`` (``detail`` an array),
while this service answers every error with :class:`~shopsentry.api.models.ErrorBody`;
and ``POST /v1/events`` reads its body itself, so FastAPI cannot see its schema. This
module fixes both once, when the document is first built: 422s point at ErrorBody, and
the ingest body is the event models' own JSON Schema (one event or a bounded array).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import TypeAdapter

from shopsentry.events.schema import AnyEvent

_REF = "#/components/schemas/{model}"
_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}


def _event_schemas(max_events: int) -> dict[str, Any]:
    """Components for the ingest body: every event model, and ``IngestBody`` itself."""
    event = TypeAdapter(AnyEvent).json_schema(ref_template=_REF, mode="validation")
    components: dict[str, Any] = event.pop("$defs", {})
    components["IngestEvent"] = event
    components["IngestBody"] = {
        "description": "One event, or an array of 1 to"
        f" {max_events} events (api.max_events_per_request).",
        "oneOf": [
            {"$ref": "#/components/schemas/IngestEvent"},
            {
                "type": "array",
                "items": {"$ref": "#/components/schemas/IngestEvent"},
                "minItems": 1,
                "maxItems": max_events,
            },
        ],
    }
    return components


def install(app: FastAPI, *, max_events: int) -> None:
    """Replace ``app.openapi`` with a builder of the corrected document (cached)."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        for operations in doc.get("paths", {}).values():
            for operation in operations.values():
                unprocessable = operation.get("responses", {}).get("422")
                if unprocessable is not None:
                    unprocessable["content"] = {"application/json": {"schema": _ERROR_REF}}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        schemas.update(_event_schemas(max_events))
        app.openapi_schema = doc
        return doc

    app.openapi = build  # type: ignore[method-assign]
