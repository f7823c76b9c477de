#!/usr/bin/env bash
# Gateway benchmark: one fixed upstream called directly, through nginx (the
# Debian package, as a plain keep-alive reverse proxy), through a bare
# httputil.ReverseProxy with nothing else in it (the ceiling of any gateway
# built on it), through Caddy when `caddy` is on PATH (or CADDY names it:
# go install github.com/caddyserver/caddy/v2/cmd/caddy@v2.11.9), and
# through `ordermesh serve gateway` with JWT auth and a rate limit on — in
# the same run, with the same load tools:
#   wrk  (closed loop, 64 connections): requests/s at saturation, and each
#        proxy's CPU time (utime + stime from /proc) per request
#   hey  (open loop at a fixed rate):   latency percentiles, so "added p99"
#        compares like with like rather than queues at saturation
#
#   bench/gateway/run.sh                 # needs nginx, wrk, hey, openssl
#   DURATION=30s RATE=3000 bench/gateway/run.sh
#   PROFILE=/tmp/gw.pprof bench/gateway/run.sh   # also the gateway's CPU profile under wrk
set -euo pipefail
cd "$(dirname "$0")/../.."
out=bench/gateway/results
mkdir -p "$out"
dur=${DURATION:-15s}
conns=${CONNS:-64}
rate=${RATE:-2000}
for tool in nginx wrk hey openssl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (apt-get install -y nginx wrk hey openssl)"; exit 1; }
done
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$(cat "$tmp/nginx.pid" 2>/dev/null)" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

up=127.0.0.1:19201 gw=127.0.0.1:19202 ngx=127.0.0.1:19203 bare=127.0.0.1:19204 cdy=127.0.0.1:19205 nats=127.0.0.1:19222
caddy=${CADDY:-$(command -v caddy || true)}
echo "building…"
go build -o "$tmp/ordermesh" ./cmd/ordermesh
go build -o "$tmp/gwbench" ./bench/gateway

