#!/usr/bin/env bash
# Overload: a fresh `ordermesh run` offered more orders than it carries
# (RATE, default 1000/s, for DURATION, default 15s), then drained. Prints
# what became of them: completed, cancelled as timeouts (accepted, then
# lost to the queue), refused with 503 (the client may retry), and the
# completion p99 of those accepted. BIN picks the binary (to compare builds
# in one run); the default builds this tree.
#
#   bench/overload/run.sh
#   BIN=/tmp/ordermesh-old RATE=800 bench/overload/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
rate=${RATE:-1000}
duration=${DURATION:-15s}
addr=127.0.0.1:18482
tmp=$(mktemp -d)
if [ -n "${BIN:-}" ]; then cp "$BIN" "$tmp/ordermesh"; else go build -o "$tmp/ordermesh" ./cmd/ordermesh; fi
"$tmp/ordermesh" run --data "$tmp/data" --addr "$addr" --metrics-addr 127.0.0.1:0 --log-level warn >"$tmp/run.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 1 100); do curl -sf "http://$addr/readyz" >/dev/null && break; sleep 0.1; done
"$tmp/ordermesh" load --target "http://$addr" --data "$tmp/data" --rate 10 --duration 1s >/dev/null 2>&1 # products, warm-up
"$tmp/ordermesh" load --target "http://$addr" --data "$tmp/data" --rate "$rate" --duration "$duration" \
  --drain 90s --json "$tmp/load.json" >/dev/null 2>&1 || true
python3 - "$tmp/load.json" "$rate" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["result"]
errs = r.get("errors") or {}
reasons = r.get("cancel_reasons") or {}
c = r.get("completion_latency") or {}
print(f"{sys.argv[2]} orders/s offered: sent {r['sent']}, accepted {r['accepted']}, completed {r['completed']}, "
      f"timeouts {reasons.get('timeout', 0)}, refused 503 {errs.get('http_503', 0)}, other errors "
      f"{sum(v for k, v in errs.items() if k != 'http_503')}, unsettled {r['unsettled']}; "
      f"completion p50 {c.get('p50_ms', 0):.0f} ms, p99 {c.get('p99_ms', 0):.0f} ms")
PY
