#!/usr/bin/env bash
# Ingest throughput and latency as README "Performance" reports them, on one machine:
#   rounds of (pgbench baseline, 32 clients, 10 s) then (the service at 256 in flight, 10 s), alternating
#   because a shared machine's speed drifts; then three runs at half the median maximum with the
#   database check and p99 per second. Tables are truncated and a CHECKPOINT taken before every run.
# usage: benches/ingest/run.sh [rounds=3] [rate=half the median maximum]
# Needs: PostgreSQL on 127.0.0.1:5432 accepting postgres (database vw_perf is created), pgbench, psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
url=postgres://postgres@127.0.0.1:5432/vw_perf
config=benches/ingest/perf.toml
bin=target/release/voltage-webhooks
loadgen=target/release/voltage-loadgen
cargo build --release --quiet -p voltage-webhooks -p voltage-loadgen --bins
RUST_LOG=warn "$bin" --config "$config" migrate
psql -q "$url" -c 'SET client_min_messages = warning' \
  -c 'CREATE TABLE IF NOT EXISTS bench_events (LIKE events INCLUDING ALL)'

fresh() { psql -q "$url" -c 'TRUNCATE events, deliveries, bench_events CASCADE' -c 'CHECKPOINT' >/dev/null 2>&1; }

load() { # loadgen arguments...; prints the loadgen report
  fresh
  RUST_LOG=warn "$bin" --config "$config" serve --no-migrate >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
  "$loadgen" --config "$config" --url http://127.0.0.1:18080 --environment production "$@" || true
  kill -TERM "$pid"; wait "$pid" || true
}

maxima=()
for round in $(seq "$rounds"); do
  fresh
  tps=$(pgbench -n -c 32 -j 2 -T 10 -f benches/pgbench/single_row_insert.sql "$url" 2>/dev/null | awk '/^tps/ {print $3}')
  report=$(load --concurrency 256 --duration 10s)
  rps=$(awk '/^requests/ {print $7}' <<<"$report")
  maxima+=("$rps")
  echo "round $round: pgbench ${tps%.*} tps; service $rps req/s; ratio $(awk -v s="$rps" -v t="$tps" 'BEGIN {printf "%.2f", s / t}')"
  echo "  $(head -1 <<<"$report")"
done

median=$(printf '%s\n' "${maxima[@]}" | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
rate=${2:-$((median / 2))}
for run in 1 2 3; do
  echo "half the median maximum ($median req/s): --rate $rate, run $run"
  load --concurrency 256 --rate "$rate" --duration 10s --check-database --timeline 1s | sed 's/^/  /'
done
