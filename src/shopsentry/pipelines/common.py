"""What every batch job shares: the interval it covers and how it reports progress.

Jobs are plain functions ``job(settings, interval, ...)`` so the CLI, Airflow tasks and
tests call the same code. An interval is half-open, ``[start, end)``, in UTC, like an
Airflow data interval; a job rerun for the same interval must give the same result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from shopsentry.errors import ConfigError

# (step name, done, total or None) — the CLI draws a rich progress bar from it.
Progress = Callable[[str, int, int | None], None]


def no_progress(step: str, done: int, total: int | None) -> None:
    """The progress callback used when nobody is watching."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A half-open UTC time range ``[start, end)``."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ConfigError("interval bounds must be timezone-aware", hint="pass UTC datetimes")
        if self.end <= self.start:
            raise ConfigError(f"interval end {self.end} is not after its start {self.start}")

    @classmethod
    def hour_of(cls, at: datetime) -> Interval:
        """The whole UTC hour containing ``at``."""
        at = at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        return cls(at, at + timedelta(hours=1))

    @classmethod
    def previous_hour(cls, now: datetime | None = None) -> Interval:
        """The last complete hour, what an @hourly schedule processes."""
        return cls.hour_of((now or datetime.now(UTC)) - timedelta(hours=1))

    @classmethod
    def day(cls, day: date) -> Interval:
        start = datetime.combine(day, time(0), tzinfo=UTC)
        return cls(start, start + timedelta(days=1))

    @property
    def start_naive(self) -> datetime:
        """Start as naive UTC, how the warehouse stores timestamps (TIMESTAMP_NTZ)."""
        return self.start.astimezone(UTC).replace(tzinfo=None)

    @property
    def end_naive(self) -> datetime:
        return self.end.astimezone(UTC).replace(tzinfo=None)

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


def parse_day(text: str) -> date:
    """'2026-11-24' → date; a clear error otherwise."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"bad date {text!r}", hint="write it as YYYY-MM-DD") from None


def parse_instant(text: str) -> datetime:
    """An ISO date or datetime, read as UTC when it carries no offset."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"bad date/time {text!r}", hint="write it as YYYY-MM-DD or YYYY-MM-DDTHH:MM"
        ) from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
