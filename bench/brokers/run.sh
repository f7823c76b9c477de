#!/usr/bin/env bash
# NATS JetStream and RabbitMQ side by side, on this machine, in one run:
# `ordermesh run` on its embedded JetStream, then `ordermesh run --broker`
# on a local RabbitMQ node (a fresh virtual host per trial), alternating
# ROUNDS times. Each trial prints the CPU per completed order at RATE (the
# RabbitMQ server's own CPU counted apart: JetStream's is inside `run`)
# and completion p99; then `load --max` finds each one's ceiling.
#
#   bench/brokers/run.sh                   # 2 rounds at 150/s for 20s, then the ceilings
#   ROUNDS=3 RATE=300 MAX=no bench/brokers/run.sh
#
# Needs rabbitmq-server installed; .ci/rabbitmq.sh starts its node (as root
# or with sudo, like this script's rabbitmqctl calls).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${ROUNDS:-2}
rate=${RATE:-150}
duration=${DURATION:-20s}
node=${ORDERMESH_RABBIT_NODE:-ordermesh-test@localhost}
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
ctl() { $SUDO env ERL_EPMD_ADDRESS=127.0.0.1 rabbitmqctl -q -n "$node" "$@"; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go build -o "$tmp/ordermesh" ./cmd/ordermesh
base=$(.ci/rabbitmq.sh)
bpid=$(ctl eval 'os:getpid().' | tr -d '"')
echo "RabbitMQ $(ctl eval 'rabbit_misc:version().' | tr -d '"') at $base (server pid $bpid); $(nproc) cores"

# vhost makes a fresh virtual host and prints its URL.
vhost() {
  local v="bench-$RANDOM$RANDOM"
  ctl add_vhost "$v" >/dev/null
  ctl set_permissions -p "$v" guest '.*' '.*' '.*' >/dev/null
  echo "$v"
}

for round in $(seq 1 "$rounds"); do
  printf 'round %d  jetstream: ' "$round"
  BIN="$tmp/ordermesh" RATE=$rate DURATION=$duration bench/e2e/cpu-per-order.sh
  v=$(vhost)
  printf 'round %d  rabbitmq:  ' "$round"
  BIN="$tmp/ordermesh" RATE=$rate DURATION=$duration BROKER="${base%/}/$v" BROKER_PID=$bpid bench/e2e/cpu-per-order.sh
  ctl delete_vhost "$v" >/dev/null
done

[ "${MAX:-yes}" = yes ] || exit 0
# ceiling: load --max against a fresh run on each broker.
ceiling() {
  local addr=127.0.0.1:18482 data="$tmp/max-$1"
  shift
  "$tmp/ordermesh" run --data "$data" --addr "$addr" --metrics-addr "" --log-level warn "$@" >"$data.log" 2>&1 &
  local pid=$!
  for _ in $(seq 1 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
  "$tmp/ordermesh" load --target "http://$addr" --data "$data" --max --slo 500ms --step 10s 2>/dev/null | grep -iE "ceiling|highest|sustain" || true
  kill "$pid"; wait "$pid" 2>/dev/null || true
}
printf 'ceiling jetstream: '; ceiling js
v=$(vhost)
printf 'ceiling rabbitmq:  '; ceiling rq --broker "${base%/}/$v"
ctl delete_vhost "$v" >/dev/null
