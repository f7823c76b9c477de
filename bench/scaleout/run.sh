#!/usr/bin/env bash
# Scaled-out throughput and CPU per order: a 3-node JetStream cluster on
# loopback (nats-server built from go.mod), PostgreSQL (one schema per
# service), and every service as `ordermesh serve`, with INSTANCES of
# orders, inventory and payments (partitioned consumers); then one
# fixed-rate `ordermesh load` through the gateway. Prints completed
# orders/s, completion p99 and the CPU time of every ordermesh process
# (brokers and PostgreSQL excluded) per completed order.
#
#   PG=postgres://ordermesh:ordermesh@127.0.0.1:5432/ordermesh_test?sslmode=disable \
#   INSTANCES=2 RATE=40 DURATION=30s bench/scaleout/run.sh
#
# PARTITIONED=false, CONSUMER_STATE=memory and CONSUMER_REPLICAS=1 set
# those serve flags;
# NATS_PROFILE=FILE saves the first broker's CPU profile while idle.
# RAW=N (default 20000, 0 skips) measures raw JetStream on the same
# cluster after the load: N messages published, then consumed and acked.
# Statements per order are counted when PostgreSQL preloads
# pg_stat_statements (shared_preload_libraries, CREATE EXTENSION, and
# pg_read_all_stats for the role); PG_TOP=N lists the N most run.
#
# The long form of the fault test is the Go test with more orders:
#   ORDERMESH_CLUSTER_ORDERS=2000 go test -run TestScaledOutClusterSurvivesFaults -v ./internal/app
set -euo pipefail
cd "$(dirname "$0")/../.."
pg=${PG:-${ORDERMESH_TEST_POSTGRES:?set PG to a PostgreSQL URL (a database ordermesh may create schemas in)}}
instances=${INSTANCES:-1}
rate=${RATE:-40}
duration=${DURATION:-30s}
tmp=$(mktemp -d)
pids=()
schemas=()
cleanup() {
  local rc=$?
  if [ "$rc" != 0 ] && [ -z "${KEEP_LOGS:-}" ]; then # a failed run keeps its logs
    KEEP_LOGS=$(mktemp -d /tmp/ordermesh-scaleout-logs.XXXX)
    echo "exit $rc: the processes' logs are in $KEEP_LOGS" >&2
    for s in "${schemas[@]}"; do # what the orders service holds, whatever load saw
      case $s in bench_orders_*) psql -Atq "$pg" -c "SELECT 'orders by status:', status, COUNT(*) FROM $s.orders GROUP BY status" >&2 || true ;; esac
    done
  fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for s in "${schemas[@]}"; do psql -q "$pg" -c "DROP SCHEMA IF EXISTS $s CASCADE" >/dev/null 2>&1 || true; done
  [ -n "${KEEP_LOGS:-}" ] && cp "$tmp"/*.log "$tmp"/load.* "$KEEP_LOGS"/ 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
go build -o "$tmp/ordermesh" ./cmd/ordermesh
go build -o "$tmp/nats-server" github.com/nats-io/nats-server/v2
# Ports below the kernel's ephemeral range (32768 up, here), which any
# outgoing connection may take: one run lost a broker node to that.
port=$((10000 + RANDOM % 20000))

# Every service with its own broker identity, as a deployment would have.
"$tmp/ordermesh" setup --identities "$tmp/secrets" >/dev/null
printf 'include ./nats-auth.conf\n' >"$tmp/secrets/nats.conf"
routes="nats://127.0.0.1:$((port + 11)),nats://127.0.0.1:$((port + 12)),nats://127.0.0.1:$((port + 13))"
nats=""
for i in 1 2 3; do
  "$tmp/nats-server" -c "$tmp/secrets/nats.conf" -js -sd "$tmp/nats$i" -n "n$i" -a 127.0.0.1 -p $((port + i)) --cluster_name bench \
    ${NATS_PROFILE:+--profile $((port + 30 + i))} \
    --cluster "nats://127.0.0.1:$((port + 10 + i))" --routes "$routes" >"$tmp/nats$i.log" 2>&1 &
  pids+=($!)
  nats="${nats:+$nats,}nats://127.0.0.1:$((port + i))"
done
nats_prof=$((port + 31))
port=$((port + 20))
"$tmp/ordermesh" setup --nats "$nats" --replicas 3 --nats-user ordermesh --nats-password-file "$tmp/secrets/nats-ordermesh.password" >/dev/null

openssl genpkey -algorithm ed25519 -out "$tmp/key.pem" 2>/dev/null
openssl pkey -in "$tmp/key.pem" -pubout -out "$tmp/pub.pem"
export ORDERMESH_NATS="$nats" ORDERMESH_INTERNAL_SECRET=$(openssl rand -hex 32) ORDERMESH_PSP_API_KEY=bench-key \
  ORDERMESH_LOG_LEVEL=warn ORDERMESH_PAYMENT_TOKEN_KEY=$(cat "$tmp/secrets/payment-token.key") \
  ORDERMESH_PAYMENT_TOKEN_PUBLIC_KEY=$(cat "$tmp/secrets/payment-token.pub")
schema() { # a fresh schema per service, shared by its instances
  local s="bench_$1_$$"
  psql -q "$pg" -c "CREATE SCHEMA IF NOT EXISTS $s" >/dev/null
  schemas+=("$s")
  case "$pg" in *\?*) echo "$pg&search_path=$s" ;; *) echo "$pg?search_path=$s" ;; esac
}
serve() { # serve SERVICE DSN [flags…]: starts it, waits until ready, sets $url
  local svc=$1 db=$2
  shift 2
  port=$((port + 1))
  "$tmp/ordermesh" serve "$svc" ${db:+--db "$db"} --addr "127.0.0.1:$port" --partitioned="${PARTITIONED:-true}" --consumer-state "${CONSUMER_STATE:-file}" \
    --consumer-replicas "${CONSUMER_REPLICAS:-0}" \
    --nats-user "$svc" --nats-password-file "$tmp/secrets/nats-$svc.password" "$@" >>"$tmp/$svc.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 300); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || { echo "$svc did not become ready:"; tail -5 "$tmp/$svc.log"; exit 1; }
  url="http://127.0.0.1:$port"
}
db=$(schema psp)
serve psp "$db"
psp=$url
declare -A up
for svc in orders inventory payments shipping notifications; do
  db=$(schema "$svc")
  n=1
  case $svc in orders | inventory | payments) n=$instances ;; esac
  for _ in $(seq 1 "$n"); do
    extra=()
    [ "$svc" = payments ] && extra=(--psp-url "$psp")
    serve "$svc" "$db" "${extra[@]}"
    up[$svc]="${up[$svc]:+${up[$svc]},}$url"
  done
done
serve gateway "" --jwt-key "$tmp/pub.pem" --upstream "orders=${up[orders]}" --upstream "inventory=${up[inventory]}" \
  --upstream "payments=${up[payments]}" --upstream "notifications=${up[notifications]}" --upstream "psp=$psp"
gw=$url
token=$("$tmp/ordermesh" token --key "$tmp/key.pem" --sub bench --scopes admin --ttl 1h)

"$tmp/ordermesh" load --target "$gw" --token "$token" --rate 20 --duration 5s >/dev/null 2>&1 || true # products, warm-up
# The schemas are fresh: statistics let PostgreSQL plan for tables that hold
# rows, as a running system's do (autovacuum would analyze them a minute
# or so later). Without this, cached generic plans scan whole tables.
psql -q "$pg" -c ANALYZE 2>/dev/null # (warnings about the catalogs it may not analyze)
cpu() { # utime + stime of the processes matching $1, in clock ticks
  local sum=0 p
  for p in $(pgrep -f "$1"); do
    sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat")))
  done
  echo $sum
}
hz=$(getconf CLK_TCK)
# What the processes cost with no orders at all (leases, heartbeats, the
# brokers' replication), over IDLE seconds: a share of every figure below.
idle=${IDLE:-10}
idle_om=$(cpu "$tmp/ordermesh serve"); idle_nats=$(cpu "$tmp/nats-server")
idle_pg=$(cpu "postgres: ")
xacts() { psql -Atq "$pg" -c "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"; }
idle_xact=$(xacts)
if [ -n "${NATS_PROFILE:-}" ]; then # the first broker's CPU profile over the idle seconds
  curl -s -o "$NATS_PROFILE" "http://127.0.0.1:$nats_prof/debug/pprof/profile?seconds=$((idle - 1))" &
fi
sleep "$idle"
idle_om=$(( $(cpu "$tmp/ordermesh serve") - idle_om )); idle_nats=$(( $(cpu "$tmp/nats-server") - idle_nats ))
idle_pg=$(( $(cpu "postgres: ") - idle_pg )); idle_xact=$(( $(xacts) - idle_xact ))
awk -v o="$idle_om" -v n="$idle_nats" -v p="$idle_pg" -v x="$idle_xact" -v hz="$hz" -v s="$idle" 'BEGIN {
  printf "idle, no orders: ordermesh processes %.0f ms CPU per second, the three nats-servers %.0f ms, PostgreSQL %.0f ms (%.1f transactions/s)\n", o * 1000 / hz / s, n * 1000 / hz / s, p * 1000 / hz / s, x / s }'
before=$(cpu "$tmp/ordermesh serve")
nats_before=$(cpu "$tmp/nats-server")
declare -A svc_before
for svc in psp orders inventory payments shipping notifications gateway; do svc_before[$svc]=$(cpu "$tmp/ordermesh serve $svc "); done
pg_before=$(cpu "postgres: ")
# Statements and transactions PostgreSQL ran for the load: statements
# from pg_stat_statements when the server preloads it (and the role may
# read it: pg_read_all_stats), transactions from pg_stat_database.
pgstats() {
  psql -Atq "$pg" -c "SELECT 'stmt', queryid, calls, regexp_replace(left(query, 110), '\s+', ' ', 'g') FROM pg_stat_statements s
    JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = current_database()" 2>/dev/null || true
  psql -Atq "$pg" -c "SELECT 'xact', 0, xact_commit + xact_rollback, '' FROM pg_stat_database WHERE datname = current_database()"
}
pgstats >"$tmp/pg.before"
status=0
"$tmp/ordermesh" load --target "$gw" --token "$token" --rate "$rate" --duration "$duration" --json "$tmp/load.json" \
  >"$tmp/load.txt" 2>"$tmp/load.err" || status=$?
after=$(cpu "$tmp/ordermesh serve")
nats_after=$(cpu "$tmp/nats-server")
declare -A svc_after
for svc in psp orders inventory payments shipping notifications gateway; do svc_after[$svc]=$(cpu "$tmp/ordermesh serve $svc "); done
pg_after=$(cpu "postgres: ")
pgstats >"$tmp/pg.after"
if [ -n "${SHOW_TIMELINE:-}" ]; then # where an order's time goes, step by step
  GW="$gw" TOKEN="$token" python3 - <<'PY' || true
import json, os, urllib.request, datetime as d
def get(path):
    req = urllib.request.Request(os.environ["GW"] + path, headers={"Authorization": "Bearer " + os.environ["TOKEN"]})
    return json.load(urllib.request.urlopen(req))
for o in get("/api/orders?limit=3"):
    o = get("/api/orders/" + o["id"])
    t = [d.datetime.fromisoformat(s["at"].replace("Z", "+00:00")) for s in o["timeline"]]
    print("timeline (s after placed):", [(s["type"], round((x - t[0]).total_seconds(), 3)) for s, x in zip(o["timeline"], t)])
PY
fi
cat "$tmp/load.txt"; tail -3 "$tmp/load.err"
done=$(sed -n 's/.*"completed": \([0-9]*\).*/\1/p' "$tmp/load.json" | head -1)
awk -v a="$before" -v b="$after" -v na="$nats_before" -v nb="$nats_after" -v hz="$hz" -v n="${done:-0}" -v i="$instances" -v r="$rate" 'BEGIN {
  if (n == 0) { print "no order completed"; exit 1 }
  printf "scaled out, %d instance(s) of orders/inventory/payments, %s orders/s offered: %d completed; ordermesh processes %.2f ms CPU per order, the three nats-servers %.2f ms\n",
    i, r, n, (b - a) * 1000 / hz / n, (nb - na) * 1000 / hz / n }'
