#!/usr/bin/env bash
# Growth: does ingest hold its rate as `events` grows to millions of rows, and do the event list's
# filters stay fast at that size? (issue 16; figures in docs/performance.md, "Growth")
#
#   1. A PostgreSQL cluster of the benchmark's own (initdb under /tmp, port $PG_PORT, the server's
#      defaults plus $PG_SETTINGS), so settings can be compared without touching any other server.
#   2. The single-row ceiling: pgbench, `INSERT ... ON CONFLICT DO NOTHING` of the same 1.5 KB body
#      into a table shaped like `events`, 32 clients, two runs of 15 s (their mean is the ceiling).
#   3. The service (release build, one handler so each event writes its outbox row, no dispatcher)
#      and the load generator at $CONCURRENCY in flight, in slices of $SLICE, until $ROWS events are
#      stored. After each slice: rows, req/s, p99, WAL bytes and full-page images per event,
#      checkpoints so far, shared buffers the backends wrote out themselves per event. At the end:
#      throughput per $STEP rows, and its ratio to the ceiling.
#   4. Where the WAL goes: full-page images by relation over a few seconds of the last slice
#      (pg_walinspect).
#   5. At $ROWS: a realistic mix of rare kinds (2 % send.failed, 1 % test.created, 1 % reconciled)
#      is set on existing rows, VACUUM ANALYZE, then each documented filter of GET /events, $QUERIES
#      requests in a row through the HTTP API: p50 and p99.
#
# usage: benches/growth/run.sh                 (ROWS=5000000 STEP=500000 by default)
#        ROWS=2000000 benches/growth/run.sh    (a shorter run for iteration)
#        BIN=/path/to/voltage-webhooks ...     (another build, e.g. a previous commit's, to compare)
#        PG_SETTINGS="max_wal_size = '8GB'
#        wal_compression = lz4" ...            (lines appended to the cluster's postgresql.conf)
#        SKIP_QUERIES=1 ...                    (ingest only)
#        KEEP=1 ...                            (leave the cluster and its data under /tmp afterwards)
#        QUERIES=200 PG_PORT=5499 CONCURRENCY=128 SLICE=15s STEP=500000 (the other knobs, defaults shown)
#        OLD_DEDUP=1 ...                       (the constraint events_dedup back on its former index,
#                                               (environment, dedup_key) keyed by SHA-256: the
#                                               same binary, before and after the dedup change)
# Needs: root (the cluster runs as the postgres user), PostgreSQL 15+ binaries, pgbench, psql, curl.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib/common.sh
ROWS=${ROWS:-5000000}
STEP=${STEP:-500000}
CONCURRENCY=${CONCURRENCY:-128}
SLICE=${SLICE:-15s}
QUERIES=${QUERIES:-200}
PG_PORT=${PG_PORT:-5499}
PG_SETTINGS=${PG_SETTINGS:-}
KEEP=${KEEP:-0}
work=$(mktemp -d /tmp/vw-growth.XXXXXX)
url=postgres://postgres@127.0.0.1:$PG_PORT/vw_growth
port=18180
base=http://127.0.0.1:$port

# The load generator is always this checkout's (crates/loadgen); the service may be another build.
cargo build --release --quiet -p voltage-loadgen
LOADGEN=$(realpath target/release/voltage-loadgen)
if [ -z "${BIN:-}" ]; then
  cargo build --release --quiet --bin voltage-webhooks
  BIN=target/release/voltage-webhooks
fi
BIN=$(realpath "$BIN")

