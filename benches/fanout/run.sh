#!/usr/bin/env bash
# Fan-out at ingest speed, as docs/performance.md reports it: in each round, the same load
# (voltage-loadgen, 64 connections, 10 s) against
#   ingest   one http handler, dispatch.enabled = false (the outbox row is written, nobody sends it)
#   one      one http handler to a local sink (examples/sink.rs), dispatcher inside serve
#   ingest10 ten http handlers, dispatch.enabled = false
#   ten      ten http handlers, dispatcher inside serve
# For each: req/s during the load, deliveries still undelivered when the load ends, the time until
# every delivery succeeded, events per second over load + drain ("sustained"), and CPU per request
# of the service and of all PostgreSQL processes (load + drain), from /proc; then how busy the whole
# machine was and its CPU per request (every process, the load generator and the sink included, and
# the kernel), from /proc/stat.
# Each round starts with the floor (the load generator straight at the sink: the CPU of an HTTP call
# alone) and ends with the ratios one/ingest and ten/ingest10 of the sustained rates (the target of
# issue 13: one handler at least 80 % of ingest alone), each beside the ratio the CPU allows: the
# machine's CPU per event without the handler over that with it. When the runs keep the machine busy,
# the sustained ratio cannot exceed it at that cost per delivery.
# usage: benches/fanout/run.sh [rounds=2] [seconds=10]
#   BASELINE=path/to/another/voltage-webhooks also runs ingest and one with that binary in every
#   round (base-ingest, base-one), for a before/after in the same run on the same machine.
# Needs: PostgreSQL on 127.0.0.1:5432 accepting postgres (database vw_fanout is created), psql.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib/common.sh
rounds=${1:-2}
seconds=${2:-10}
url=postgres://postgres@127.0.0.1:5432/vw_fanout
bin=target/release/voltage-webhooks
loadgen=target/release/voltage-loadgen
cargo build --release --quiet -p voltage-webhooks --bin voltage-webhooks --example sink
cargo build --release --quiet -p voltage-loadgen
target/release/examples/sink 127.0.0.1:18090 &
sink=$!
trap 'kill $sink 2>/dev/null || true' EXIT
RUST_LOG=warn "$bin" --config benches/fanout/one.toml migrate