# Where it goes: each service's processes, and PostgreSQL's backends (all
# of them: other databases' too, if any are busy).
for svc in psp orders inventory payments shipping notifications gateway; do
  awk -v a="${svc_before[$svc]}" -v b="${svc_after[$svc]}" -v hz="$hz" -v n="${done:-1}" -v s="$svc" 'BEGIN { printf "  %-13s %6.2f ms CPU per order\n", s, (b - a) * 1000 / hz / n }'
done
awk -v a="$pg_before" -v b="$pg_after" -v hz="$hz" -v n="${done:-1}" 'BEGIN { printf "  %-13s %6.2f ms CPU per order\n", "PostgreSQL", (b - a) * 1000 / hz / n }'
awk -F'|' -v n="${done:-1}" 'FNR == NR { before[$1 FS $2] = $3; next }
  { d = $3 - before[$1 FS $2]; if ($1 == "xact") xact = d; else if (d > 0) { stmts += d; q[$4] += d; if (tolower($4) !~ /^(begin|commit)$/) work += d } }
  END {
    # BEGIN and COMMIT sent inside a pgx batch are not counted there:
    # compare builds by the statements besides them.
    printf "PostgreSQL per order: %.1f statements (%.1f besides BEGIN/COMMIT), %.1f transactions (statements from pg_stat_statements; 0 if not preloaded)\n", stmts / n, work / n, xact / n
    for (k in q) printf "  %5.2f  %s\n", q[k] / n, k > "/dev/stderr"
  }' "$tmp/pg.before" "$tmp/pg.after" 2>"$tmp/pg.top"
[ "${PG_TOP:-0}" -gt 0 ] && sort -rn "$tmp/pg.top" | head -n "$PG_TOP"
# Raw JetStream on the same cluster, after the load: RAW messages (20,000;
# 0 skips) published to a stream of its own with three replicas, then
# consumed and acknowledged, over TCP as the services do.
if [ "${RAW:-20000}" -gt 0 ]; then
  go build -o "$tmp/broker-limit" ./bench/broker-limit
  printf "raw JetStream on this cluster (R3): "
  "$tmp/broker-limit" -n "${RAW:-20000}" -url "$nats" -user ordermesh -password-file "$tmp/secrets/nats-ordermesh.password" -replicas 3
fi
exit $status