service_pid=
cleanup() {
  [ -n "$service_pid" ] && kill -TERM "$service_pid" 2>/dev/null && wait "$service_pid" 2>/dev/null
  stop_private_cluster "$work"
  if [ "$KEEP" = 1 ]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

start_private_cluster "$work" "$PG_PORT" "$PG_SETTINGS"
psql -q "postgres://postgres@127.0.0.1:$PG_PORT/postgres" -c 'CREATE DATABASE vw_growth'
sql() { psql -qtA "$url" -c "$1"; }

sed -e "s|^url = .*|url = \"$url\"|" -e "s|^listen = .*|listen = \"127.0.0.1:$port\"|" \
  benches/ingest/perf.toml >"$work/growth.toml"
config=$work/growth.toml
RUST_LOG=warn "$BIN" --config "$config" migrate
if [ "${OLD_DEDUP:-0}" = 1 ]; then
  sql 'ALTER TABLE events DROP CONSTRAINT events_dedup, ADD CONSTRAINT events_dedup UNIQUE (environment, dedup_key)'
fi

echo "# machine: $(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GiB; $(date -u +%FT%TZ); binary $BIN"
echo "# postgres: $(sql 'SHOW server_version'); $(sql "SELECT string_agg(name || '=' || current_setting(name), ' ') FROM pg_settings WHERE name IN ('shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'wal_compression', 'full_page_writes', 'synchronous_commit', 'wal_buffers')")"
echo "# events indexes: $(sql "SELECT string_agg(indexrelid::regclass::text, ' ') FROM pg_index WHERE indrelid = 'events'::regclass")"

# --- the single-row ceiling ----------------------------------------------------------------------
sql 'CREATE TABLE bench_events (LIKE events INCLUDING ALL)'
ceilings=()
for run in 1 2; do
  sql 'TRUNCATE bench_events' >/dev/null; sql 'CHECKPOINT' >/dev/null
  tps=$(pgbench -n -c 32 -j 2 -T 15 -f benches/pgbench/single_row_insert.sql "$url" 2>/dev/null | awk '/^tps/ {print $3}')
  ceilings+=("${tps%.*}")
  echo "pgbench single-row INSERT ... ON CONFLICT, 32 clients, 15 s, run $run: ${tps%.*} tps"
done
ceiling=$(printf '%s\n' "${ceilings[@]}" | sort -n | head -1)
ceiling=$(( (ceiling + $(printf '%s\n' "${ceilings[@]}" | sort -n | tail -1)) / 2 ))
echo "ceiling (mean of the two runs): $ceiling tps"
sql 'DROP TABLE bench_events'; sql 'CHECKPOINT' >/dev/null

# --- ingest in slices ----------------------------------------------------------------------------
RUST_LOG=warn "$BIN" --config "$config" serve --no-migrate >"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done

wal_lsn() { sql 'SELECT pg_current_wal_lsn()'; }
fpi() { sql 'SELECT wal_fpi FROM pg_stat_wal'; }
checkpoints() { sql 'SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter'; }
# Shared buffers written out by the backends themselves (no clean buffer to evict into: the
# background writer fell behind), which they do while a statement, i.e. an ingest batch, waits.
backend_writes() { sql 'SELECT buffers_backend FROM pg_stat_bgwriter'; }
rows=0
slices=$work/slices
: >"$slices"
echo "slice: rows_before rows_after seconds req/s p99_ms wal_bytes/event fpi/event checkpoints backend_writes/event"
while [ "$rows" -lt "$ROWS" ]; do
  lsn0=$(wal_lsn); fpi0=$(fpi); bw0=$(backend_writes)
  last=$(( rows + 200000 >= ROWS ))
  if [ "$last" = 1 ]; then
    # Full-page images by relation over 4 s in the middle of the last slice.
    ( sleep 4; wal_lsn >"$work/inspect.start"; sleep 4; wal_lsn >"$work/inspect.end" ) &
    inspect=$!
  fi
  report=$("$LOADGEN" --config "$config" --url "$base" --environment production \
    --concurrency "$CONCURRENCY" --duration "$SLICE")
  lsn1=$(wal_lsn); fpi1=$(fpi); bw1=$(backend_writes)
  stored=$(grep -o ' 200=[0-9]*' <<<"$report" | cut -d= -f2 || echo 0)
  seconds=$(awk '/^requests/ {print $4}' <<<"$report")
  p99=$(awk '/^requests/ {for (i = 1; i <= NF; i++) if ($i == "p99") print $(i + 1)}' <<<"$report")
  wal=$(sql "SELECT pg_wal_lsn_diff('$lsn1', '$lsn0')")
  line=$(awk -v r0="$rows" -v n="${stored:-0}" -v s="$seconds" -v p="$p99" -v w="$wal" -v f0="$fpi0" -v f1="$fpi1" -v c="$(checkpoints)" \
    -v b0="$bw0" -v b1="$bw1" \
    'BEGIN {printf "%d %d %.2f %.0f %s %.0f %.3f %d %.3f", r0, r0 + n, s, n / s, p, w / (n ? n : 1), (f1 - f0) / (n ? n : 1), c, (b1 - b0) / (n ? n : 1)}')
  echo "$line" >>"$slices"
  echo "slice: $line"
  rows=$(( rows + ${stored:-0} ))
  if [ "$last" = 1 ]; then wait "$inspect"; fi
done
echo "$report" | sed -n '/^server stages/,$p'

echo
echo "throughput per $STEP rows (slices counted in the step they start in):"
awk -v step="$STEP" -v ceiling="$ceiling" '
  { b = int($1 / step); rows[b] += $2 - $1; secs[b] += $3; wal[b] += $6 * ($2 - $1); fpi[b] += $7 * ($2 - $1); if (b > last) last = b }
  END {
    for (b = 0; b <= last; b++) {
      rate = rows[b] / secs[b]
      if (b == 0) first = rate
      printf "  %5.1fM-%4.1fM: %6.0f events/s  (%.2fx the ceiling, %3.0f%% of the first step)  WAL %5.0f B/event  FPI %.3f/event\n",
        b * step / 1e6, (b + 1) * step / 1e6, rate, rate / ceiling, 100 * rate / first, wal[b] / rows[b], fpi[b] / rows[b]
    }
  }' "$slices"
echo "events stored: $(sql "SELECT count(*) FROM events")"
echo "sizes: $(sql "SELECT string_agg(c.relname || ' ' || pg_size_pretty(pg_relation_size(c.oid)), ', ' ORDER BY pg_relation_size(c.oid) DESC) FROM pg_class c WHERE c.relname IN (SELECT indexrelid::regclass::text FROM pg_index WHERE indrelid = 'events'::regclass) OR c.relname = 'events'")"

if [ -s "$work/inspect.start" ] && [ -s "$work/inspect.end" ]; then
  sql 'CREATE EXTENSION IF NOT EXISTS pg_walinspect' >/dev/null
  echo
  echo "WAL over 4 s of the last slice, by relation (pg_walinspect):"
  psql -q "$url" -c "
    WITH records AS (
      SELECT (regexp_match(block_ref, 'rel \d+/\d+/(\d+)'))[1]::oid AS node, fpi_length, record_length
      FROM pg_get_wal_records_info('$(cat "$work/inspect.start")', '$(cat "$work/inspect.end")'))
    SELECT coalesce(c.relname, '(other)') AS relation, count(*) AS records,
      count(*) FILTER (WHERE fpi_length > 0) AS full_page_images,
      pg_size_pretty(sum(record_length)) AS wal, pg_size_pretty(sum(fpi_length)) AS of_which_fpi
    FROM records LEFT JOIN pg_class c ON c.relfilenode = records.node
    GROUP BY 1 ORDER BY sum(record_length) DESC LIMIT 12"
fi

# --- the event list at this size -----------------------------------------------------------------
kill -TERM "$service_pid"; wait "$service_pid" || true
if [ "${SKIP_QUERIES:-0}" = 1 ]; then exit 0; fi
echo
echo "mixing rare kinds into the stored events (2 % send.failed, 1 % test.created, 1 % reconciled)..."
sql "UPDATE events SET event_type = 'send', event = 'failed' WHERE get_byte(dedup_key, 0) < 5" >/dev/null
sql "UPDATE events SET event_type = 'test', event = 'created' WHERE get_byte(dedup_key, 0) BETWEEN 5 AND 7" >/dev/null
sql "UPDATE events SET source = 'reconciliation' WHERE get_byte(dedup_key, 1) < 3" >/dev/null
sql 'VACUUM ANALYZE events' >/dev/null
RUST_LOG=warn "$BIN" --config "$config" serve --no-migrate >>"$work/service.log" 2>&1 &
service_pid=$!
for _ in $(seq 100); do curl -sf "$base/healthz" >/dev/null && break; sleep 0.1; done
key=$("$BIN" --config "$config" api-key create --name growth --environment production --permission read | head -1)
payment=$(sql "SELECT payment_id FROM events ORDER BY id DESC LIMIT 1 OFFSET 1000000")
read -r t0 t1 < <(sql "SELECT to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), to_char((received_at + interval '1 minute') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') FROM events ORDER BY id LIMIT 1 OFFSET $((ROWS / 2))" | tr '|' ' ')
echo "each filter: $QUERIES pages of 100 in a row, one connection (curl), at $(sql 'SELECT count(*) FROM events') events"
printf '  %-48s %8s %8s %8s %6s\n' filter p50_ms p99_ms events pages
for filter in "" "type=test" "type=receive" "type=send,test" "event=failed" "type=receive&event=completed" \
  "type=send&event=failed" "type=send,test&event=failed,created" "payment_id=$payment" \
  "source=reconciliation" "source=webhook" "source=reconciliation&type=send" \
  "received_after=$t0&received_before=$t1" "event=failed&received_after=$t0&received_before=$t1" \
  "type=test&order=asc"; do
  path="/v1/environments/production/events?limit=100${filter:+&$filter}"
  count=$(curl -sf -H "x-api-key: $key" "$base$path" | grep -o '"id":' | wc -l)
  first=$(curl -sf -H "x-api-key: $key" -o /dev/null -w '%{time_total}' "$base$path")
  n=$QUERIES
  # A filter that scans (a build without the indexes) takes seconds a page: 10 are enough.
  if awk -v t="$first" 'BEGIN {exit !(t > 0.2)}'; then n=10; fi
  urls=()
  for _ in $(seq "$n"); do urls+=(-o /dev/null "$base$path"); done
  curl -sf -H "x-api-key: $key" -w '%{time_total}\n' "${urls[@]}" | sort -n |
    awk -v name="${filter:-(none)}" -v n="$count" '{t[NR] = $1 * 1000} END {i = int(NR * 0.99); if (i < 1) i = 1; printf "  %-48s %8.2f %8.2f %8d %6d\n", substr(name, 1, 48), t[int((NR + 1) / 2)], t[i], n, NR}'
done
