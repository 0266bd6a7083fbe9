#!/usr/bin/env bash
# docker compose's kafka-setup job (the only client with the super user `admin`): creates the topics
# (deploy/kafka/topics.txt) with KAFKA_NUM_PARTITIONS partitions, one SCRAM-SHA-512 credential per principal
# (KAFKA_<PRINCIPAL>_PASSWORD) and the ACLs (deploy/kafka/acls.txt), TOPIC_PREFIX before every topic and group.
# Both files are generated from shared/topics.py (`python -m shared.kafka_acls`). Safe to run again: it only adds.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bootstrap="${KAFKA_BOOTSTRAP_SERVERS:-kafka:9092}"
prefix="${TOPIC_PREFIX:-}"
partitions="${KAFKA_NUM_PARTITIONS:?set KAFKA_NUM_PARTITIONS}"
bin="${KAFKA_BIN:-/opt/kafka/bin}"  # a test runs this script against stand-ins
password_pattern='^[A-Za-z0-9._~-]{16,}$'

if [[ ! "${KAFKA_ADMIN_PASSWORD:-}" =~ $password_pattern ]]; then
  echo "kafka-setup: KAFKA_ADMIN_PASSWORD must be at least 16 characters of A-Z a-z 0-9 . _ ~ -" >&2
  exit 2
fi
admin="$(mktemp)"
trap 'rm -f "$admin"' EXIT
chmod 600 "$admin"
{
  echo "security.protocol=SASL_PLAINTEXT"
  echo "sasl.mechanism=SCRAM-SHA-512"
  echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"admin\" password=\"$KAFKA_ADMIN_PASSWORD\";"
} > "$admin"

# Lines without comments and blanks.
entries() { sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$1"; }

echo "kafka-setup: topics"
while read -r name count; do
  "$bin/kafka-topics.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --create --if-not-exists \
    --topic "$prefix$name" --partitions "${count:-$partitions}" --replication-factor 1
done < <(entries "$here/topics.txt")

echo "kafka-setup: principals"
while read -r principal; do
  var="KAFKA_$(echo "$principal" | tr 'a-z-' 'A-Z_')_PASSWORD"
  password="${!var:-}"
  if [[ -z "$password" && "$principal" == operator ]]; then
    echo "kafka-setup: $var not set: no login for $principal (its ACLs are in place for when it gets one)"
    continue
  fi
  if [[ ! "$password" =~ $password_pattern ]]; then
    echo "kafka-setup: $var must be at least 16 characters of A-Z a-z 0-9 . _ ~ -" >&2
    exit 2
  fi
  "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --alter \
    --entity-type users --entity-name "$principal" --add-config "SCRAM-SHA-512=[iterations=8192,password=$password]"
done < <(entries "$here/acls.txt" | awk '{print $1}' | sort -u)

echo "kafka-setup: ACLs"
# One kafka-acls.sh run per principal and operation, naming every topic and group it applies to.
declare -A resources=()
while read -r principal resource name operation; do
  resources["$principal $operation"]+=" --$resource $prefix$name"
done < <(entries "$here/acls.txt")
for key in "${!resources[@]}"; do
  read -r principal operation <<< "$key"
  # shellcheck disable=SC2086 # the list of --topic/--group options splits on purpose
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$admin" --add \
    --allow-principal "User:$principal" --operation "$operation" ${resources[$key]}
done
echo "kafka-setup: done"
