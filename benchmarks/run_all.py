"""Run every benchmark in turn (`make bench`); each writes its own results file.

The machine is shared and noisy: the figures are for comparison within one run, with
the command, the machine and the date written beside them, never timed assertions.
"""

from __future__ import annotations

import subprocess
import sys
import time

BENCHMARKS = (
    "benchmarks.bench_log",
    "benchmarks.bench_kafka",
    "benchmarks.bench_features",
    "benchmarks.bench_simulator",
    "benchmarks.bench_scorer",
    "benchmarks.bench_detector",
    "benchmarks.bench_etl",
    "benchmarks.bench_api",
)


def main() -> int:
    failed = []
    for module in BENCHMARKS:
        print(f"== {module}", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, "-m", module], check=False)
        took = time.monotonic() - started
        print(f"== {module}: exit {result.returncode} in {took:.0f} s", flush=True)
        if result.returncode != 0:
            failed.append(module)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
