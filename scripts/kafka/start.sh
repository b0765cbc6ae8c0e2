#!/usr/bin/env bash
# Start a local Apache Kafka on 127.0.0.1 for trying shopsentry by hand:
#   scripts/kafka/start.sh            one combined KRaft node (data in .kafka/dev)
#   scripts/kafka/start.sh 3          one controller + three brokers (.kafka/dev-3)
# Prints the bootstrap address; stop with scripts/kafka/stop.sh [3].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
brokers="${1:-1}"
dir="$root/.kafka/dev$([ "$brokers" = 1 ] || echo "-$brokers")"
python="${PYTHON:-$root/.venv/bin/python}"
bash "$root/scripts/kafka/fetch.sh" >/dev/null
if [ -f "$dir/cluster.json" ]; then
  "$python" "$root/scripts/kafka/cluster.py" stop --dir "$dir" >/dev/null || true
  rm -rf "$dir"
fi
mkdir -p "$dir"
exec "$python" "$root/scripts/kafka/cluster.py" start --dir "$dir" --brokers "$brokers" \
  --scram-user "${KAFKA_SCRAM_USER:-shopsentry}:${KAFKA_SCRAM_PASSWORD:-shopsentry-dev}"
