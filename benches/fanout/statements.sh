#!/usr/bin/env bash
# Where PostgreSQL's share of a delivery goes, statement by statement (issue 13; figures in
# docs/performance.md, "The whole machine's CPU, and the budget for 80 %").
#
#   1. A PostgreSQL cluster of the script's own (initdb under /tmp, port $PG_PORT, the server's
#      defaults plus pg_stat_statements with planning tracked), so the machine's server is untouched.
#   2. The `ingest` and `one` configurations of benches/fanout/run.sh (one `http` handler to the local
#      sink, the dispatcher off, then on), the same load: voltage-loadgen, 64 connections, $SECONDS_
#      seconds, then until every delivery succeeded.
#   3. For each: the machine's CPU per request (every process and the kernel, from /proc/stat), and
#      the statements by time: calls, plans, rows, then execution time, planning time and WAL records
#      each divided by the run's requests (events ingested). Times are wall-clock inside the server,
#      so on a busy machine they include waiting for a core: compare rows of the same run, not runs
#      of different days.
#
# usage: benches/fanout/statements.sh          (SECONDS_=10 PG_PORT=5498 by default)
#        BIN=/path/to/voltage-webhooks ...     (another build, e.g. a previous commit's)
# Needs: root (the cluster runs as the postgres user), PostgreSQL 15+ binaries, psql, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib/common.sh
SECONDS_=${SECONDS_:-10}
PG_PORT=${PG_PORT:-5498}
work=$(mktemp -d /tmp/vw-statements.XXXXXX)
url=postgres://postgres@127.0.0.1:$PG_PORT/vw_fanout
loadgen=target/release/voltage-loadgen
# The same two cargo calls as benches/fanout/run.sh: built together with the example, the service
# binary is the same file in both scripts (built apart, features unified differently rebuild it).
cargo build --release --quiet -p voltage-webhooks --bin voltage-webhooks --example sink
cargo build --release --quiet -p voltage-loadgen
BIN=${BIN:-target/release/voltage-webhooks}

sink=
cleanup() {
  [ -n "$sink" ] && kill "$sink" 2>/dev/null
  stop_private_cluster "$work"
  rm -rf "$work"
}
trap cleanup EXIT

start_private_cluster "$work" "$PG_PORT" "shared_preload_libraries = 'pg_stat_statements'
pg_stat_statements.track = all
pg_stat_statements.track_planning = on"
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c 'CREATE DATABASE vw_fanout'
psql -q "$url" -c 'CREATE EXTENSION pg_stat_statements'
export VOLTAGE_WEBHOOKS_DATABASE__URL=$url
RUST_LOG=warn "$BIN" --config benches/fanout/one.toml migrate >/dev/null
target/release/examples/sink 127.0.0.1:18090 &
sink=$!

run() { # name dispatch-enabled
  local name=$1 enabled=$2 pid m0 m1 report requests
  psql -q "$url" -c 'TRUNCATE events, deliveries CASCADE' -c 'CHECKPOINT' \
    -c 'SELECT pg_stat_statements_reset()' >/dev/null 2>&1
  VOLTAGE_WEBHOOKS_DISPATCH__ENABLED=$enabled RUST_LOG=warn "$BIN" --config benches/fanout/one.toml \
    serve --no-migrate >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
  m0=$(machine_ticks)
  report=$("$loadgen" --config benches/fanout/one.toml --url http://127.0.0.1:18080 \
    --environment production --concurrency 64 --duration "${SECONDS_}s" 2>/dev/null || true)
  if [ "$enabled" = true ]; then
    while [ "$(psql -qAt "$url" -c "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'")" != 0 ]; do
      sleep 0.2
    done
  fi
  m1=$(machine_ticks)
  kill -TERM "$pid"; wait "$pid" || true
  requests=$(awk '/^requests/ {print $2}' <<<"$report")
  printf '%s: %s req/s during the load; machine busy %.0f%%, CPU/request (every process and the kernel) %.0f µs\n' \
    "$name" "$(awk '/^requests/ {print $7}' <<<"$report")" \
    "$(busy_percent "$m0" "$m1")" "$(cpu_per_request "$m0" "$m1" "$requests")"
  psql -q "$url" -v requests="$requests" <<'SQL'
SELECT calls, plans, rows,
       round((total_exec_time / :requests * 1000)::numeric, 1) AS "exec µs/request",
       round((total_plan_time / :requests * 1000)::numeric, 1) AS "plan µs/request",
       round(wal_records::numeric / :requests, 2) AS "WAL records/request",
       left(regexp_replace(query, '\s+', ' ', 'g'), 70) AS statement
FROM pg_stat_statements
WHERE query NOT LIKE '%pg_stat_statements%' AND query NOT LIKE 'TRUNCATE%' AND query <> 'CHECKPOINT'
  AND query NOT LIKE 'SELECT count(*) FROM deliveries WHERE status <>%'
ORDER BY total_exec_time + total_plan_time DESC LIMIT 8;
SQL
}

run ingest false
run one true