"$tmp/gwbench" upstream --addr "$up" & pids+=($!)
"$tmp/gwbench" nats --addr "$nats" --store "$tmp/nats" >/dev/null & pids+=($!)
openssl genpkey -algorithm ed25519 -out "$tmp/key.pem" 2>/dev/null
secret=$(openssl rand -hex 32)
wait_for() { for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/${1%:*}/${1#*:}") 2>/dev/null && return 0; sleep 0.1; done; echo "nothing listens on $1"; exit 1; }
"$tmp/gwbench" bare-proxy --addr "$bare" --upstream "http://$up" & pids+=($!)
bare_pid=$!
wait_for "$up"
wait_for "$nats"
"$tmp/ordermesh" serve gateway --addr "$gw" --nats "nats://$nats" --upstream "orders=http://$up" \
  --internal-secret "$secret" --jwt-key "$tmp/key.pem" --rate-limit 'orders:read=100000000/s' \
  --log-level warn ${PROFILE:+--pprof 127.0.0.1:19206} >"$tmp/gateway.log" 2>&1 & pids+=($!)
gw_pid=$!
targets="direct nginx bare gateway"
if [ -n "$caddy" ]; then
  printf '{\n  admin off\n  auto_https off\n}\nhttp://%s {\n  reverse_proxy %s\n}\n' "$cdy" "$up" >"$tmp/Caddyfile"
  "$caddy" run --config "$tmp/Caddyfile" --adapter caddyfile >"$tmp/caddy.log" 2>&1 & pids+=($!)
  caddy_pid=$!
  targets="direct nginx bare caddy gateway"
fi
cat >"$tmp/nginx.conf" <<NGINX
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  upstream up { server $up; keepalive 128; }
  server {
    listen $ngx;
    location / {
      proxy_pass http://up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
NGINX
nginx -c "$tmp/nginx.conf" -p "$tmp" & pids+=($!)
nginx_pid=$!
wait_for "$gw"
wait_for "$ngx"
wait_for "$bare"
[ -z "$caddy" ] || wait_for "$cdy"
token=$("$tmp/ordermesh" token --key "$tmp/key.pem" --sub ada --scopes orders:read --ttl 1h)
path=/api/orders/0193a3f0-5b1e-7c3a-9d2e-1f2a3b4c5d6e
code=$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" "http://$gw$path")
[ "$code" = 200 ] || { echo "gateway answered $code"; cat "$tmp/gateway.log"; exit 1; }
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$gw$path")
[ "$code" = 401 ] || { echo "gateway without a token answered $code, want 401"; exit 1; }

ms() { # "1.23ms" / "850.00us" / "1.2s" → milliseconds
  awk -v v="$1" 'BEGIN { if (v ~ /us$/) { sub(/us$/, "", v); print v/1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v+0 } else { sub(/s$/, "", v); print v*1000 } }'
}
ticks() { # utime + stime of the pids given, in clock ticks
  local sum=0 p
  for p in "$@"; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
  echo $sum
}
declare -A rps p99sat p50 p99 cpu
for target in $targets; do
  case $target in
  direct) addr=$up procs="" ;;
  nginx) addr=$ngx procs="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" ;;
  bare) addr=$bare procs=$bare_pid ;;
  caddy) addr=$cdy procs=$caddy_pid ;;
  gateway) addr=$gw procs=$gw_pid ;;
  esac
  url="http://$addr$path"
  wrk -t2 -c"$conns" -d5s -H "Authorization: Bearer $token" "$url" >/dev/null # warm up
  echo "wrk $target…"
  if [ "$target" = gateway ] && [ -n "${PROFILE:-}" ]; then # the gateway's CPU profile over its wrk run
    curl -s -o "$PROFILE" "http://127.0.0.1:19206/debug/pprof/profile?seconds=$(( ${dur%s} - 1 ))" &
  fi
  before=$(ticks $procs)
  wrk -t2 -c"$conns" -d"$dur" --latency -H "Authorization: Bearer $token" "$url" >"$out/wrk-$target.txt"
  after=$(ticks $procs)
  rps[$target]=$(awk '/^Requests\/sec/ {print int($2)}' "$out/wrk-$target.txt")
  n=$(awk '/requests in/ {print $1}' "$out/wrk-$target.txt")
  cpu[$target]=$(awk -v a="$before" -v b="$after" -v hz="$(getconf CLK_TCK)" -v n="$n" 'BEGIN { printf "%.0f", (b - a) * 1e6 / hz / n }')
  p99sat[$target]=$(ms "$(awk '$1 == "99%" {print $2}' "$out/wrk-$target.txt")")
  echo "hey $target at $rate/s…"
  hey -z "$dur" -c 20 -q $((rate / 20)) -H "Authorization: Bearer $token" "$url" >"$out/hey-$target.txt"
  p50[$target]=$(awk '$1 == "50%%" || $1 == "50%" {print $3*1000}' "$out/hey-$target.txt")
  p99[$target]=$(awk '$1 == "99%%" || $1 == "99%" {print $3*1000}' "$out/hey-$target.txt")
  non200=$(grep -E '^\s+\[[0-9]+\]' "$out/hey-$target.txt" | grep -v '\[200\]' || true)
  [ -z "$non200" ] || { echo "$target answered non-200: $non200"; exit 1; }
done

{
  echo "# gateway benchmark $(date -u +%FT%TZ) on $(nproc) CPUs"
  echo "wrk -t2 -c$conns -d$dur; hey -z $dur -c 20 at $rate req/s"
  echo
  echo "| path | req/s (wrk) | proxy CPU per request (wrk) | p99 at saturation | p50 at $rate/s | p99 at $rate/s |"
  echo "|---|---|---|---|---|---|"
  for t in $targets; do
    printf "| %s | %s | %s µs | %.2f ms | %.2f ms | %.2f ms |\n" "$t" "${rps[$t]}" "${cpu[$t]}" "${p99sat[$t]}" "${p50[$t]}" "${p99[$t]}"
  done
  echo
  awk -v g="${rps[gateway]}" -v n="${rps[nginx]}" 'BEGIN { printf "gateway req/s = %.0f%% of nginx (target ≥ 90%%)\n", 100*g/n }'
  awk -v g="${rps[gateway]}" -v b="${rps[bare]}" -v n="${rps[nginx]}" 'BEGIN { printf "bare ReverseProxy req/s = %.0f%% of nginx; gateway = %.0f%% of the bare ReverseProxy\n", 100*b/n, 100*g/b }'
  awk -v g="${p99[gateway]}" -v d="${p99[direct]}" -v n="${p99[nginx]}" 'BEGIN { printf "added p99 at the fixed rate: gateway %+.2f ms, nginx %+.2f ms (target < 1 ms)\n", g-d, n-d }'
} | tee "$out/summary.md"
