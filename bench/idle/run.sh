#!/usr/bin/env bash
# Idle cost: a fresh `ordermesh run` with no traffic. After a warm-up it
# reads the process's CPU time (utime + stime) over IDLE seconds and its
# resident memory, and keeps a CPU profile of the same window when
# PROFILE=FILE is set.
#
#   bench/idle/run.sh                       # 60 s
#   IDLE=30 PROFILE=/tmp/idle.pprof BIN=./ordermesh bench/idle/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
idle=${IDLE:-60}
addr=127.0.0.1:18491
pprof=127.0.0.1:18492
tmp=$(mktemp -d)
if [ -n "${BIN:-}" ]; then cp "$BIN" "$tmp/ordermesh"; else go build -o "$tmp/ordermesh" ./cmd/ordermesh; fi
"$tmp/ordermesh" run --data "$tmp/data" --addr "$addr" --metrics-addr 127.0.0.1:0 --pprof "$pprof" --log-level warn >"$tmp/run.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
sleep 5 # start-up work (migrations, stream and consumer creation) settles
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(cpu)
if [ -n "${PROFILE:-}" ]; then
  curl -sf "http://$pprof/debug/pprof/profile?seconds=$idle" -o "$PROFILE"
else
  sleep "$idle"
fi
after=$(cpu)
rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
awk -v a="$before" -v b="$after" -v hz="$hz" -v s="$idle" -v rss="$rss" 'BEGIN {
  printf "idle %d s: %.0f ms CPU (%.2f%% of a core), %.0f MiB resident\n", s, (b - a) * 1000 / hz, (b - a) * 100 / hz / s, rss / 1024 }'
