#!/usr/bin/env bash
# System test of the deployment: replicas behind a real load balancer, real restarts, real network
# faults, all on this one machine (docs/testing.md, "System test").
#
#   voltage-loadgen (root ns) --> HAProxy 127.0.0.1:28080 --lb net 10.231.1.0/24--> replica N (netns vwsys-rN)
#                                                                         |-> sink 10.231.1.1:28090 (http handler)
#                                                                         |-> NATS 10.231.1.1:24222 (nats handler)
#   replica N --db net 10.231.2.0/24--> PostgreSQL 10.231.2.1:25432 (its own, initdb in a temp dir)
#
# Each replica has two veth pairs, one per network, so cutting its database link (scenario 4) leaves
# its load-balancer link up. Scenarios:
#   0 no fault: the baseline
#   1 rolling restart (SIGTERM, drain, start) of every replica under load
#   2 SIGKILL of one replica under load, then start it again
#   3 pg_ctl restart -m fast, then -m immediate, under load
#   4 one replica's database link down under load, then up
#   5 2 ms RTT between replicas and PostgreSQL (tests/system/delay_proxy.py): throughput and p99
#
# usage: tests/system/run.sh [--short | --long] [--scenarios 0,1,2,3,4,5] [--binary PATH] [--loadgen PATH]
#   --short (CI): the debug binaries the test run built (the service's and voltage-loadgen's), 200 req/s,
#   a few seconds of load per scenario.
#   --long: the release binaries (built here), 600 req/s, longer loads.
# Needs root, iproute2, haproxy, nats-server, PostgreSQL's server binaries, python3. Exits non-zero
# when a scenario's requirement is violated. Cleans up everything it made on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=tests/system

mode=short scenarios=0,1,2,3,4,5 binary= loadgen=
while [ $# -gt 0 ]; do
  case $1 in
    --short) mode=short ;;
    --long) mode=long ;;
    --scenarios) scenarios=$2; shift ;;
    --binary) binary=$2; shift ;;
    --loadgen) loadgen=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

# ---------------------------------------------------------------------------------------------------
# Settings. The balancer's health check and the service's drain delay are the pair scenario 1 proves:
# a replica told to stop answers /readyz 503 at once; HAProxy checks every CHECK_INTER and takes it
# out after CHECK_FALL failures (at most INTER x FALL + timeout check = 2 s); the replica keeps its
# listener open for DRAIN_MS (3 s, above that) so nothing is refused while HAProxy still sends to it.
REPLICAS=3
CHECK_INTER=500ms CHECK_FALL=2 CHECK_RISE=2 CHECK_TIMEOUT=1s
DRAIN_MS=3000 DEADLINE_MS=10000
# Handler calls at once per replica: a replica that loses its database or dies may have made this many
# calls whose success it could not record; they are made again (at-least-once), and no more.
MAX_IN_FLIGHT=32
PREFIX=vwsys
LB_NET=10.231.1 DB_NET=10.231.2 # .1 is the root namespace's bridge address; replica N is .(10+N)
HAPROXY_PORT=28080 HAPROXY_STATS_PORT=28081 PG_PORT=25432 NATS_PORT=24222 NATS_MONITOR_PORT=28222
SINK_PORT=28090 DELAY0_PORT=25433 DELAY2_PORT=25434
DB_NAME=vw_system
if [ "$mode" = long ]; then
  RATE=600 CONCURRENCY=512 BASE_LOAD=8 PERF_SECONDS=10 DELIVERY_WAIT=240
else
  RATE=200 CONCURRENCY=256 BASE_LOAD=4 PERF_SECONDS=4 DELIVERY_WAIT=60
fi
WINDOW=0.5

# The load generator is its own crate (crates/loadgen), built beside the service.
if [ -z "$binary" ] || [ -z "$loadgen" ]; then
  if [ "$mode" = long ]; then
    cargo build --release --quiet -p voltage-webhooks -p voltage-loadgen --bins
    profile=release
  else
    # After `cargo test --workspace`: the service's binary is the same artifact, the generator's a link.
    cargo build --quiet -p voltage-webhooks -p voltage-loadgen --bins
    profile=debug
  fi
  binary=${binary:-target/$profile/voltage-webhooks}
  loadgen=${loadgen:-target/$profile/voltage-loadgen}
