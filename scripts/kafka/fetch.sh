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

missing=()
command -v java >/dev/null 2>&1 || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || missing+=(maven)
if [ ${#missing[@]} -gt 0 ]; then
  # A fresh Debian machine (CI) as root: install them from Debian's packages.
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "fetch.sh: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "fetch.sh: missing ${missing[*]} (Kafka tests need Java 17+ and Maven):" \
         "sudo apt-get install -y ${missing[*]}" >&2
    exit 1
  fi
fi

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
