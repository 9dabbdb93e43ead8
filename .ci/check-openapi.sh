#!/usr/bin/env bash
# The query API's contract, checked against the running service (issue 14, item 9):
#   1. docs/openapi.json and the served /v1/openapi.json validate (openapi-spec-validator);
#   2. a property-based run of schemathesis against the service finds no 5xx and no response that
#      contradicts the document (status code, content type, body schema).
# Starts target/debug/voltage-webhooks (built by `cargo test`) against a fresh database, with a
# write key made by `api-key create` and two stored events, and stops it at the end. Bounded: a few
# examples per operation and an overall time limit, about a minute on a 2-core machine.
# Exits non-zero when a check fails or the service does not come up.
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=target/debug/voltage-webhooks
ADMIN_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
DB="voltage_openapi_$$"
DB_URL="${ADMIN_URL%/*}/$DB"
MAX_EXAMPLES="${OPENAPI_MAX_EXAMPLES:-25}"
TIME_LIMIT="${OPENAPI_TIME_LIMIT_SECS:-100}"
WORK=$(mktemp -d)
SERVICE_PID=""

cleanup() {
  if [ -n "$SERVICE_PID" ]; then
    kill "$SERVICE_PID" 2>/dev/null || true
    wait "$SERVICE_PID" 2>/dev/null || true
  fi
  if command -v psql >/dev/null; then
    psql "$ADMIN_URL" -qc "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$BIN" ] || { echo "$BIN is missing: run cargo test (or cargo build) first" >&2; exit 1; }
# .ci/run installs these (pinned) and puts the interpreter's scripts directory on PATH; run alone, the
# same versions are installed here when a command is missing.
for tool in openapi-spec-validator:openapi-spec-validator==0.9.0 st:schemathesis==4.32.5; do
  command -v "${tool%%:*}" >/dev/null || python3 -m pip install --quiet "${tool##*:}"
done

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
WEBHOOK=6f1c1f0e-8a57-4a53-b3b5-0c7f0e6f2a10
cat >"$WORK/config.toml" <<EOF
[server]
listen = "127.0.0.1:$PORT"

[database]
url = "$DB_URL"

[dispatch]
enabled = false

[reconcile]
enabled = false

[environments.production]
organization_id = "123e4567-e89b-12d3-a456-426614174000"
environment_id = "123e4567-e89b-12d3-a456-426614174000"

[[environments.production.webhooks]]
id = "$WEBHOOK"
secrets = [{ env = "OPENAPI_CHECK_SECRET" }]
EOF
export OPENAPI_CHECK_SECRET=vltg_OPENAPIcheckOnlySecret000000000
export VOLTAGE_WEBHOOKS_CONFIG="$WORK/config.toml"
unset DATABASE_URL # the config's fresh database, not the one the tests use

echo "== starting the service on $BASE (database $DB)"
"$BIN" serve >"$WORK/service.log" 2>&1 &
SERVICE_PID=$!
for _ in $(seq 150); do
  curl -fs "$BASE/readyz" >/dev/null 2>&1 && break
  kill -0 "$SERVICE_PID" 2>/dev/null || { cat "$WORK/service.log" >&2; exit 1; }
  sleep 0.2
done
curl -fs "$BASE/readyz" >/dev/null || { echo "the service did not become ready" >&2; cat "$WORK/service.log" >&2; exit 1; }

KEY=$("$BIN" api-key create --name openapi-check --environment production --permission write \
  | grep -o 'vwk_[A-Za-z0-9_-]*' | sed -n 1p)
[ -n "$KEY" ] || { echo "api-key create printed no key" >&2; exit 1; }

# Two stored events, so listings return real rows whose schema is checked too.
for fixture in tests/fixtures/voltage/receive-completed-bolt11.json tests/fixtures/voltage/test-created.json; do
  mapfile -t headers < <("$BIN" sign --secret-env OPENAPI_CHECK_SECRET --body "$fixture" --webhook-id "$WEBHOOK")
  args=()
  for h in "${headers[@]}"; do args+=(-H "$h"); done
  curl -fsS -o /dev/null -X POST "$BASE/webhooks/production" -H 'content-type: application/json' \
    "${args[@]}" --data-binary "@$fixture"
done

echo "== openapi-spec-validator"
curl -fsS "$BASE/v1/openapi.json" -o "$WORK/served.json"
openapi-spec-validator docs/openapi.json "$WORK/served.json"

# Every operation is tested in the environment the key belongs to (elsewhere it would only see 403).
cat >"$WORK/schemathesis.toml" <<EOF
[parameters]
"path.environment" = "production"
EOF

echo "== schemathesis ($MAX_EXAMPLES examples per operation, at most ${TIME_LIMIT}s)"
# The event stream is excluded: its 200 is an endless text/event-stream (tests/it/api_stream.rs
# covers it). NUL bytes are generated too: they must be 400, not 5xx.
status=0
(cd "$WORK" && timeout "$TIME_LIMIT" st --config-file "$WORK/schemathesis.toml" run "$BASE/v1/openapi.json" \
  --url "$BASE" \
  -H "x-api-key: $KEY" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance \
  --exclude-operation-id stream_events \
  --max-examples "$MAX_EXAMPLES" \
  --request-timeout 10 \
  --generation-deterministic \
  --no-color) || status=$?
if [ "$status" -eq 124 ]; then
  echo "schemathesis did not finish within ${TIME_LIMIT}s" >&2
fi
exit "$status"
