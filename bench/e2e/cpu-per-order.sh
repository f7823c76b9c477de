#!/usr/bin/env bash
# CPU per order: a fresh `ordermesh run`, a short warm-up, then one
# fixed-rate `ordermesh load`; prints the CPU time `run` and `load` spent
# per completed order, read from /proc and /usr/bin/time. Steadier on a
# shared machine than latency percentiles.
#
#   bench/e2e/cpu-per-order.sh                      # 150/s for 20s, --follow stream
#   RATE=300 DURATION=30s FOLLOW=order bench/e2e/cpu-per-order.sh
#   ORDERMESH_SQLITE_GROUP_COMMIT=off bench/e2e/cpu-per-order.sh
#   BROKER=amqp://guest:guest@127.0.0.1:5673/vh BROKER_PID=1234 bench/e2e/cpu-per-order.sh
#       on RabbitMQ; the CPU of BROKER_PID (its server) is counted as the broker's
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${RATE:-150}
duration=${DURATION:-20s}
follow=${FOLLOW:-stream}
addr=127.0.0.1:18481
tmp=$(mktemp -d)
[ -x /usr/bin/time ] || { echo "needs /usr/bin/time (apt-get install -y time)"; exit 1; }
if [ -n "${BIN:-}" ]; then cp "$BIN" "$tmp/ordermesh"; else go build -o "$tmp/ordermesh" ./cmd/ordermesh; fi
broker_flags=()
if [ -n "${BROKER:-}" ]; then broker_flags=(--broker "$BROKER"); fi
"$tmp/ordermesh" run --data "$tmp/data" --addr "$addr" --metrics-addr 127.0.0.1:0 --log-level warn "${broker_flags[@]}" >"$tmp/run.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
"$tmp/ordermesh" load --target "http://$addr" --data "$tmp/data" --rate 10 --duration 1s >/dev/null 2>&1 # products, warm-up
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # utime + stime, in clock ticks
bpid=${BROKER_PID:-}
broker_cpu() { if [ -n "$bpid" ]; then cpu "$bpid"; else echo 0; fi; }
hz=$(getconf CLK_TCK)
before=$(cpu $pid)
bbefore=$(broker_cpu)
/usr/bin/time -f "%U %S" -o "$tmp/load.cpu" "$tmp/ordermesh" load --target "http://$addr" --data "$tmp/data" \
  --rate "$rate" --duration "$duration" --follow "$follow" --json "$tmp/load.json" >"$tmp/load.txt" 2>/dev/null
after=$(cpu $pid)
bafter=$(broker_cpu)
done=$(sed -n 's/.*"completed": \([0-9]*\).*/\1/p' "$tmp/load.json" | head -1)
p99=$(grep -A6 '"completion_latency"' "$tmp/load.json" | sed -n 's/.*"p99_ms": \([0-9.]*\).*/\1/p')
read -r lu ls <"$tmp/load.cpu"
awk -v a="$before" -v b="$after" -v ba="$bbefore" -v bb="$bafter" -v hz="$hz" -v n="$done" -v lu="$lu" -v ls="$ls" -v p="$p99" -v r="$rate" -v f="$follow" 'BEGIN {
  printf "%s orders/s, --follow %s: %d completed; run %.2f ms CPU/order, load %.2f ms CPU/order; completion p99 %s ms",
    r, f, n, (b - a) * 1000 / hz / n, (lu + ls) * 1000 / n, p
  if (bb > ba) printf "; broker server %.2f ms CPU/order", (bb - ba) * 1000 / hz / n
  printf "\n" }'
