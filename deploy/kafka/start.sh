#!/usr/bin/env bash
# The kafka container of docker-compose.yml: deploy/kafka/server.properties plus the node's own credentials; on the
# first start the storage is formatted with the SCRAM credentials of the node (`kafka`) and of the kafka-setup job
# (`admin`): with ACLs on, every other principal is created by that job, which must itself be able to log in.
set -euo pipefail

: "${CLUSTER_ID:?set CLUSTER_ID}"
for var in KAFKA_BROKER_PASSWORD KAFKA_ADMIN_PASSWORD; do
  value="${!var:-}"
  if [[ ! "$value" =~ ^[A-Za-z0-9._~-]{16,}$ ]]; then
    echo "kafka: $var must be at least 16 characters of A-Z a-z 0-9 . _ ~ - (for example secrets.token_urlsafe(32))" >&2
    exit 2
  fi
done

config_dir=/opt/kafka/config/compose
mkdir -p "$config_dir"
chmod 700 "$config_dir"
config="$config_dir/server.properties"
client="$config_dir/client.properties"
umask 077
{
  cat /etc/kafka/compose/server.properties
  echo "listener.name.broker.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"kafka\" password=\"$KAFKA_BROKER_PASSWORD\";"
  echo "listener.name.controller.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"kafka\" password=\"$KAFKA_BROKER_PASSWORD\" user_kafka=\"$KAFKA_BROKER_PASSWORD\";"
} > "$config"
# For the health check (kafka-broker-api-versions.sh --command-config): the node's own login.
{
  echo "security.protocol=SASL_PLAINTEXT"
  echo "sasl.mechanism=SCRAM-SHA-512"
  echo "sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username=\"kafka\" password=\"$KAFKA_BROKER_PASSWORD\";"
} > "$client"

# --ignore-formatted: after the first start the credentials live in the cluster metadata (a restart keeps them).
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted --cluster-id "$CLUSTER_ID" --config "$config" \
  --add-scram "SCRAM-SHA-512=[name=\"kafka\",password=\"$KAFKA_BROKER_PASSWORD\"]" \
  --add-scram "SCRAM-SHA-512=[name=\"admin\",password=\"$KAFKA_ADMIN_PASSWORD\"]"

exec /opt/kafka/bin/kafka-server-start.sh "$config"
