#!/usr/bin/env bash
# Starts the RabbitMQ node of ordermesh's tests on loopback (AMQP on
# 127.0.0.1:5673) with a node name, data and logs of its own, waits until it
# answers, and prints its URL. Run it as root or with sudo: the server drops
# to the rabbitmq user, which must own its directories. Idempotent: a node
# already up is left as it is. `rabbitmq.sh stop` stops it.
set -euo pipefail
NODE=${ORDERMESH_RABBIT_NODE:-ordermesh-test@localhost}
PORT=${ORDERMESH_RABBIT_PORT:-5673}
BASE=${ORDERMESH_RABBIT_BASE:-/var/tmp/ordermesh-rabbitmq}
if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
# Every port on loopback: epmd, the node's distribution port and AMQP.
export ERL_EPMD_ADDRESS=127.0.0.1
ctl() { $SUDO env ERL_EPMD_ADDRESS=127.0.0.1 rabbitmqctl -n "$NODE" "$@"; }
if [ "${1:-}" = stop ]; then ctl -q stop >/dev/null 2>&1 || true; exit 0; fi
url="amqp://guest:guest@127.0.0.1:$PORT/"
if ctl -q status >/dev/null 2>&1; then echo "$url"; exit 0; fi
$SUDO env ERL_EPMD_ADDRESS=127.0.0.1 epmd -daemon
$SUDO mkdir -p "$BASE/mnesia" "$BASE/log"
$SUDO chown -R rabbitmq:rabbitmq "$BASE"
$SUDO env RABBITMQ_NODENAME="$NODE" RABBITMQ_NODE_PORT="$PORT" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
  ERL_EPMD_ADDRESS=127.0.0.1 RABBITMQ_MNESIA_BASE="$BASE/mnesia" RABBITMQ_LOG_BASE="$BASE/log" \
  RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
  RABBITMQ_ENABLED_PLUGINS_FILE="$BASE/enabled_plugins" \
  rabbitmq-server -detached >/dev/null 2>&1
# The node registers with epmd a moment after -detached returns.
for _ in $(seq 1 120); do
  if ctl -q --timeout 60 await_startup >/dev/null 2>&1; then echo "$url"; exit 0; fi
  sleep 0.5
done
echo "RabbitMQ node $NODE did not start; its log: $BASE/log" >&2
exit 1
