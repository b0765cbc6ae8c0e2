"""The simulator: population → legitimate sessions + fraud incidents → sorted events,
rendered to the exact JSON bytes :func:`shopsentry.events.codec.encode` would produce,
plus the out-of-band labels.

JSON is rendered straight from the columns with orjson (no pydantic objects on the way),
because a month of 20,000 users is about two million events; :meth:`Simulator.events`
still gives validated pydantic models for callers that want them.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, cast

import numpy as np
import orjson

from shopsentry.events.codec import decode
from shopsentry.events.schema import AnyEvent, Label, Source
from shopsentry.simulator.config import (
    CATEGORIES,
    COUNTRY_CODES,
    DAY_US,
    EVENT_TYPES,
    FAILED_REASONS,
    HOUR_US,
    LEGIT_CASES,
    PAGES,
    PAYMENT_METHODS,
    PURCHASE,
    QUERIES,
    SOURCES,
    TAG_NAMES,
    US,
    SimulatorConfig,
)
from shopsentry.simulator.frame import Frame
from shopsentry.simulator.life_events import life_event_markers
from shopsentry.simulator.population import Population, build_population
from shopsentry.simulator.rings import TERMINAL_SHARE, compromise_terminals
from shopsentry.simulator.scenarios import fraud_incidents
from shopsentry.simulator.traffic import legit_sessions

logger = logging.getLogger(__name__)


LabelSource = Literal["chargeback", "review", "simulator"]


class RenderedEvent(NamedTuple):
    """One event as the log and the events table carry it."""

    event_id: str
    event_type: str
    user_id: str
    source: str
    ts_us: int
    raw: bytes

    @property
    def is_purchase(self) -> bool:
        return self.event_type == "purchase"


def _hex(prefix: str, value: int) -> str | None:
    return None if value < 0 else f"{prefix}{value:016x}"


def _behaviour_fields(head: dict[str, Any], kind: str, i: int, lists: dict[str, list[Any]]) -> None:
    """Add the fields of behaviour event ``i`` (of type ``kind``) to ``head``, in the
    order the codec writes them; ``lists`` are the frame's columns as Python lists."""
    head["event_type"] = kind
    aux = lists["aux"][i]
    if kind == "page_view":
        page = PAGES[aux % len(PAGES)]
        head["page"] = page.format(n=aux, cat=CATEGORIES[aux % len(CATEGORIES)])
    elif kind == "search":
        head["query"] = QUERIES[aux % len(QUERIES)]
    elif kind == "add_to_cart":
        head.update(product_id=f"p-{aux:05d}", quantity=lists["qty"][i], price=lists["amount"][i])
    elif kind == "failed_login":
        head["reason"] = FAILED_REASONS[aux]
    elif kind == "address_change":
        head.update(
            address_kind="shipping" if aux else "billing",
            new_country=COUNTRY_CODES[lists["shipping"][i]],
        )
    elif kind == "payment_method_added":
        head.update(
            payment_method=PAYMENT_METHODS[lists["pm"][i]],
            card_fingerprint=_hex("card-", lists["card"][i]),
        )


