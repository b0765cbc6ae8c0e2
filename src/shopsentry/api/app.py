"""The FastAPI application factory.

:func:`create_app` builds everything a request needs up front (key store, alert store,
log), so a misconfiguration (demo keys outside demo mode) fails at start, not at the
first request. The background store consumer starts with the app's lifespan and stops
with it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shopsentry import __version__
from shopsentry.api import alerts, analytics, dashboard, events, health, openapi, quality, rules
from shopsentry.api.consumer import StoreConsumer, store_topics
from shopsentry.api.deps import Services
from shopsentry.api.metrics import ApiMetrics
from shopsentry.api.read_model import AlertReadModel
from shopsentry.api.recent import RecentIds
from shopsentry.api.rules_state import RulesState
from shopsentry.api.security import IssuedKey, KeyStore, RateLimiter, assert_safe_keys
from shopsentry.bus.base import EventLog
from shopsentry.config import Settings
from shopsentry.monitoring.metrics import dag_runs_path
from shopsentry.rules.audit import SqliteAudit

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"


def api_dir(settings: Settings) -> Path:
    """Where the service keeps its keys and alert store."""
    return settings.data_dir / "api"


def open_keys(settings: Settings) -> KeyStore:
    return KeyStore(api_dir(settings) / "keys.db")


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """413 for a body over ``max_bytes``: by Content-Length up front, and by counting
    the bytes as they stream in (a chunked or lying client cannot get around it)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._reject(send)
            return
        seen = 0
        over = False
        started = False

        async def counting_receive() -> Message:
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def tracking_send(message: Message) -> None:
            # A route that reads the body may turn the overflow into its own error
            # (FastAPI answers 400 for a body it could not read): once the limit is
            # passed, whatever the app answers is replaced by the 413.
            nonlocal started
            if over:
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._reject(send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge:
            if not started:
                await self._reject(send)

    async def _reject(self, send: Send) -> None:
        response = JSONResponse(
            {"detail": f"request body larger than {self.max_bytes} bytes", "errors": []},
            status_code=413,
        )
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


class MetricsMiddleware:
    """Counts and times every request by its route template."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        code = 500

        async def recording_send(message: Message) -> None:
            nonlocal code
            if message["type"] == "http.response.start":
                code = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = (
                getattr(route, "path_format", None) or getattr(route, "path", None) or "unmatched"
            )
            method = scope.get("method", "")
            self.metrics.requests.labels(template, method, str(code)).inc()
            self.metrics.latency.labels(template, method).observe(time.perf_counter() - start)


class SecurityHeadersMiddleware:
    """Headers every response carries: no MIME sniffing, no framing, no referrer leak."""

    HEADERS = (
        (b"x-content-type-options", b"nosniff"),
        (b"x-frame-options", b"DENY"),
        (b"referrer-policy", b"no-referrer"),
    )

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *self.HEADERS]
            await send(message)

        await self.app(scope, receive, with_headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    """422 with one ``{field, reason}`` per problem, the same shape as invalid events."""
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path", "header")]
        reason = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        errors.append({"field": ".".join(loc) or "(request)", "reason": reason})
    first = errors[0] if errors else {"field": "(request)", "reason": "invalid"}
    return JSONResponse(
        {"detail": f"invalid request: {first['field']}: {first['reason']}", "errors": errors},
        status_code=422,
    )


def create_app(
    settings: Settings,
    *,
    log: EventLog | None = None,
    start_consumer: bool = True,
) -> FastAPI:
    """Build the service. ``log`` lets a caller share an already open log (tests, demo).

    Raises :class:`~shopsentry.errors.ConfigError` when demo keys are active outside
    demo mode. In demo mode the demo keys are created and listed in
    ``app.state.demo_keys`` for the caller to print (never logged).
    """
    keys = open_keys(settings)
    demo_keys: list[IssuedKey] = keys.ensure_demo_keys() if settings.api.demo_mode else []
    try:
        assert_safe_keys(keys, demo_mode=settings.api.demo_mode)
    except Exception:
        keys.close()
        raise
    services = _build_services(settings, keys, log, start_consumer=start_consumer)
    app = FastAPI(
        title="shopsentry",
        version=__version__,
        description="Event ingest, fraud alerts and reviews, analytics and the live dashboard.",
        lifespan=_lifespan(services),
        docs_url=None,  # served by _add_swagger_ui from vendored assets: no CDN at run time
        redoc_url=None,
    )
    _add_swagger_ui(app)
    openapi.install(app, max_events=settings.api.max_events_per_request)
    app.state.services = services
    app.state.demo_keys = demo_keys
    app.add_exception_handler(RequestValidationError, _validation_error)
    for module in (events, alerts, analytics, quality, rules, health, dashboard):
        app.include_router(module.router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_middleware(app, settings, services.metrics)
    return app


def _build_services(
    settings: Settings,
    keys: KeyStore,
    log: EventLog | None,
    *,
    start_consumer: bool,
) -> Services:
    """Open everything a request may touch, once, so a bad setting fails at start.

    The log is opened here only when the caller did not pass one; the services then own
    it and close it with the app.
    """
    owns_log = log is None
    if log is None:
        from shopsentry.bus import BusConfig, open_log

        log = open_log(BusConfig.from_settings(settings))
    store = AlertReadModel(
        api_dir(settings) / "alerts.db",
        topics=store_topics(settings.topics),
        max_event_bytes=settings.detector.max_event_bytes,
    )
    metrics = ApiMetrics()
    consumer = (
        StoreConsumer(
            settings.topics,
            log,
            store,
            group_id=settings.api.store_group_id,
            detector_group_id=settings.detector.group_id,
        )
        if start_consumer
        else None
    )
    metrics.watch_store(store, consumer)
    metrics.watch_dag_runs(dag_runs_path(settings.state_dir))
    metrics.watch_model_ops(settings.warehouse_path)
    return Services(
        settings=settings,
        log=log,
        keys=keys,
        store=store,
        limiter=RateLimiter(settings.api.rate_limit_per_minute),
        metrics=metrics,
        consumer=consumer,
        owns_log=owns_log,
        recent_ids=RecentIds(settings.api.recent_event_ids),
        rules=RulesState(
            log, settings.topics.rules.name, SqliteAudit(api_dir(settings) / "rules_audit.db")
        ),
    )


def _lifespan(services: Services) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """The app's lifespan: the background followers run only while the app serves, and
    every service is closed when it stops."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services.consumer is not None:
            services.consumer.start()
        if services.rules is not None:
            from shopsentry.features import FEATURE_NAMES

            services.rules.start(FEATURE_NAMES)
        try:
            yield
        finally:
            services.close()

    return lifespan


def _add_swagger_ui(app: FastAPI) -> None:
    """``/docs`` from the vendored Swagger UI under ``static/``: no CDN at run time."""

    @app.get("/docs", include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json",
            title="shopsentry API",
            swagger_js_url="/static/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui.css",
            swagger_favicon_url="/static/favicon.svg",
        )


def _add_middleware(app: FastAPI, settings: Settings, metrics: ApiMetrics) -> None:
    """CORS (when origins are configured), the body limit, metrics and security headers."""
    if settings.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.api.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type"],
        )
    # The last added is outermost: the body limit wraps every route (nothing inside it
    # can read past the bound), metrics count its 413s, and every response gets headers.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.api.max_body_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.add_middleware(SecurityHeadersMiddleware)


def describe_keys(keys: list[IssuedKey]) -> list[dict[str, Any]]:
    """Rows for printing issued keys at the CLI (the only place a token is shown)."""
    return [{"role": k.role, "source": k.source or "-", "token": k.token} for k in keys]
