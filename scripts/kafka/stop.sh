#!/usr/bin/env bash
# Stop what scripts/kafka/start.sh [3] started (by pid) and delete its data.
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
brokers="${1:-1}"
dir="$root/.kafka/dev$([ "$brokers" = 1 ] || echo "-$brokers")"
python="${PYTHON:-$root/.venv/bin/python}"
if [ ! -f "$dir/cluster.json" ]; then
  echo "nothing started in $dir"
  exit 0
fi
"$python" "$root/scripts/kafka/cluster.py" stop --dir "$dir"
rm -rf "$dir"