fi
binary=$(realpath "$binary")
loadgen=$(realpath "$loadgen")
for tool in ip haproxy nats-server python3 curl psql; do
  command -v "$tool" >/dev/null || { echo "system test: $tool is not installed" >&2; exit 1; }
done
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ "$(id -u)" = 0 ] || { echo "system test: needs root (network namespaces)" >&2; exit 1; }

work=$(mktemp -d /tmp/vwsys.XXXXXX)
chmod 755 "$work"
pgdata=$work/postgres/data pglog=$work/postgres/server.log
failures=()
declare -A replica_pid
aux_pids=()

log() { printf '\n[%s] == %s\n' "$(date -u +%H:%M:%S)" "$*"; }
note() { printf '   %s\n' "$*"; }
fail() { printf '   FAIL: %s\n' "$*"; failures+=("scenario $scenario: $*"); }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN {printf "%.2f", b - a}'; }

# ---------------------------------------------------------------------------------------------------
# Clean-up: everything this script made, whether it passed, failed or was interrupted.
cleanup() {
  set +e
  exec 2>/dev/null # the shell's notices of the jobs killed here
  for i in "${!replica_pid[@]}"; do kill -KILL "${replica_pid[$i]}" 2>/dev/null; done
  for pid in "${aux_pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  [ -f "$work/haproxy.pid" ] && kill -KILL "$(cat "$work/haproxy.pid")" 2>/dev/null
  [ -d "$pgdata" ] && runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdata" -m immediate -w stop >/dev/null 2>&1
  remove_network
  wait 2>/dev/null
  if [ "${#failures[@]}" -gt 0 ] || [ -n "${KEEP_LOGS:-}" ]; then
    for f in "$work"/*.log "$pglog"; do [ -s "$f" ] && { echo "--- tail of $f"; tail -5 "$f"; }; done
  fi
  if [ -n "${KEEP_LOGS:-}" ]; then echo "logs kept in $work"; else rm -rf "$work"; fi
}
remove_network() {
  for i in $(seq "$REPLICAS"); do ip netns del "$PREFIX-r$i" 2>/dev/null || true; done
  ip link del "$PREFIX-lb" 2>/dev/null || true
  ip link del "$PREFIX-db" 2>/dev/null || true
}
trap cleanup EXIT
trap 'echo "system test: stopped at line $LINENO: $BASH_COMMAND" >&2' ERR
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------------------------------
# The network: two bridges in the root namespace (the balancer's network and the database's), each
# replica a namespace with one veth pair on each.
make_network() {
  remove_network # what an interrupted earlier run may have left
  for net in lb db; do
    ip link add "$PREFIX-$net" type bridge
    ip link set "$PREFIX-$net" up
  done
  ip addr add "$LB_NET.1/24" dev "$PREFIX-lb"
  ip addr add "$DB_NET.1/24" dev "$PREFIX-db"
  for i in $(seq "$REPLICAS"); do
    local ns=$PREFIX-r$i
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    for net in lb db; do
      ip link add "$PREFIX-$net$i" type veth peer name "$net" netns "$ns"
      ip link set "$PREFIX-$net$i" master "$PREFIX-$net" up
      ip -n "$ns" link set "$net" up
    done
    ip -n "$ns" addr add "$LB_NET.$((10 + i))/24" dev lb
    ip -n "$ns" addr add "$DB_NET.$((10 + i))/24" dev db
  done
}

# ---------------------------------------------------------------------------------------------------
# PostgreSQL of the test's own, reachable from the replicas on the database network only.
start_postgres() {
  mkdir "$work/postgres" && chown postgres "$work/postgres" # the server runs as postgres
  runuser -u postgres -- "$pgbin/initdb" -D "$pgdata" -A trust -U postgres >/dev/null
  cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1,$DB_NET.1'
port = $PG_PORT
unix_socket_directories = '$work/postgres'
max_connections = 200
EOF
  echo "host all all $DB_NET.0/24 trust" >>"$pgdata/pg_hba.conf"
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdata" -l "$pglog" -w start >/dev/null
}
pg_url_local="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME"
sql() { psql -qtA "$pg_url_local" -c "$1"; }

# NATS with JetStream and the counting sink, on the balancer's network (not cut in scenario 4).
start_peers() {
  nats-server -a "$LB_NET.1" -p "$NATS_PORT" -m "$NATS_MONITOR_PORT" -js -sd "$work/nats" \
    -l "$work/nats.log" &
  aux_pids+=($!)
  python3 "$here/sink.py" "$LB_NET.1" "$SINK_PORT" 2>"$work/sink.log" &
  aux_pids+=($!)
  python3 "$here/delay_proxy.py" "$DB_NET.1" "$DELAY0_PORT" 127.0.0.1 "$PG_PORT" 0 2>"$work/delay0.log" &
  aux_pids+=($!)
  python3 "$here/delay_proxy.py" "$DB_NET.1" "$DELAY2_PORT" 127.0.0.1 "$PG_PORT" 1 2>"$work/delay2.log" &
  aux_pids+=($!)
  wait_until 10 curl -sf "http://$LB_NET.1:$NATS_MONITOR_PORT/healthz" || { echo "NATS did not start" >&2; exit 1; }
  wait_until 10 curl -sf "http://$LB_NET.1:$SINK_PORT/stats" || { echo "sink did not start" >&2; exit 1; }
}

wait_until() { # seconds, command...: true once the command succeeds
  local deadline=$(($(date +%s) + $1)); shift
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------------------------------------------
# The service's configuration: one for every replica (and the load generator, which signs with it).
write_config() {
  cat >"$work/config.toml" <<EOF
[server]
listen = "0.0.0.0:8080"
# HAProxy's address on the balancer's network: its X-Forwarded-For is believed.
trusted_proxies = ["$LB_NET.1/32"]

[database]
url = "postgres://postgres@$DB_NET.1:$PG_PORT/$DB_NAME"

[shutdown]
drain_delay_ms = $DRAIN_MS
deadline_ms = $DEADLINE_MS

[dispatch]
# Short, so a killed replica's claimed deliveries are taken over within seconds; above the handlers'
# timeout, which is long enough for the Python sink on a loaded machine (a call that times out is
# made again: a repeated call, counted).
lease_secs = 10
max_in_flight = $MAX_IN_FLIGHT

[reconcile]
enabled = false

[nats]
url = "nats://$LB_NET.1:$NATS_PORT"

[environments.production]
organization_id = "123e4567-e89b-12d3-a456-426614174000"
environment_id = "123e4567-e89b-12d3-a456-426614174000"
# The load generator sends from 127.0.0.1 through HAProxy: only a believed X-Forwarded-For lets
# its deliveries in (the socket peer is HAProxy's $LB_NET.1).
allow_ips = ["127.0.0.1/32"]

[[environments.production.webhooks]]
id = "9d3e2c1b-0a9f-4e8d-b7c6-a5b4c3d2e1f0"
secrets = [{ value = "vltg_systemTestOnlySecret00000000000" }]

[[handlers]]
name = "sink"
kind = "http"
url = "http://$LB_NET.1:$SINK_PORT/hook"
secret = { value = "whsec_dm9sdGFnZS13ZWJob29rcy1zeXN0ZW0tdGVzdC1rZXk=" }
timeout_ms = 8000

[[handlers]]
name = "stream"
kind = "nats"
stream = "VWSYS"
create_stream = true
timeout_ms = 8000
EOF
}

# ---------------------------------------------------------------------------------------------------
# Replicas.
replica_env=() # extra VAR=value for the replicas started next (scenario 5)
start_replica() { # index [database url]
  local i=$1 url=${2:-postgres://postgres@$DB_NET.1:$PG_PORT/$DB_NAME}
  env "${replica_env[@]}" DATABASE_URL="$url" RUST_LOG=warn,voltage_webhooks::outbox=info ip netns exec "$PREFIX-r$i" \
    "$binary" --config "$work/config.toml" serve --no-migrate >>"$work/replica$i.log" 2>&1 &
  replica_pid[$i]=$!
}
replica_ready() { curl -sf "http://$LB_NET.$((10 + $1)):8080/readyz"; }
stop_replica() { # index: SIGTERM, then wait for it to drain and exit
  local pid=${replica_pid[$1]}
  kill -TERM "$pid"
  wait "$pid" || { fail "replica $1 exited with $? after SIGTERM"; }
  unset "replica_pid[$1]"
}
all_replicas_running() {
  for i in "${!replica_pid[@]}"; do kill -0 "${replica_pid[$i]}" 2>/dev/null || return 1; done
}
restart_all() { # [database url]: without load, between scenarios
  for i in $(seq "$REPLICAS"); do kill -TERM "${replica_pid[$i]}"; done
  for i in $(seq "$REPLICAS"); do wait "${replica_pid[$i]}" || true; unset "replica_pid[$i]"; done
  for i in $(seq "$REPLICAS"); do start_replica "$i" "${1:-}"; done
  for i in $(seq "$REPLICAS"); do wait_until 30 balancer_up "r$i" || { echo "replica $i not up" >&2; exit 1; }; done
}

# ---------------------------------------------------------------------------------------------------
# HAProxy: health check on /readyz, X-Forwarded-For, retries of failed connection attempts on another
# replica. Stats (CSV) on 127.0.0.1:$HAPROXY_STATS_PORT.
start_haproxy() {
  {
    cat <<EOF
global
  maxconn 4096
  stats socket $work/haproxy.sock mode 600 level admin

defaults
  mode http
  timeout connect 1s
  timeout client 30s
  # Above the service's request_timeout_ms (15 s): the service's own 503 reaches the sender,
  # not a 504 of the balancer's.
  timeout server 20s
  timeout check $CHECK_TIMEOUT
  # Tried again, on another replica: a connection refused (a replica gone), and a request whose
  # connection closed with no answer (a replica killed holding it, or an idle pooled connection the
  # replica closed just as HAProxy reused it: the service closes idle connections after
  # server.header_read_timeout_ms). Safe for deliveries: a repeat is answered as a duplicate.
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response

frontend webhooks
  bind 127.0.0.1:$HAPROXY_PORT
  option forwardfor
  default_backend replicas

backend replicas
  balance roundrobin
  option httpchk GET /readyz
  http-check expect status 200
  default-server inter $CHECK_INTER fall $CHECK_FALL rise $CHECK_RISE
EOF
    for i in $(seq "$REPLICAS"); do echo "  server r$i $LB_NET.$((10 + i)):8080 check"; done
    cat <<EOF

listen stats
  bind 127.0.0.1:$HAPROXY_STATS_PORT
  stats enable
  stats uri /
EOF
  } >"$work/haproxy.cfg"
  haproxy -f "$work/haproxy.cfg" -D -p "$work/haproxy.pid" 2>>"$work/haproxy.log"
}
server_field() { # server, field name of HAProxy's CSV (status, smax, ...)
  curl -sf "http://127.0.0.1:$HAPROXY_STATS_PORT/;csv" | python3 -c '
import csv, sys
rows = list(csv.DictReader(l.lstrip("# ") for l in sys.stdin))
print(next(r[sys.argv[2]] for r in rows if r["pxname"] == "replicas" and r["svname"] == sys.argv[1]))' "$1" "$2"
}
balancer_up() { [ "$(server_field "$1" status)" = UP ]; }
balancer_down() { [ "$(server_field "$1" status)" = DOWN ]; }
clear_counters() { python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); s.sendall(b"clear counters all\n"); s.recv(4096)' "$work/haproxy.sock"; }

# ---------------------------------------------------------------------------------------------------
# Load and audit.
start_load() { # seconds [rate]: in the background; sets load_pid and load_started
  local rate=${2:-$RATE}
  load_out=$work/load-$scenario.txt
  load_started=$(now)
  DATABASE_URL=$pg_url_local RUST_LOG=warn,voltage_loadgen=debug "$loadgen" \
    --config "$work/config.toml" --url "http://127.0.0.1:$HAPROXY_PORT" \
    --environment production --concurrency "$CONCURRENCY" --rate "$rate" --duration "${1}s" \
    --check-database --timeline "${WINDOW}s" >"$load_out" 2>&1 &
  load_pid=$!
}
finish_load() { # report.py arguments...: waits for the load, then reads its figures into fig_*
  wait "$load_pid" || true
  while IFS='=' read -r key value; do printf -v "fig_$key" '%s' "$value"; done \
    < <(python3 "$here/report.py" "$load_out" --rate "$RATE" --window "$WINDOW" "$@")
  note "load: $fig_requests requests ($fig_rps req/s), p50 $fig_p50_ms ms, p99 $fig_p99_ms ms, max $fig_max_ms ms"
  note "non-2xx: $fig_non2xx ($fig_codes, in $fig_failing of the load); acknowledged but missing: $fig_missing; stored but never acknowledged: $fig_extra"
  [ "$fig_missing" = 0 ] || fail "acknowledged events missing: $fig_missing"
}
fresh() { # empty tables, counts and stream before a scenario
  sql 'TRUNCATE events, deliveries CASCADE'
  curl -sf -X POST "http://$LB_NET.1:$SINK_PORT/reset" >/dev/null
  stream_before=$(stream_messages)
  clear_counters
}
stream_messages() {
  curl -sf "http://$LB_NET.1:$NATS_MONITOR_PORT/jsz?accounts=true&streams=true" | python3 -c '
import json, sys
streams = [s for a in json.load(sys.stdin).get("account_details", []) for s in a.get("stream_detail", [])]
print(sum(s["state"]["messages"] for s in streams if s["name"] == "VWSYS"))'
}
undelivered() { sql "SELECT count(*) FROM deliveries WHERE status <> 'succeeded'"; }
all_delivered() { [ "$(undelivered)" = 0 ]; }
audit_handlers() { # max duplicate handler calls allowed: every stored event reached both handlers
  local allowed=$1 started
  started=$(now)
  wait_until "$DELIVERY_WAIT" all_delivered || fail "deliveries not done after $DELIVERY_WAIT s: $(undelivered)"
  local events sink stream calls distinct duplicates
  events=$(sql 'SELECT count(*) FROM events')
  sink=$(curl -sf "http://$LB_NET.1:$SINK_PORT/stats")
  calls=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["calls"])' "$sink")
  distinct=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["distinct"])' "$sink")
  duplicates=$((calls - distinct))
  stream=$(($(stream_messages) - stream_before))
  note "handlers: $events events stored; http sink got $distinct distinct ($calls calls, $duplicates duplicate calls); NATS stream got $stream; all done $(since "$started") s after the load"
  [ "$distinct" = "$events" ] || fail "http handler reached $distinct of $events events"
  [ "$stream" = "$events" ] || fail "nats handler reached $stream of $events events"
  [ "$duplicates" -le "$allowed" ] || fail "$duplicates duplicate handler calls (allowed: $allowed)"
}
check_no_non2xx() { [ "$fig_non2xx" = 0 ] || fail "non-2xx answers: $fig_codes"; }
check_only_503() {
  local other
  other=$(tr ' ' '\n' <<<"$fig_codes" | grep -v '^503=' | grep -v '^none$' || true)
  [ -z "$other" ] || fail "answers other than 2xx and 503: $other"
}
at() { # seconds from the load's start: sleeps until then
  local left
  left=$(awk -v s="$load_started" -v t="$1" -v n="$(now)" 'BEGIN {print s + t - n}')
  awk -v l="$left" 'BEGIN {exit !(l > 0)}' && sleep "$left"
  true
}
offset() { since "$load_started"; }

# ---------------------------------------------------------------------------------------------------
# Scenarios.
scenario_0() {
  log "0. no fault ($RATE req/s)"
  fresh
  start_load $((BASE_LOAD * 3))
  finish_load
  check_no_non2xx
  audit_handlers 0
}

scenario_1() {
  log "1. rolling restart of every replica under load ($RATE req/s)"
  fresh
  start_load $((REPLICAS * 7 + 4))
  at 2
  for i in $(seq "$REPLICAS"); do
    local t0 sent_at drained
    t0=$(now) sent_at=$(offset)
    stop_replica "$i"
    drained=$(since "$t0")
    start_replica "$i"
    wait_until 30 balancer_up "r$i" || fail "replica $i did not rejoin"
    note "r$i: SIGTERM at $sent_at s; drained and exited after $drained s; started again, back in the balancer $(since "$t0") s after SIGTERM"
  done
  finish_load
  check_no_non2xx
  [ "$fig_extra" = 0 ] || fail "stored but never acknowledged: $fig_extra"
  audit_handlers 0
}

scenario_2() {
  log "2. SIGKILL of one replica under load ($RATE req/s)"
  fresh
  start_load $((BASE_LOAD * 3))
  at "$BASE_LOAD"
  local in_flight_max
  in_flight_max=$(server_field r2 smax)
  kill -KILL "${replica_pid[2]}"
  wait "${replica_pid[2]}" 2>/dev/null || true
  local killed_at
  killed_at=$(offset)
  note "r2 SIGKILLed at $killed_at s (its most requests in flight at once so far, HAProxy's smax: $in_flight_max)"
  wait_until 10 balancer_down r2 && note "HAProxy marked r2 DOWN $(awk -v a="$killed_at" -v b="$(offset)" 'BEGIN {printf "%.1f", b - a}') s after the kill"
  at $((BASE_LOAD * 2))
  start_replica 2
  wait_until 30 balancer_up r2 || fail "r2 did not rejoin"
  note "r2 started again at $((BASE_LOAD * 2)) s, back in the balancer at $(offset) s"
  finish_load --fault-end "$killed_at:$((BASE_LOAD * 2))"
  note "recovered (2xx only at full rate) $fig_recovery1_s s after the kill"
  [ "$fig_non2xx" -le "$in_flight_max" ] ||
    fail "$fig_non2xx failed requests, more than r2's requests in flight ($in_flight_max)"
  # The killed replica's handler calls in flight are made again after their lease ends.
  audit_handlers "$MAX_IN_FLIGHT"
}

scenario_3() {
  log "3. PostgreSQL restarted (pg_ctl restart -m fast, then -m immediate) under load ($RATE req/s)"
  fresh
  local pids_before="${replica_pid[*]}"
  local gap=$((BASE_LOAD * 2))
  start_load $((BASE_LOAD + gap * 2))
  local back=()
  for m in fast immediate; do
    at $((BASE_LOAD + gap * ${#back[@]}))
    local t0 down_for
    t0=$(offset)
    runuser -u postgres -- "$pgbin/pg_ctl" -D "$pgdata" -l "$pglog" -m "$m" -w restart >/dev/null
    down_for=$(awk -v a="$t0" -v b="$(offset)" 'BEGIN {printf "%.1f", b - a}')
    back+=("$(offset)")
    note "restart -m $m at $t0 s: PostgreSQL back after $down_for s"
  done
  finish_load --fault-end "${back[0]}:$((BASE_LOAD + gap - 1))" --fault-end "${back[1]}"
  note "full rate, 2xx only: $fig_recovery1_s s after the fast restart, $fig_recovery2_s s after the immediate one"
  check_only_503
  for r in "$fig_recovery1_s" "$fig_recovery2_s"; do
    awk -v r="$r" 'BEGIN {exit !(r != "never" && r <= 5)}' || fail "not back to full rate within 5 s ($r)"
  done
  all_replicas_running && [ "${replica_pid[*]}" = "$pids_before" ] || fail "a replica restarted or died"
  # Calls whose success could not be recorded while PostgreSQL was down are made again.
  audit_handlers $((MAX_IN_FLIGHT * REPLICAS))
}

scenario_4() {
  log "4. replica r1 cut from the database under load ($RATE req/s)"
  fresh
  start_load $((BASE_LOAD * 4))
  at "$BASE_LOAD"
  ip link set "$PREFIX-db1" down
  local cut_at detection=15
  cut_at=$(offset)
  if wait_until 15 balancer_down r1; then
    detection=$(awk -v a="$cut_at" -v b="$(offset)" 'BEGIN {printf "%.1f", b - a}')
    note "db link of r1 down at $cut_at s; HAProxy marked r1 DOWN $detection s later"
  else
    fail "r1 stayed in the balancer with no database"
  fi
  replica_ready 1 && fail "r1 answers ready without its database"
  local sent_when_out
  sent_when_out=$(server_field r1 stot)
  at $((BASE_LOAD * 2 + 2))
  local sent_while_out=$(($(server_field r1 stot) - sent_when_out))
  note "requests HAProxy sent r1 while it was out: $sent_while_out"
  [ "$sent_while_out" = 0 ] || fail "HAProxy sent r1 $sent_while_out requests while it was out"
  ip link set "$PREFIX-db1" up
  local restored_at
  restored_at=$(offset)
  if wait_until 30 balancer_up r1; then
    note "db link up at $restored_at s; r1 back in the balancer at $(offset) s"
  else
    fail "r1 did not rejoin"
  fi
  finish_load --fault-end "$restored_at"
  # Bound: what HAProxy sent r1 before taking it out (its share of the rate over the time HAProxy
  # took to see it fail, at most (inter + timeout check) x fall = 3 s), with a margin of a quarter.
  local bound
  bound=$(awk -v r="$RATE" -v n="$REPLICAS" -v d="$detection" 'BEGIN {printf "%d", r / n * d * 1.25 + 10}')
  check_only_503
  [ "$fig_non2xx" -le "$bound" ] || fail "$fig_non2xx 503s, more than $bound"
  note "503s: $fig_non2xx (bound $bound); full rate $fig_recovery1_s s after the link came back"
  all_replicas_running || fail "a replica died"
  # r1's calls whose success it could not record are made again by another replica.
  audit_handlers "$MAX_IN_FLIGHT"
}

scenario_5() {
  log "5. 2 ms RTT between the replicas and PostgreSQL: throughput and p99"
  local results=() label url
  # Then the same through the proxies with group commit off (a transaction per event), to show
  # what group commit holds of the throughput once each round trip costs 2 ms.
  for label in direct proxy-0ms proxy-2ms proxy-0ms-no-group-commit proxy-2ms-no-group-commit; do
    case $label in
      direct) url= ;;
      proxy-0ms*) url=postgres://postgres@$DB_NET.1:$DELAY0_PORT/$DB_NAME ;;
      proxy-2ms*) url=postgres://postgres@$DB_NET.1:$DELAY2_PORT/$DB_NAME ;;
    esac
    replica_env=()
    [[ $label == *no-group-commit ]] && replica_env=(VOLTAGE_WEBHOOKS_INGEST__BATCH_MAX_EVENTS=1)
    [ "$label" = direct ] || restart_all "$url"
    fresh
    load_out=$work/load-5-$label-max.txt
    DATABASE_URL=$pg_url_local RUST_LOG=warn "$loadgen" --config "$work/config.toml" \
      --url "http://127.0.0.1:$HAPROXY_PORT" --environment production --concurrency 256 \
      --duration "${PERF_SECONDS}s" --check-database >"$load_out" 2>&1 &
    load_pid=$!
    finish_load
    check_no_non2xx
    local max_rps=$fig_rps max_p99=$fig_p99_ms
    fresh
    start_load "$PERF_SECONDS"
    finish_load
    check_no_non2xx
    results+=("$label: maximum $max_rps req/s (p99 $max_p99 ms at 256 in flight); at $RATE req/s p50 $fig_p50_ms ms, p99 $fig_p99_ms ms")
  done
  replica_env=()
  restart_all
  for r in "${results[@]}"; do note "$r"; done
}

# ---------------------------------------------------------------------------------------------------
log "setting up: $REPLICAS replicas ($binary), load from $loadgen, HAProxy, PostgreSQL, NATS, sink ($mode form)"
make_network
start_postgres
start_peers
write_config
DATABASE_URL=$pg_url_local RUST_LOG=warn "$binary" --config "$work/config.toml" migrate >/dev/null
start_haproxy
for i in $(seq "$REPLICAS"); do start_replica "$i"; done
for i in $(seq "$REPLICAS"); do
  wait_until 60 balancer_up "r$i" || { echo "replica $i did not become ready" >&2; tail "$work/replica$i.log" >&2; exit 1; }
done
note "all $REPLICAS replicas up in HAProxy"

passed=0 failed=0
for scenario in ${scenarios//,/ }; do
  before=${#failures[@]}
  "scenario_$scenario"
  if [ "${#failures[@]}" = "$before" ]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done

log "summary"
if [ "${#failures[@]}" -gt 0 ]; then
  printf '   %s\n' "${failures[@]}"
  echo "system test: ${#failures[@]} requirement(s) violated"
else
  echo "system test: every requirement of scenarios $scenarios held"
fi
echo "scenarios: $passed passed, $failed failed"
[ "$failed" = 0 ] || exit 1
