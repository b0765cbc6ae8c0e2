"""The HTTP service: ingest, alerts and reviews, analytics, health, metrics, dashboard."""

from __future__ import annotations

from shopsentry.api.app import create_app

__all__ = ["create_app"]
