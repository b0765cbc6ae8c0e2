"""HTTP ingest of the service: POST /v1/events into the embedded log, end to end.

    .venv/bin/python -m benchmarks.bench_api [--requests 1500] [--batch 100] [--clients 1,4]

What is measured: `shopsentry serve` runs as its own process (uvicorn, one worker) on a
loopback port with a fresh data dir; clients (threads with keep-alive httpx clients)
send real encoded purchases with an ingest key. A request returns 202 only after the
events are flushed to the log (durable under the `batch` fsync policy), so the latency is
the acknowledged-write latency a source sees. Two shapes: one event per request, and
batches of ``--batch`` events. The server's CPU time (utime+stime from /proc) gives
events per server CPU-second, which is what a core does when it is not shared.

Results go to ``benchmarks/results/bench_api.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _purchase(i: int, source: str = "web") -> dict[str, Any]:
    return {
        "event_type": "purchase",
        "event_id": f"bench-{i:09d}",
        "source": source,
        "user_id": f"user-{i % 5000:05d}",
        "occurred_at": (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(seconds=i)).isoformat(),
        "order_id": f"order-{i:09d}",
        "amount": 10.0 + (i % 500),
        "currency": "USD",
        "item_count": 1 + i % 4,
        "payment_method": "card",
        "card_fingerprint": f"card-{i % 7000:05d}",
        "device_fingerprint": f"dev-{i % 6000:05d}",
        "country": "US",
        "billing_country": "US",
    }


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_shape(
    url: str, token: str, *, requests: int, batch: int, clients: int, pid: int
) -> dict[str, Any]:
    """Send ``requests`` requests of ``batch`` events from ``clients`` threads."""
    per_client = requests // clients
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    counter = iter(range(10**9))

    def client_loop(offset: int) -> None:
        with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=60) as client:
            mine = []
            for _ in range(per_client):
                start_id = next(counter) * batch + offset * 10**8
                events = [_purchase(start_id + j) for j in range(batch)]
                body: Any = events[0] if batch == 1 else events
                t0 = time.perf_counter()
                response = client.post("/v1/events", json=body)
                mine.append(time.perf_counter() - t0)
                if response.status_code != 202:
                    with lock:
                        errors.append(f"{response.status_code} {response.text[:200]}")
            with lock:
                latencies.extend(mine)

    cpu0 = _cpu_seconds(pid)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    cpu = _cpu_seconds(pid) - cpu0
    sent = per_client * clients
    if errors:
        raise SystemExit(f"{len(errors)} requests failed, first: {errors[0]}")
    return {
        "batch": batch,
        "clients": clients,
        "requests": sent,
        "events": sent * batch,
        "wall_s": round(wall, 3),
        "requests_per_s": round(sent / wall, 1),
        "events_per_s": round(sent * batch / wall, 1),
        "events_per_server_cpu_s": round(sent * batch / cpu, 1) if cpu else None,
        "latency_ms": {
            "p50": round(statistics.median(latencies) * 1000, 2),
            "p95": round(_percentile(latencies, 0.95) * 1000, 2),
            "p99": round(_percentile(latencies, 0.99) * 1000, 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500, help="requests per shape")
    parser.add_argument(
        "--batch", type=int, default=100, help="events per request in the batch shape"
    )
    parser.add_argument("--clients", default="1,4", help="comma-separated client thread counts")
    parser.add_argument("--fsync", default="batch", choices=["batch", "always", "never"])
    args = parser.parse_args()

    from shopsentry.api.app import open_keys
    from shopsentry.config import Settings

    data_dir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    settings = Settings(data_dir=data_dir, log_fsync=args.fsync)
    keys = open_keys(settings)
    token = keys.create("ingest", "web").token
    keys.close()
    port = _free_port()
    env = {
        **os.environ,
        "SHOPSENTRY_DATA_DIR": str(data_dir),
        "SHOPSENTRY_LOG_FSYNC": args.fsync,
        "SHOPSENTRY_API__RATE_LIMIT_PER_MINUTE": str(10**9),
        "SHOPSENTRY_API__MAX_BODY_BYTES": str(16 * 1024 * 1024),
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "shopsentry", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.2)
        run_shape(url, token, requests=50, batch=1, clients=1, pid=server.pid)  # warm-up
        shapes = []
        for clients in [int(c) for c in args.clients.split(",")]:
            shapes.append(
                run_shape(
                    url, token, requests=args.requests, batch=1, clients=clients, pid=server.pid
                )
            )
            batch_requests = max(clients, args.requests // 10)
            shapes.append(
                run_shape(
                    url,
                    token,
                    requests=batch_requests,
                    batch=args.batch,
                    clients=clients,
                    pid=server.pid,
                )
            )
    finally:
        server.terminate()
        server.wait(30)
    load_after = os.getloadavg()

    command = "python -m benchmarks.bench_api " + " ".join(sys.argv[1:])
    result = {
        "command": command.strip(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "fsync": args.fsync,
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in load_after],
        "shapes": shapes,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_api.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# HTTP ingest (POST /v1/events → embedded log, acknowledged = flushed)",
        "",
        f"- command: `.venv/bin/{result['command']}`",
        f"- date: {result['date']}, nproc: {result['nproc']}, Python {result['python']},"
        f" fsync `{args.fsync}`",
        f"- load average before/after: {result['load_average_before']} /"
        f" {result['load_average_after']}"
        " (a shared machine: wall-clock figures are lower than on a dedicated core)",
        "- server: `shopsentry serve` (uvicorn, 1 process);"
        " clients: keep-alive httpx threads on the same host",
        "",
        "| events/request | clients | requests | events/s | requests/s | events per server CPU-s |"
        " p50 ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in shapes:
        lat = s["latency_ms"]
        lines.append(
            f"| {s['batch']} | {s['clients']} | {s['requests']:,} | {s['events_per_s']:,.0f} |"
            f" {s['requests_per_s']:,.0f} | {s['events_per_server_cpu_s'] or 0:,.0f} |"
            f" {lat['p50']} | {lat['p95']} | {lat['p99']} |"
        )
    lines += [
        "",
        "The design's peak is 3,000 events/hour (0.83/s): one server process has orders of"
        " magnitude of headroom; batching amortises the per-request flush.",
    ]
    (RESULTS / "bench_api.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
