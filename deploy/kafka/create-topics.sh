#!/usr/bin/env bash
# Create the design's topics on the 3-broker cluster (idempotent: --if-not-exists).
# Runs once in the kafka-init service of docker-compose.yml, with the apache/kafka image.
# Partitions and retention match shopsentry's defaults (src/shopsentry/config.py); a unit
# test (tests/unit/deploy) keeps the two in step.
set -euo pipefail
BOOTSTRAP="${BOOTSTRAP:-kafka-1:19092,kafka-2:19092,kafka-3:19092}"
TOPICS_BIN=/opt/kafka/bin/kafka-topics.sh
DAY_MS=86400000

# name                       partitions  retention (days, -1: forever)  cleanup.policy
TOPICS="
purchase-events              3           7                              delete
user-behavior                2           3                              delete
fraud-alerts                 2           7                              delete
decisions                    3           7                              delete
dead-letter                  1           14                             delete
fraud-labels                 1           90                             delete
alert-reviews                1           90                             delete
notifications-dead-letter    1           14                             delete
rules-control                1           -1                             compact
"

for attempt in $(seq 1 30); do
  if "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --list >/dev/null 2>&1; then
    break
  fi
  echo "waiting for the brokers (attempt $attempt)"
  sleep 2
done

echo "$TOPICS" | while read -r name partitions days policy; do
  [ -z "$name" ] && continue
  retention=$((days * DAY_MS))
  [ "$days" = "-1" ] && retention=-1
  "$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --create --if-not-exists \
    --topic "$name" --partitions "$partitions" --replication-factor 3 \
    --config min.insync.replicas=2 \
    --config retention.ms="$retention" --config cleanup.policy="$policy"
done
"$TOPICS_BIN" --bootstrap-server "$BOOTSTRAP" --describe
