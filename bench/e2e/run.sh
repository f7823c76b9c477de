#!/usr/bin/env bash
# End-to-end benchmark: a fresh `ordermesh run`, `ordermesh load --max`,
# then 60 s at half that rate, with the process's resident memory sampled
# and the broker's raw limit (bench/broker-limit) printed beside the result.
#
#   bench/e2e/run.sh            # results in bench/e2e/results/
#   STEP=10s SUSTAIN=30s bench/e2e/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/e2e/results
mkdir -p "$out"
step=${STEP:-15s}
sustain=${SUSTAIN:-60s}
bin=$(mktemp -d)/ordermesh
data=$(mktemp -d)
addr=127.0.0.1:18480

echo "building ordermesh…"
go build -o "$bin" ./cmd/ordermesh
"$bin" run --data "$data" --addr "$addr" --metrics-addr 127.0.0.1:0 --log-level warn >"$out/run.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$(dirname "$bin")"' EXIT
for _ in $(seq 1 100); do
  curl -sf "http://$addr/readyz" >/dev/null && break
  sleep 0.1
done
rss() { awk '/VmRSS/ {print int($2/1024)}' "/proc/$pid/status"; }
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # utime + stime, in clock ticks
rss_idle=$(rss)

echo "measuring the broker's raw limit…"
broker=$(go run ./bench/broker-limit -n 200000)
publish=$(sed 's/.*"publish_async_per_s":\([0-9]*\).*/\1/' <<<"$broker")

echo "searching for the highest sustained rate (p99 completion ≤ 500 ms, no errors)…"
"$bin" load --target "http://$addr" --data "$data" --max --rate 100 --step "$step" --json "$out/max.json" >"$out/max.txt" 2>"$out/max.progress"
max=$(sed -n 's/.*"max_sustained_rate": \([0-9.]*\).*/\1/p' "$out/max.json" | head -1)
half=$(awk -v m="$max" 'BEGIN {printf "%d", m / 2}')

echo "sustaining $half orders/s for $sustain…"
peak=0
( while kill -0 $pid 2>/dev/null; do r=$(rss); echo "$r"; sleep 1; done ) >"$out/rss.log" &
sampler=$!
cpu_before=$(cpu)
/usr/bin/time -f "%U %S" -o "$out/load.cpu" "$bin" load --target "http://$addr" --data "$data" --rate "$half" --duration "$sustain" --json "$out/sustained.json" >"$out/sustained.txt" 2>"$out/sustained.progress"
cpu_after=$(cpu)
kill $sampler 2>/dev/null || true
peak=$(sort -n "$out/rss.log" | tail -1)
settled=$(sed -n 's/.*"settled_per_s": \([0-9.]*\).*/\1/p' "$out/sustained.json" | head -1)
completed=$(sed -n 's/.*"completed": \([0-9]*\).*/\1/p' "$out/sustained.json" | head -1)
cpu_per_order=$(read -r lu ls <"$out/load.cpu"; awk -v a="$cpu_before" -v b="$cpu_after" -v hz="$(getconf CLK_TCK)" -v n="$completed" -v lu="$lu" -v ls="$ls" \
  'BEGIN {printf "run %.2f ms, load %.2f ms", (b - a) * 1000 / hz / n, (lu + ls) * 1000 / n}')

# Each completed order is 8 events on the broker (placed, reserved,
# authorized, confirmed, shipment, committed, captured, completed).
ratio=$(awk -v s="$settled" -v p="$publish" 'BEGIN {printf "%.3f", s * 8 / p}')
cat <<SUMMARY | tee "$out/summary.txt"
machine:                $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(date -u +%Y-%m-%d)
broker raw limit:       $broker
max sustained rate:     $max orders/s (p99 completion ≤ 500 ms, no errors)
at $half orders/s for $sustain:
$(sed 's/^/  /' "$out/sustained.txt")
CPU per completed order: $cpu_per_order (at $half orders/s)
RSS:                    idle ${rss_idle} MiB, peak ${peak} MiB under load
broker use:             $settled orders/s × 8 events = $(awk -v s="$settled" 'BEGIN {printf "%d", s*8}') msgs/s = ${ratio} of the raw publish rate
SUMMARY
