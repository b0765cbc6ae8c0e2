#!/usr/bin/env bash
# Fetch the Apache Kafka broker jars (and a log4j2 backend) from Maven Central into
# ~/.m2 and cache their classpath in scripts/kafka/.classpath.
#
# Idempotent and fast when cached: the classpath file is rebuilt only when pom.xml
# changed or a jar it names is gone. Needs Java 17+ and Maven on PATH.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cp_file="${SHOPSENTRY_KAFKA_CLASSPATH:-$here/.classpath}"
pom="$here/pom.xml"

for tool in java mvn; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "fetch.sh: $tool is not installed (Kafka tests need Java 17+ and Maven)" >&2
    exit 1
  fi
done

cached_ok() {
  [[ -s "$cp_file" && "$cp_file" -nt "$pom" ]] || return 1
  local jar
  IFS=':' read -r -a jars < "$cp_file"
  for jar in "${jars[@]}"; do
    [[ -f "$jar" ]] || return 1
  done
}

if cached_ok; then
  echo "Kafka jars cached ($(tr ':' '\n' < "$cp_file" | grep -c . ) jars, classpath in $cp_file)"
  exit 0
fi

echo "Fetching Apache Kafka from Maven Central (first run only; cached in ~/.m2)..."
tmp="$(mktemp "$cp_file.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
mvn -q -B -Dstyle.color=never -f "$pom" dependency:build-classpath -Dmdep.outputFile="$tmp" -Dmdep.includeScope=runtime
mv "$tmp" "$cp_file"
trap - EXIT
echo "Kafka jars ready ($(tr ':' '\n' < "$cp_file" | grep -c . ) jars, classpath in $cp_file)"
