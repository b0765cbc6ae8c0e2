"""Analyst rules on the hot path: 50 active rules and block/allow lists of 100,000 entries
over micro-batches of purchases.

    .venv/bin/python -m benchmarks.bench_rules [--batch 500] [--batches 200] [--rules 50]

Measures, in process CPU time (best of five), the cost per purchase of building the rule
columns and evaluating the whole rule set with its lists (``CompiledRuleSet.evaluate``),
and beside it, in the same run, the cost of decoding the same purchases from JSON
(``events.codec.decode``), which every purchase pays on the hot path anyway: the ratio is
what the machine's speed does not change. Results go to
``benchmarks/results/bench_rules.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from shopsentry.events.codec import decode, encode
from shopsentry.events.schema import Purchase
from shopsentry.features.definitions import FEATURES
from shopsentry.rules.engine import CompiledRuleSet, PurchaseColumns
from shopsentry.rules.model import ListEntry, Rule, RuleSet

RESULTS = Path(__file__).resolve().parent / "results"
NAMES = tuple(name for name, _ in FEATURES)
TEMPLATES = (
    "purchase.amount > {a}.0 && has(features.new_device) && features.new_device > 0.5",
    "has(features.amount_ratio) && features.amount_ratio > {r}.0 && score > 0.{s}",
    "purchase.country != purchase.billing_country && purchase.amount > {a}.0",
    "purchase.payment_method in ['gift_card', 'paypal'] && score > 0.{s}",
    "purchase.card_fingerprint in lists.block.card || purchase.amount > {b}.0",
    "has(features.purchases_10m) && features.purchases_10m >= {r}.0",
    "score > 0.{s} && purchase.item_count > 4",
    "purchase.device_fingerprint in lists.block.device && score > 0.{s}",
)


def _rules(n: int) -> tuple[Rule, ...]:
    rng = random.Random(3)
    out = []
    for i in range(n):
        text = TEMPLATES[i % len(TEMPLATES)].format(
            a=rng.randint(2500, 2990),
            b=rng.randint(2900, 2990),
            r=rng.randint(9, 9),
            s=rng.randint(95, 99),
        )
        out.append(
            Rule(name=f"r{i}", expression=text, action=("block", "review")[i % 2], mode="active")
        )
    return tuple(out)


def _entries(n: int) -> tuple[ListEntry, ...]:
    kinds = ("card", "device", "ip", "user")
    return tuple(
        ListEntry(list="block" if i % 5 else "allow", entity=kinds[i % 4], value=f"x{i}")
        for i in range(n)
    )


def _purchases(n: int) -> list[bytes]:
    rng = random.Random(5)
    at = datetime(2026, 12, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        p = Purchase(
            event_id=f"p{i}",
            source="web",
            user_id=f"u{rng.randint(0, 5000)}",
            occurred_at=at,
            order_id=f"o{i}",
            amount=round(rng.uniform(5, 3000), 2),
            item_count=rng.randint(1, 5),
            payment_method=rng.choice(["card", "paypal", "gift_card"]),
            country="US",
            billing_country=rng.choice(["US", "US", "FR"]),
            card_fingerprint=f"x{rng.randint(0, 400_000)}",
            device_fingerprint=f"x{rng.randint(0, 400_000)}",
        )
        out.append(encode(p))
    return out


def _best(fn, repeat: int = 5) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        t = time.process_time()
        fn()
        times.append(time.process_time() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("--rules", type=int, default=50)
    parser.add_argument("--entries", type=int, default=100_000)
    args = parser.parse_args()
    compiled = CompiledRuleSet(
        RuleSet(rules=_rules(args.rules), entries=_entries(args.entries)), NAMES
    )
    assert len(compiled.rules) == args.rules
    raw = _purchases(args.batch)
    purchases = [decode(r) for r in raw]
    rng = np.random.default_rng(1)
    X = rng.random((args.batch, len(NAMES)), dtype=np.float32) * 10
    scores = rng.random(args.batch)
    index = {n: i for i, n in enumerate(NAMES)}
    now = time.time()
    sample = compiled.evaluate(PurchaseColumns(purchases, X, index, scores, compiled.lists), now)
    hit_rate = sum(sample.hits.values()) / (args.rules * args.batch)

    def rules() -> None:
        for _ in range(args.batches):
            cols = PurchaseColumns(purchases, X, index, scores, compiled.lists)
            compiled.evaluate(cols, now)

    def decoding() -> None:
        for _ in range(args.batches):
            for r in raw:
                decode(r)

    n = args.batch * args.batches
    rules_us = _best(rules) / n * 1e6
    decode_us = _best(decoding) / n * 1e6
    detector_us = 1e6 / 21_850  # the README's embedded one-worker figure, for scale
    result = {
        "command": " ".join(
            [Path(sys.executable).name, "-m", "benchmarks.bench_rules", *sys.argv[1:]]
        ),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cores": os.cpu_count(),
            "load_avg": os.getloadavg(),
            "python": platform.python_version(),
        },
        "rules": args.rules,
        "list_entries": args.entries,
        "batch": args.batch,
        "mean_rule_hit_rate": round(hit_rate, 4),
        "rules_us_per_purchase": round(rules_us, 2),
        "decode_us_per_purchase": round(decode_us, 2),
        "rules_to_decode_ratio": round(rules_us / decode_us, 2),
        "share_of_recorded_detector_purchase": round(rules_us / detector_us, 3),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_rules.json").write_text(json.dumps(result, indent=2) + "\n")
    (RESULTS / "bench_rules.md").write_text(
        "# bench_rules\n\n"
        f"`{result['command']}` on {result['date']}, {result['machine']['cores']} cores, "
        f"load average {result['machine']['load_avg'][0]:.2f}\n\n"
        "| what | µs per purchase |\n|---|---|\n"
        f"| {args.rules} active rules + {args.entries:,} list entries, "
        f"batches of {args.batch} | {rules_us:.2f} |\n"
        f"| decoding the purchase from JSON (same run, reference) | {decode_us:.2f} |\n\n"
        f"Rules cost {rules_us / decode_us:.2f}x a decode; against the detector's recorded "
        f"{detector_us:.1f} µs per purchase (21,850/s) that is {rules_us / detector_us:.1%} "
        "of a purchase's hot path (the end-to-end check is in bench_detector).\n"
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