class Simulator:
    """Generates one run (``config``) lazily on first use; everything is deterministic
    in ``config`` (seed included)."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._frame: Frame | None = None
        self._pop: Population | None = None
        self._n_accounts = 0
        self._event_ids: list[str] | None = None
        self._order_ids: dict[int, str] = {}

    # -- generation ------------------------------------------------------------------------
    def _build(self) -> Frame:
        if self._frame is not None:
            return self._frame
        cfg = self.config
        seed = cfg.seed & 0xFFFF_FFFF_FFFF
        pop = build_population(cfg, np.random.default_rng([seed, 1]))
        window = cfg.start_us & 0xFFFF_FFFF_FFFF
        rng = np.random.default_rng([seed, 2, window])
        target = None
        if cfg.events_per_hour is not None:
            # Fraud sessions add about half an event per purchase-share point: leave room.
            target = round(
                cfg.events_per_hour * cfg.duration_s / 3600 * (1 - 0.5 * cfg.fraud_share)
            )
        legit = legit_sessions(pop, cfg, rng, target)
        markers = life_event_markers(pop, cfg, rng)
        n_legit_purchases = int((legit.cols["etype"] == PURCHASE).sum())
        wanted = (
            round(cfg.fraud_share / (1 - cfg.fraud_share) * n_legit_purchases)
            if cfg.fraud_share
            else 0
        )
        on_terminals = compromise_terminals(
            legit, cfg, np.random.default_rng([seed, 5, window]), round(wanted * TERMINAL_SHARE)
        )
        incidents = fraud_incidents(
            pop, cfg, np.random.default_rng([seed, 3, window]), wanted - on_terminals
        )
        frame = Frame.concat([legit, markers, incidents.frame])
        ts = frame.cols["ts"]
        frame = frame.take(np.flatnonzero((ts >= cfg.start_us) & (ts < cfg.end_us))).sorted()
        if cfg.drift is not None:
            from shopsentry.simulator.drift import inject

            frame = inject(frame, cfg.drift, np.random.default_rng([seed, 7, window]))
        self._pop = pop
        self._n_accounts = len(incidents.accounts)
        self._frame = frame
        logger.info(
            "simulated %d events (%d purchases, %d fraud) for %d users",
            len(frame),
            int((frame.cols["etype"] == PURCHASE).sum()),
            int(frame.cols["fraud"].sum()),
            pop.n,
        )
        return frame

    def __len__(self) -> int:
        return len(self._build())

    @property
    def population(self) -> Population:
        """The simulated customers (their usual amounts, devices, shared entities)."""
        self._build()
        assert self._pop is not None
        return self._pop

    @property
    def stats(self) -> dict[str, Any]:
        """Counts a person (or a test) checks a run by: events per type, purchases, fraud
        purchases per scenario, legitimate hard cases per kind."""
        f = self._build()
        purchase = f.cols["etype"] == PURCHASE
        fraud = f.cols["fraud"]
        tags = f.cols["tag"]
        return {
            "events": len(f),
            "by_type": {
                EVENT_TYPES[k]: int(v) for k, v in sorted(Counter(f.cols["etype"].tolist()).items())
            },
            "purchases": int(purchase.sum()),
            "fraud_purchases": int((purchase & fraud).sum()),
            "fraud_by_scenario": {
                TAG_NAMES[k]: int(v)
                for k, v in sorted(Counter(tags[purchase & fraud].tolist()).items())
            },
            "legit_cases": {
                TAG_NAMES[k]: int(v)
                for k, v in sorted(Counter(tags[purchase & ~fraud & (tags >= 0)].tolist()).items())
            },
            "users": len(np.unique(f.cols["user"])),
            "fraud_accounts": self._n_accounts,
        }

    # -- rendering -------------------------------------------------------------------------
    def _user_ids(self, users: np.ndarray) -> list[str]:
        tag = self.config.population_tag
        names = {int(u): f"u{tag}-{int(u):06d}" for u in np.unique(users)}
        return [names[u] for u in users.tolist()]

    def records(self) -> Iterator[RenderedEvent]:
        """Every event in ``occurred_at`` order, as encoded bytes plus the table columns."""
        f = self._build()
        c = f.cols
        n = len(f)
        run = self.config.run_tag
        when = np.char.add(
            np.datetime_as_string(c["ts"].astype("datetime64[us]"), unit="us"), "Z"
        ).tolist()
        users = self._user_ids(c["user"])
        lists = {k: v.tolist() for k, v in c.items()}
        ts_l, et_l, src_l = lists["ts"], lists["etype"], lists["source"]
        dev_l, ip_l, ctry_l = lists["device"], lists["ip"], lists["country"]
        amt_l, qty_l, pm_l, card_l = lists["amount"], lists["qty"], lists["pm"], lists["card"]
        bill_l, ship_l, aux_l = lists["billing"], lists["shipping"], lists["aux"]
        store_l, addr_l = lists["store"], lists["addr"]
        order_no = 0
        dumps = orjson.dumps
        for i in range(n):
            et = et_l[i]
            source = SOURCES[src_l[i]]
            event_id = f"ev-{run}-{i:09d}"
            device = _hex("pos-" if source == "pos" else "dev-", dev_l[i])
            ip = _hex("ip-", ip_l[i])
            country = COUNTRY_CODES[ctry_l[i]] if ctry_l[i] >= 0 else None
            head: dict[str, Any] = {
                "schema_version": 1,
                "event_id": event_id,
                "source": source,
                "user_id": users[i],
                "occurred_at": when[i],
            }
            if et == PURCHASE:
                order_id = f"or-{run}-{order_no:08d}"
                self._order_ids[i] = order_id
                order_no += 1
                ship = ship_l[i]
                head.update(
                    event_type="purchase",
                    order_id=order_id,
                    amount=amt_l[i],
                    currency="USD",
                    item_count=qty_l[i],
                    payment_method=PAYMENT_METHODS[pm_l[i]],
                    card_fingerprint=_hex("card-", card_l[i]),
                    device_fingerprint=device,
                    ip_fingerprint=ip,
                    country=country,
                    billing_country=COUNTRY_CODES[bill_l[i]],
                    shipping_country=COUNTRY_CODES[ship] if ship >= 0 else None,
                    merchant_category=CATEGORIES[aux_l[i]],
                    store_id=f"st-{store_l[i]:06d}" if store_l[i] >= 0 else None,
                    terminal_id=_hex("term-", dev_l[i]) if source == "pos" else None,
                    shipping_address_hash=_hex("addr-", addr_l[i]),
                )
            else:
                head.update(device_fingerprint=device, ip_fingerprint=ip, country=country)
                _behaviour_fields(head, EVENT_TYPES[et], i, lists)
            yield RenderedEvent(event_id, EVENT_TYPES[et], users[i], source, ts_l[i], dumps(head))

    def events(self) -> Iterator[AnyEvent]:
        """Every event in ``occurred_at`` order as a validated model."""
        for record in self.records():
            yield decode(record.raw)

    def labels(self) -> list[Label]:
        """Ground truth, out of band: one label per fraud purchase (and per legitimate
        purchase when ``legit_labels``), with ``known_at`` = when it became known.

        Most fraud is known by a chargeback 1-30 days later; some is caught by a review
        within a day, a few chargebacks take up to 60 days. Cleared legitimate purchases
        are known 30 days after the purchase (the end of the chargeback window).
        """
        f = self._build()
        c = f.cols
        run = self.config.run_tag
        rng = np.random.default_rng(
            [self.config.seed & 0xFFFF_FFFF_FFFF, 4, self.config.start_us & 0xFFFF_FFFF_FFFF]
        )
        purchase_idx = np.flatnonzero(c["etype"] == PURCHASE)
        order_of = {int(i): f"or-{run}-{k:08d}" for k, i in enumerate(purchase_idx.tolist())}
        wanted = (
            purchase_idx if self.config.legit_labels else purchase_idx[c["fraud"][purchase_idx]]
        )
        users = self._user_ids(c["user"][wanted]) if len(wanted) else []
        out: list[Label] = []
        for j, i in enumerate(wanted.tolist()):
            ts = int(c["ts"][i])
            is_fraud = bool(c["fraud"][i])
            tag = int(c["tag"][i])
            how: LabelSource
            if is_fraud:
                roll = rng.random()
                if roll < 0.12:
                    how, delay = "review", rng.uniform(0.5, 24) * HOUR_US
                elif roll < 0.94:
                    how, delay = "chargeback", (1 + 29 * rng.beta(1.4, 2.6)) * DAY_US
                else:
                    how, delay = "chargeback", rng.uniform(30, 60) * DAY_US
            else:
                how, delay = "simulator", 30 * DAY_US + rng.uniform(0, 6) * HOUR_US
            out.append(
                Label(
                    event_id=f"ev-{run}-{i:09d}",
                    source=cast(Source, SOURCES[int(c["source"][i])]),
                    user_id=users[j],
                    occurred_at=datetime.fromtimestamp(ts / US, UTC),
                    order_id=order_of[i],
                    is_fraud=is_fraud,
                    scenario=TAG_NAMES[tag]
                    if tag >= 0 and (is_fraud or TAG_NAMES[tag] in LEGIT_CASES)
                    else None,
                    label_source=how,
                    known_at=datetime.fromtimestamp((ts + int(delay)) / US, UTC),
                )
            )
        return out
