"""A transactions file in the common public layout (transaction id, customer id,
terminal id, time, amount, fraud flag), made the way the public "fraud detection
handbook" simulates its data: customers shop at terminals near them for amounts around
their own mean; fraud is (1) any amount over 220, (2) every purchase at a compromised
terminal for 28 days, (3) a third of a compromised customer's purchases for 14 days,
at five times the amount."""

from __future__ import annotations

import csv
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

COLUMNS = [
    "TRANSACTION_ID",
    "TX_DATETIME",
    "CUSTOMER_ID",
    "TERMINAL_ID",
    "TX_AMOUNT",
    "TX_TIME_SECONDS",
    "TX_TIME_DAYS",
    "TX_FRAUD",
    "TX_FRAUD_SCENARIO",
]
# The mapping a user writes for this layout (the README shows it as a TOML file).
MAPPING = {
    "event_id": "TRANSACTION_ID",
    "user_id": "CUSTOMER_ID",
    "terminal_id": "TERMINAL_ID",
    "occurred_at": "TX_DATETIME",
    "amount": "TX_AMOUNT",
    "is_fraud": "TX_FRAUD",
    "scenario": "TX_FRAUD_SCENARIO",
}
START = datetime(2018, 4, 1)


def handbook_rows(
    customers: int = 300, terminals: int = 200, days: int = 40, seed: int = 0
) -> list[list[object]]:
    rng = np.random.default_rng(seed)
    where_c = rng.uniform(0, 100, size=(customers, 2))
    where_t = rng.uniform(0, 100, size=(terminals, 2))
    mean = rng.uniform(5, 100, size=customers)
    std = mean / 2
    per_day = rng.uniform(0, 4, size=customers)
    near = [np.flatnonzero(((where_t - c) ** 2).sum(axis=1) < 50**2) for c in where_c]
    rows = []
    for c in range(customers):
        if not len(near[c]):
            continue
        for day in range(days):
            for _ in range(int(rng.poisson(per_day[c]))):
                second = int(np.clip(rng.normal(86400 / 2, 20000), 0, 86399))
                amount = float(rng.normal(mean[c], std[c]))
                if amount < 0:
                    amount = float(rng.uniform(0, mean[c] * 2))
                rows.append([day * 86400 + second, c, int(rng.choice(near[c])), round(amount, 2)])
    rows.sort(key=lambda r: r[0])
    out: list[list[object]] = []
    fraud = np.zeros(len(rows), dtype=np.int8)
    t_sec = np.array([r[0] for r in rows])
    cust = np.array([r[1] for r in rows])
    term = np.array([r[2] for r in rows])
    amount = np.array([r[3] for r in rows], dtype=float)
    fraud[amount > 220] = 1
    for day in range(days):
        window = (t_sec >= day * 86400) & (t_sec < (day + 28) * 86400)
        for t in rng.choice(terminals, size=2, replace=False):
            fraud[window & (term == t)] = 2
        short = (t_sec >= day * 86400) & (t_sec < (day + 14) * 86400)
        for c in rng.choice(customers, size=3, replace=False):
            hit = np.flatnonzero(short & (cust == c) & (fraud == 0))
            hit = hit[rng.random(len(hit)) < 1 / 3]
            amount[hit] *= 5
            fraud[hit] = 3
    for i, (sec, c, t, _) in enumerate(rows):
        when = START + timedelta(seconds=int(sec))
        out.append(
            [
                i,
                when.strftime("%Y-%m-%d %H:%M:%S"),
                c,
                t,
                f"{amount[i]:.2f}",
                sec,
                sec // 86400,
                int(fraud[i] > 0),
                int(fraud[i]),
            ]
        )
    return out


def write_handbook_csv(path: Path, **kw: int) -> list[list[object]]:
    rows = handbook_rows(**kw)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return rows
