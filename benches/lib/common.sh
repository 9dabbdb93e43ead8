# Shared by the benchmark scripts (sourced, not run): a private PostgreSQL cluster, and the whole
# machine's CPU from /proc/stat.

# A PostgreSQL cluster of the script's own in $1/pgdata (a directory the caller made), listening on
# 127.0.0.1:$2 and on a socket in $1, the server's defaults plus the lines of $3; started.
# Needs root: the cluster runs as the postgres user.
start_private_cluster() {
  local work=$1 port=$2 settings=${3:-}
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  chown postgres "$work"
  runuser -u postgres -- "$pgbin/initdb" -D "$work/pgdata" -A trust -U postgres >/dev/null
  cat >>"$work/pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$work'
max_connections = 200
$settings
EOF
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$work/pgdata" -l "$work/postgres.log" -w start >/dev/null
}

# Stops the cluster of start_private_cluster in $1, if it runs.
stop_private_cluster() {
  local pgbin
  pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
  runuser -u postgres -- "$pgbin/pg_ctl" -D "$1/pgdata" -m fast -w stop >/dev/null 2>&1 || true
}

# The whole machine's busy and total ticks (every process and the kernel), from the first line of
# /proc/stat; idle and iowait count as not busy.
machine_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, t}' /proc/stat; }

# Percent of the machine busy between two machine_ticks readings $1 and $2.
busy_percent() {
  awk -v a="$1" -v b="$2" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.0f", 100 * (y[1] - x[1]) / (y[2] - x[2])}'
}

# The machine's CPU per request in µs (ticks are 10 ms) between readings $1 and $2, over $3 requests.
cpu_per_request() {
  awk -v a="$1" -v b="$2" -v n="$3" 'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.0f", (n > 0 ? (y[1] - x[1]) * 10000 / n : 0)}'
}
