#!/usr/bin/env bash
# make run: a Redis and an nginx on 127.0.0.1:8080 serving the demo
# organization's data; prints a demo key. `make stop` (run.sh stop) ends it.
# Environment: PORT (8080), REDIS_PORT (6390), RUN_DIR (build/run),
# INTEGRATIONS_BUILD (build: the module and CLI to run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$ROOT/${INTEGRATIONS_BUILD:-build}
RUN=${RUN_DIR:-$ROOT/build/run}
PORT=${PORT:-8080}
REDIS_PORT=${REDIS_PORT:-6390}
CTL="$BUILD/integrationsctl --redis redis://127.0.0.1:$REDIS_PORT/0"

stop() {
    [ -f "$RUN/nginx.pid" ] && kill "$(cat "$RUN/nginx.pid")" 2>/dev/null || true
    redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    rm -f "$RUN/nginx.pid"
}

if [ "${1:-}" = stop ]; then
    stop
    echo "stopped"
    exit 0
fi

stop
mkdir -p "$RUN"
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize yes --pidfile "$RUN/redis.pid" \
    --logfile "$RUN/redis.log"
for _ in $(seq 50); do
    redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done

$CTL data import --org demo "$ROOT/conf-examples/demo-data.ndjson"
$CTL data import --org demo --env test "$ROOT/conf-examples/demo-data.ndjson"
KEY=$($CTL keys create --org demo --name "make run" \
      --scopes events:read,attendees:read --json \
      | sed -n 's/.*"key": *"\([^"]*\)".*/\1/p')

sed -e "s#@MODULE@#$BUILD/ngx_http_integrations_module.so#" \
    -e "s#@PORT@#$PORT#" -e "s#@REDIS@#127.0.0.1:$REDIS_PORT#" \
    "$ROOT/conf-examples/single-tenant.conf" > "$RUN/nginx.conf"
mkdir -p "$RUN/logs"
nginx -t -q -p "$RUN" -c "$RUN/nginx.conf" -g "pid $RUN/nginx.pid;" \
    -e "$RUN/logs/error.log"
nginx -p "$RUN" -c "$RUN/nginx.conf" -g "pid $RUN/nginx.pid;" \
    -e "$RUN/logs/error.log"

cat <<MSG

Integrations API on http://127.0.0.1:$PORT/v2/integrations (Redis on $REDIS_PORT)
demo key (organization "demo", live data; shown once):

    $KEY

try:
    curl -s -H "Authorization: Bearer $KEY" http://127.0.0.1:$PORT/v2/integrations/whoami
    curl -s -H "Authorization: Bearer $KEY" "http://127.0.0.1:$PORT/v2/integrations/events?page=1&page_size=50"
    curl -s -H "X-Api-Key: $KEY" "http://127.0.0.1:$PORT/v2/integrations/events/summer-fest/attendees?scanned=true"
    $BUILD/integrationsctl --redis redis://127.0.0.1:$REDIS_PORT/0 keys list --org demo

stop with: make stop
MSG
