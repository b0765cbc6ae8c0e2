"""Read the Prometheus text that running shopsentry services expose on ``/metrics``.

`shopsentry capacity --measure` needs counter deltas and gauge averages, not a
time-series database, so this scrapes the endpoints directly (as Prometheus itself
would) and parses them with ``prometheus_client``'s own parser: what we read is exactly
what Prometheus would store.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from shopsentry.errors import TransientError

logger = logging.getLogger(__name__)

PREFIX = "shopsentry_"

LabelSet = tuple[tuple[str, str], ...]
SampleKey = tuple[str, LabelSet]


class ScrapeFailed(TransientError):
    """A metrics endpoint did not answer with Prometheus text."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(
            f"cannot scrape {url}: {reason}", hint="is the service running with metrics enabled?"
        )
        self.url = url
        self.reason = reason


def parse_metrics(text: str) -> dict[SampleKey, float]:
    """Prometheus text → {(sample name, sorted labels): value}.

    Sample names are the exposition names (``..._total``, ``..._bucket``, ``..._sum``,
    ``..._count``), so counters and histogram parts can be looked up as written.
    """
    samples: dict[SampleKey, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return samples


@dataclass(frozen=True, slots=True)
class Scrape:
    """One endpoint's samples at one moment (``at`` is a monotonic clock reading)."""

    url: str
    at: float
    samples: Mapping[SampleKey, float] = field(default_factory=dict)

    def has(self, name: str) -> bool:
        """Whether any sample of ``name`` (full name, e.g. ``..._count``) is present."""
        name = _full(name)
        return any(key[0] == name for key in self.samples)

    def total(self, name: str, **match: str) -> float:
        """Sum of every sample of ``name`` whose labels include ``match``."""
        name = _full(name)
        wanted = set(match.items())
        return sum(
            v for (n, labels), v in self.samples.items() if n == name and wanted <= set(labels)
        )

    def by_label(self, name: str, label: str) -> dict[str, float]:
        """Samples of ``name`` summed per value of ``label``."""
        name = _full(name)
        out: dict[str, float] = {}
        for (n, labels), v in self.samples.items():
            if n != name:
                continue
            key = dict(labels).get(label)
            if key is not None:
                out[key] = out.get(key, 0.0) + v
        return out


def _full(name: str) -> str:
    return name if name.startswith(PREFIX) else PREFIX + name


def scrape(url: str, *, client: httpx.Client | None = None, timeout: float = 5.0) -> Scrape:
    """Fetch and parse one endpoint; raise :class:`ScrapeFailed` with the cause."""
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        response = http.get(url, headers={"Accept": "text/plain; version=0.0.4"})
        at = time.monotonic()
    except httpx.HTTPError as exc:
        raise ScrapeFailed(url, type(exc).__name__ + (f": {exc}" if str(exc) else "")) from None
    finally:
        if own:
            http.close()
    if response.status_code != 200:
        raise ScrapeFailed(url, f"HTTP {response.status_code}")
    try:
        samples = parse_metrics(response.text)
    except ValueError as exc:
        raise ScrapeFailed(url, f"not Prometheus text ({exc})") from None
    return Scrape(url=url, at=at, samples=samples)


def scrape_all(
    urls: Iterable[str], *, client: httpx.Client | None = None, timeout: float = 5.0
) -> tuple[list[Scrape], dict[str, str]]:
    """Scrape each URL; return what answered and {url: reason} for what did not."""
    ok: list[Scrape] = []
    failed: dict[str, str] = {}
    for url in urls:
        try:
            ok.append(scrape(url, client=client, timeout=timeout))
        except ScrapeFailed as exc:
            logger.warning("%s", exc.one_line())
            failed[url] = exc.reason
    return ok, failed
