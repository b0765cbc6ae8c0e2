"""API keys: issued once, stored hashed, checked in constant time, rate limited.

A key looks like ``ssk_<key_id>_<secret>``. Only ``key_id`` (a public handle, used to
find the row) and ``sha256(secret)`` are stored, so a copy of the keys database does
not let anyone call the API. sha256 is enough here: the secrets are 32 random bytes,
not passwords a person chose, so a slow hash would add latency without adding safety.
The digest comparison uses :func:`hmac.compare_digest` so the time taken does not tell
an attacker how many leading characters were right; an unknown ``key_id`` is compared
against a dummy digest for the same reason.

Demo keys are well known (printed by ``shopsentry serve --demo``) and flagged in the
table; :func:`assert_safe_keys` makes the service refuse to start with them outside
demo mode.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, get_args

from shopsentry.errors import ConfigError, TerminalError

logger = logging.getLogger(__name__)

Role = Literal["ingest", "analyst", "admin"]
KeySource = Literal["web", "mobile", "pos"]
ROLES: tuple[str, ...] = get_args(Role)
SOURCES: tuple[str, ...] = get_args(KeySource)

_PREFIX = "ssk_"
# A review names its reviewer by the key's name, and a review's reviewer is at most
# this long (events.schema.Review).
MAX_KEY_NAME = 128
_DUMMY_DIGEST = hashlib.sha256(b"shopsentry-no-such-key").hexdigest()

# Well-known demo keys: (key_id, secret, role, source). Anyone reading this file knows
# them, which is why the service refuses to run with them outside demo mode.
DEMO_KEYS: tuple[tuple[str, str, Role, KeySource | None], ...] = (
    ("demoweb", "demo-web-ingest-key", "ingest", "web"),
    ("demomob", "demo-mobile-ingest-key", "ingest", "mobile"),
    ("demopos", "demo-pos-ingest-key", "ingest", "pos"),
    ("demoana", "demo-analyst-key", "analyst", None),
    ("demoadm", "demo-admin-key", "admin", None),
)


class InvalidKeyRequest(TerminalError):
    """An API key cannot be created as asked (unknown role, source on a non-ingest key)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's handle, role and (for ingest keys) the source it speaks for."""

    key_id: str
    role: Role
    source: KeySource | None
    name: str

    def may_send(self, source: str) -> bool:
        """Ingest keys speak for one source; admin keys for any."""
        return self.role == "admin" or (self.role == "ingest" and self.source == source)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created key: ``token`` is shown once and never stored."""

    key_id: str
    token: str
    role: Role
    source: KeySource | None
    demo: bool


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def format_token(key_id: str, secret: str) -> str:
    return f"{_PREFIX}{key_id}_{secret}"


def parse_token(token: str) -> tuple[str, str] | None:
    """Split ``ssk_<key_id>_<secret>``; None when the shape is wrong."""
    if not token.startswith(_PREFIX) or len(token) > 256:
        return None
    key_id, sep, secret = token[len(_PREFIX) :].partition("_")
    if not sep or not key_id or not secret:
        return None
    return key_id, secret


def demo_keys() -> list[IssuedKey]:
    """The well-known demo keys, for printing beside the dashboard's address (they are
    constants: no key store is opened). Rows for a table: ``app.describe_keys(...)``."""
    return [
        IssuedKey(key_id, format_token(key_id, secret), role, source, demo=True)
        for key_id, secret, role, source in DEMO_KEYS
    ]


class KeyStore:
    """The keys table in a small SQLite file under the data dir."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("pragma journal_mode=wal")
        self._db.execute(
            """
            create table if not exists api_keys (
                key_id text primary key,
                digest text not null,
                role text not null,
                source text,
                name text not null,
                demo integer not null default 0,
                created_at text not null,
                revoked_at text
            )
            """
        )

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("begin immediate")
            try:
                yield self._db
            except BaseException:
                self._db.execute("rollback")
                raise
            self._db.execute("commit")

    def create(self, role: str, source: str | None = None, *, name: str = "") -> IssuedKey:
        """Issue a new random key; the returned token is the only copy of the secret."""
        if role not in ROLES:
            raise InvalidKeyRequest(f"unknown role {role!r}", hint=f"use one of {', '.join(ROLES)}")
        if role == "ingest" and source not in SOURCES:
            raise InvalidKeyRequest(
                "an ingest key needs a source", hint=f"pass --source {'|'.join(SOURCES)}"
            )
        if role != "ingest" and source is not None:
            raise InvalidKeyRequest(f"{role} keys have no source", hint="drop --source")
        if len(name) > MAX_KEY_NAME:
            raise InvalidKeyRequest(
                f"a key name has at most {MAX_KEY_NAME} characters (this one has {len(name)})",
                hint="pass a shorter --name",
            )
        key_id = secrets.token_hex(6)
        secret = secrets.token_urlsafe(32)
        self._insert(key_id, secret, role, source, name or f"{role}-{source or 'any'}", demo=False)
        logger.info("created API key %s (role=%s, source=%s)", key_id, role, source)
        return IssuedKey(key_id, format_token(key_id, secret), role, source, demo=False)  # type: ignore[arg-type]

    def ensure_demo_keys(self) -> list[IssuedKey]:
        """Create the well-known demo keys (idempotent) and return them for printing."""
        for key_id, secret, role, source in DEMO_KEYS:
            self._insert(
                key_id,
                secret,
                role,
                source,
                f"demo-{role}-{source or 'any'}",
                demo=True,
                replace=True,
            )
        return demo_keys()

    def _insert(
        self,
        key_id: str,
        secret: str,
        role: str,
        source: str | None,
        name: str,
        *,
        demo: bool,
        replace: bool = False,
    ) -> None:
        verb = "insert or replace" if replace else "insert"
        with self._tx() as db:
            db.execute(
                f"{verb} into api_keys"
                " (key_id, digest, role, source, name, demo, created_at, revoked_at)"
                " values (?, ?, ?, ?, ?, ?, ?, null)",
                (
                    key_id,
                    _digest(secret),
                    role,
                    source,
                    name,
                    int(demo),
                    datetime.now(UTC).isoformat(),
                ),
            )

    def revoke(self, key_id: str) -> bool:
        with self._tx() as db:
            cur = db.execute(
                "update api_keys set revoked_at = ? where key_id = ? and revoked_at is null",
                (datetime.now(UTC).isoformat(), key_id),
            )
            return cur.rowcount > 0

    def revoke_demo_keys(self) -> int:
        with self._tx() as db:
            cur = db.execute(
                "update api_keys set revoked_at = ? where demo = 1 and revoked_at is null",
                (datetime.now(UTC).isoformat(),),
            )
            return cur.rowcount

    def list(self) -> list[dict[str, object]]:
        """Every key's public data (never the digest)."""
        with self._lock:
            rows = self._db.execute(
                "select key_id, role, source, name, demo, created_at, revoked_at"
                " from api_keys order by created_at"
            ).fetchall()
        cols = ("key_id", "role", "source", "name", "demo", "created_at", "revoked_at")
        return [dict(zip(cols, row, strict=True)) for row in rows]

    def active_demo_keys(self) -> int:
        with self._lock:
            (count,) = self._db.execute(
                "select count(*) from api_keys where demo = 1 and revoked_at is null"
            ).fetchone()
        return int(count)

    def authenticate(self, token: str) -> Principal | None:
        """The principal for ``token``, or None. Constant time in the secret."""
        parsed = parse_token(token)
        key_id, secret = parsed if parsed else ("", token)
        with self._lock:
            row = self._db.execute(
                "select digest, role, source, name from api_keys"
                " where key_id = ? and revoked_at is null",
                (key_id,),
            ).fetchone()
        expected = row[0] if row else _DUMMY_DIGEST
        matches = hmac.compare_digest(_digest(secret).encode(), expected.encode())
        if row is None or not matches:
            return None
        return Principal(key_id=key_id, role=row[1], source=row[2], name=row[3])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def assert_safe_keys(keys: KeyStore, *, demo_mode: bool) -> None:
    """Refuse to serve with well-known keys unless this is explicitly a demo."""
    if demo_mode:
        return
    if keys.active_demo_keys():
        raise ConfigError(
            "refusing to start: the well-known demo API keys are active outside demo mode",
            hint="run `shopsentry apikeys revoke --demo` and create real keys with"
            " `shopsentry apikeys create`,"
            " or start with --demo",
        )


class RateLimiter:
    """One token bucket per key: ``per_minute`` requests, refilled continuously.

    Bursts up to a minute's allowance pass; past it the caller is told how long to wait.
    """

    def __init__(self, per_minute: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.capacity = float(per_minute)
        self.rate = per_minute / 60.0
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def acquire(self, key_id: str, cost: float = 1.0) -> float:
        """Take ``cost`` tokens; return 0 if allowed, else seconds until it would be."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(key_id, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= cost:
                self._buckets[key_id] = (tokens - cost, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (cost - tokens) / self.rate
