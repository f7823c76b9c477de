#!/usr/bin/env bash
# The long form of the scale-out fault test: TestScaledOutClusterSurvivesFaults
# (a 3-node JetStream cluster with R3 streams, PostgreSQL, two instances each of
# orders, inventory and payments as real processes; SIGKILL of the EVENTS
# stream leader, then of one orders, inventory and payments instance, restarts,
# then SIGSTOP of an inventory instance for 10 s while a second wave flows),
# RUNS times at each of RATES orders a second, ORDERS orders in the first wave
# and a quarter as many in the second. Each run checks every invariant (every
# order terminal, stock balanced and nothing reserved for an order that did not
# complete, at most one capture, no charge kept on a cancelled order, commit
# order in the stream, empty DLQ) and fails otherwise; this prints one line per
# run with the rate reached, the outcomes and each fault's recovery time.
#
#   ORDERMESH_TEST_POSTGRES=postgres://ordermesh:ordermesh@127.0.0.1:5432/ordermesh_test?sslmode=disable \
#   RATES="20 40" RUNS=3 ORDERS=1200 bench/faults/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${ORDERMESH_TEST_POSTGRES:?set ORDERMESH_TEST_POSTGRES to a PostgreSQL URL (a database ordermesh may create schemas in)}"
rates=${RATES:-"20 40"}
runs=${RUNS:-3}
orders=${ORDERS:-1200}
logs=$(mktemp -d /tmp/ordermesh-faults.XXXX)
go test -c -o "$logs/app.test" ./internal/app
echo "logs in $logs"
printf '%-5s %-4s %-6s %-22s %-70s %s\n' rate run result "first wave" outcomes "recoveries (s): leader kill, instance kills, node restart, instance restart, 10 s pause"
failed=0
for rate in $rates; do
  for run in $(seq 1 "$runs"); do
    log="$logs/rate$rate-run$run.log"
    result=pass
    ORDERMESH_CLUSTER_RATE=$rate ORDERMESH_CLUSTER_ORDERS=$orders "$logs/app.test" \
      -test.run '^TestScaledOutClusterSurvivesFaults$' -test.v -test.timeout 40m -test.count 1 >"$log" 2>&1 || { result=FAIL; failed=1; }
    wave=$(grep -o 'first wave: .*' "$log" | sed 's/first wave: //; s/ orders accepted in / in /' || true)
    outcomes=$(grep -o 'outcomes of .*' "$log" | sed 's/outcomes of //; s/map\[//; s/\]//' || true)
    recoveries=$(grep -o 'all settled [0-9.]*s after it' "$log" | grep -o '[0-9.][0-9.]*s' | tr '\n' ' ' || true)
    printf '%-5s %-4s %-6s %-22s %-70s %s\n' "$rate" "$run" "$result" "$wave" "$outcomes" "$recoveries"
  done
done
exit $failed