ticks() { awk '{print $14 + $15 + $16 + $17}' "/proc/$1/stat" 2>/dev/null || echo 0; }
pg_ticks() { local t=0; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
# CPU per request in µs between two tick readings $1 and $2 (ticks are 10 ms), over $3 requests.
ticks_per_request() { awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {print (b - a) * 10000 / n}'; }
# Transactions committed in vw_fanout, and updates of deliveries rows (all, HOT): per request below.
db_stats() {
  psql -qAt -F ' ' "$url" -c "SELECT pg_stat_force_next_flush()" -c "SELECT d.xact_commit, t.n_tup_upd, t.n_tup_hot_upd
    FROM pg_stat_database d, pg_stat_user_tables t WHERE d.datname = current_database() AND t.relname = 'deliveries'" | tail -1
}
undelivered() { psql -qAt "$url" -c "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'"; }

run() { # name config dispatch-enabled [binary]
  local name=$1 config=$2 enabled=$3 bin=${4:-$bin}
  psql -q "$url" -c 'TRUNCATE events, deliveries CASCADE' -c 'CHECKPOINT' >/dev/null 2>&1
  VOLTAGE_WEBHOOKS_DISPATCH__ENABLED=$enabled RUST_LOG=warn "$bin" --config "$config" serve --no-migrate >/dev/null 2>&1 &
  local pid=$!
  for _ in $(seq 100); do curl -sf http://127.0.0.1:18080/healthz >/dev/null && break; sleep 0.1; done
  local svc0 pg0 start report rps requests left drained=0 svc1 pg1
  local st0 st1 m0 m1 sink0 sink1
  st0=$(db_stats)
  svc0=$(ticks "$pid"); pg0=$(pg_ticks); sink0=$(ticks "$sink"); m0=$(machine_ticks); start=$(date +%s.%N)
  report=$("$loadgen" --config "$config" --url http://127.0.0.1:18080 --environment production \
    --concurrency 64 --duration "${seconds}s" || true)
  rps=$(awk '/^requests/ {print $7}' <<<"$report")
  requests=$(awk '/^requests/ {print $2}' <<<"$report")
  left=$(undelivered)
  if [ "$enabled" = true ]; then
    while [ "$(undelivered)" != 0 ]; do sleep 0.2; done
    drained=$(awk -v s="$start" -v e="$(date +%s.%N)" -v d="$seconds" 'BEGIN {printf "%.1f", e - s - d}')
  fi
  svc1=$(ticks "$pid"); pg1=$(pg_ticks); sink1=$(ticks "$sink"); m1=$(machine_ticks)
  st1=$(db_stats)
  kill -TERM "$pid"; wait "$pid" || true
  local sustained
  sustained=$(awk -v n="$requests" -v d="$seconds" -v x="$drained" 'BEGIN {printf "%.0f", n / (d + (x > 0 ? x : 0))}')
  sustained_of[$name]=$sustained
  # Machine CPU per request (µs; ticks are 10 ms), kept for the round's CPU-bound ratio.
  cpu_of[$name]=$(cpu_per_request "$m0" "$m1" "$requests")
  printf '%-11s %8s req/s  undelivered at the end of the load %7s  all delivered %5s s later  sustained %6s events/s  CPU/request: service %4.0f µs, PostgreSQL %4.0f µs  commits/request %5.2f  deliveries updates/request %5.2f (HOT %3.0f%%)\n' \
    "$name" "$rps" "$left" "$([ "$enabled" = true ] && echo "$drained" || echo n/a)" "$sustained" \
    "$(ticks_per_request "$svc0" "$svc1" "$requests")" \
    "$(ticks_per_request "$pg0" "$pg1" "$requests")" \
    $(awk -v a="$st0" -v b="$st1" -v n="$requests" 'BEGIN {split(a, x, " "); split(b, y, " "); u = y[2] - x[2];
      printf "%s %s %s", (y[1] - x[1]) / n, u / n, (u > 0 ? 100 * (y[3] - x[3]) / u : 0)}')
  printf '%-11s machine busy %3.0f%% of its cores over load + drain; CPU/request, every process and the kernel: %4s µs (sink %3.0f µs)\n' \
    "" "$(busy_percent "$m0" "$m1")" "${cpu_of[$name]}" "$(ticks_per_request "$sink0" "$sink1" "$requests")"
}

# The floor of a call: the same load straight at the sink (no service, no database), the machine's
# CPU per HTTP request of the load generator's lean client and the sink. A delivery makes one such
# request (with the service's client), so it costs at least this much on top of its database writes.
floor() {
  local m0 m1 report requests
  m0=$(machine_ticks)
  report=$("$loadgen" --config benches/fanout/one.toml --url http://127.0.0.1:18090/hook \
    --environment production --concurrency 64 --duration "${seconds}s" 2>/dev/null || true)
  m1=$(machine_ticks)
  requests=$(awk '/^requests/ {print $2}' <<<"$report")
  printf '%-11s %8s req/s straight at the sink  machine busy %3.0f%%; CPU/request, every process and the kernel: %4.0f µs\n' \
    floor "$(awk '/^requests/ {print $7}' <<<"$report")" \
    "$(busy_percent "$m0" "$m1")" "$(cpu_per_request "$m0" "$m1" "$requests")"
}

declare -A sustained_of cpu_of
# What the CPU allows: if both runs kept the machine busy, one/ingest can be no more than the ingest's
# CPU per event over the CPU per event with the handler.
cpu_bound() { awk -v a="${cpu_of[$1]}" -v b="${cpu_of[$2]}" 'BEGIN {printf "%.0f%%", (a > 0 ? 100 * b / a : 0)}'; }
ratio() { awk -v a="${sustained_of[$1]}" -v b="${sustained_of[$2]}" 'BEGIN {printf "%.0f%%", (b > 0 ? 100 * a / b : 0)}'; }
for round in $(seq "$rounds"); do
  echo "round $round"
  floor
  if [ -n "${BASELINE:-}" ]; then
    run base-ingest benches/fanout/one.toml false "$BASELINE"
    run base-one benches/fanout/one.toml true "$BASELINE"
  fi
  run ingest benches/fanout/one.toml false
  run one benches/fanout/one.toml true
  run ingest10 benches/fanout/ten.toml false
  run ten benches/fanout/ten.toml true
  line="round $round: one/ingest $(ratio one ingest) (CPU per event allows $(cpu_bound one ingest)), ten/ingest10 $(ratio ten ingest10) (allows $(cpu_bound ten ingest10))"
  [ -n "${BASELINE:-}" ] && line="$line, baseline one/ingest $(ratio base-one base-ingest) (allows $(cpu_bound base-one base-ingest))"
  echo "$line"
done
