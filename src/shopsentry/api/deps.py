"""Dependencies the routes declare: settings, the shared services, and the caller.

``ApiKeyDep`` authenticates (401) and rate limits (429); ``AnalystDep`` / ``IngestDep``
add the role check (403). Routes name what they need in their signature and stay thin.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from shopsentry.api.consumer import StoreConsumer
from shopsentry.api.metrics import ApiMetrics
from shopsentry.api.read_model import AlertReadModel
from shopsentry.api.recent import RecentIds
from shopsentry.api.rules_state import RulesState
from shopsentry.api.security import KeyStore, Principal, RateLimiter
from shopsentry.bus.base import EventLog, Producer
from shopsentry.config import Settings


@dataclass
class Services:
    """Everything a request may touch, built once by :func:`shopsentry.api.app.create_app`."""

    settings: Settings
    log: EventLog
    keys: KeyStore
    store: AlertReadModel
    limiter: RateLimiter
    metrics: ApiMetrics
    recent_ids: RecentIds  # event ids ingest wrote lately (guarded by produce_lock)
    consumer: StoreConsumer | None = None
    rules: RulesState | None = None  # the control topic's follower and the audit
    owns_log: bool = False

    _producer: Producer | None = None
    # One producer shared by request threads; send+flush happen under this lock so a
    # request's flush covers exactly its own records.
    produce_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = self.log.producer()
        return self._producer

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.stop()
        if self.rules is not None:
            self.rules.close()
        if self._producer is not None:
            self._producer.close()
        self.store.close()
        self.keys.close()
        if self.owns_log:
            self.log.close()


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def get_settings(services: Annotated[Services, Depends(get_services)]) -> Settings:
    return services.settings


ServicesDep = Annotated[Services, Depends(get_services)]
SettingsDep = Annotated[Settings, Depends(get_settings)]

_api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="ssk_<id>_<secret>")
_bearer = HTTPBearer(auto_error=False, description="The same key as a bearer token.")


def authenticate(
    request: Request,
    services: ServicesDep,
    header_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    token = header_key or (bearer.credentials if bearer else None)
    if not token:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing API key: send it in the X-API-Key header",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = services.keys.authenticate(token)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, "invalid API key", headers={"WWW-Authenticate": "Bearer"}
        )
    wait = services.limiter.acquire(principal.key_id)
    if wait > 0:
        raise HTTPException(
            status.HTTP_429_TOO_MANY_REQUESTS,
            f"rate limit of {services.settings.api.rate_limit_per_minute} requests"
            " per minute exceeded",
            headers={"Retry-After": str(max(1, math.ceil(wait)))},
        )
    request.state.principal = principal
    return principal


ApiKeyDep = Annotated[Principal, Depends(authenticate)]


def require_role(*roles: str) -> Callable[[Principal], Principal]:
    """A dependency that admits only keys with one of ``roles``."""

    def check(principal: ApiKeyDep) -> Principal:
        if principal.role not in roles:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"the {principal.role} role may not do this (needs {' or '.join(roles)})",
            )
        return principal

    return check


AnalystDep = Annotated[Principal, Depends(require_role("analyst", "admin"))]
IngestDep = Annotated[Principal, Depends(require_role("ingest", "admin"))]
AdminDep = Annotated[Principal, Depends(require_role("admin"))]
