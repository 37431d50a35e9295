#!/usr/bin/env bash
# make bench: the module against the OpenResty peer (../shared/peer, when
# present) and against a static `return 200` of a same-sized body, with
# identical data, 1 worker then 2. Figures are only comparable inside one
# run. Environment: DUR (10s), CONNS (50), THREADS (2), ORGS (100),
# EVENTS (20), ATTS (200), KPO (5), WORKERS_LIST ("1 2"), KEEP (keep
# the temporary directory), RSS_DUR (40s: the memory run, 0: none).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${PEER:-$ROOT/../shared/peer}
BUILD=${INTEGRATIONS_BUILD:-$ROOT/build}
DIR=$(mktemp -d /tmp/integrations-bench.XXXX)
chmod 755 "$DIR"   # nginx workers (nobody) read static.json
RPORT=${RPORT:-16391}; PORT=${PORT:-18091}; PPORT=${PPORT:-18092}
DUR=${DUR:-10s}; CONNS=${CONNS:-50}; THREADS=${THREADS:-2}
ORGS=${ORGS:-100}; EVENTS=${EVENTS:-20}; ATTS=${ATTS:-200}; KPO=${KPO:-5}
WORKERS_LIST=${WORKERS_LIST:-"1 2"}
CTL="$BUILD/integrationsctl --redis redis://127.0.0.1:$RPORT/0"
# the peer's own wrk driver when it is there: both sides get the same load
WRK_LUA=$ROOT/bench/wrk_keys.lua
[ -f "$PEER/wrk_keys.lua" ] && WRK_LUA=$PEER/wrk_keys.lua
EVENTS_PATH="/v2/integrations/events?page=1&page_size=50"
ATT_PATH="/v2/integrations/events/{event}/attendees?page=1&page_size=100"

cleanup() {
    for p in "$DIR"/*nginx.pid; do
        [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null || true
    done
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no \
    --daemonize yes --pidfile "$DIR/redis.pid" --logfile "$DIR/redis.log"
for _ in $(seq 50); do redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

echo "== data: $ORGS orgs x $EVENTS events x $ATTS attendees, $KPO keys/org"
mkdir -p "$DIR/ndjson"
cd "$DIR"
if [ -f "$PEER/gen_data.py" ]; then
    # the peer's own schema (its keys go to keys.txt) and the same data
    # set as NDJSON for integrationsctl
    NDJSON_DIR="$DIR/ndjson" python3 "$PEER/gen_data.py" "$ORGS" "$EVENTS" \
        "$ATTS" "$KPO" | redis-cli -p "$RPORT" --pipe >/dev/null
    mv keys.txt peer-keys.txt
else
    python3 "$ROOT/bench/gen_ndjson.py" "$DIR/ndjson" "$ORGS" "$EVENTS" "$ATTS"
fi
t0=$(date +%s.%N)
export CTL KPO
# shellcheck disable=SC2016
ls ndjson/*.ndjson | xargs -P 2 -I{} sh -c '
    org=$(basename {} .ndjson)
    $CTL data import --org "$org" {} 2>/dev/null
    for _ in $(seq "$KPO"); do
        $CTL keys create --org "$org" --name bench \
             --scopes events:read,attendees:read --json \
            | sed -n "s/.*\"key\": *\"\([^\"]*\)\".*/$org \1/p"
    done > keys-$org.txt'
cat keys-*.txt > module-keys.txt
rm -f keys-*.txt
echo "import + keys: $(echo "$(date +%s.%N) - $t0" | bc) s"

K=$(head -1 module-keys.txt | cut -d' ' -f2)

wrk_run() {   # name url-base path keys
    local name=$1 base=$2 path=$3 keys=$4 out
    if [ "$path" = static ]; then
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency "$base/static")
    else
        out=$(WRK_KEYS=$keys WRK_PATH=$path wrk -t"$THREADS" -c"$CONNS" \
              -d"$DUR" --latency -s "$WRK_LUA" "$base")
    fi
    local rps p50 p99 non2xx reqs
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $5}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    printf '%-28s %10s req/s  p50 %8s  p99 %8s  non-2xx %s\n' \
        "$name" "$rps" "$p50" "$p99" "${non2xx:-0}"
    echo "$name $rps $reqs" >> results.txt
}

redis_stats() {   # prints "calls cpu_seconds"
    redis-cli -p "$RPORT" info commandstats | tr -d '\r' | awk -F'[=,:]' \
        '/^cmdstat_/ && $1 != "cmdstat_info" {c += $3} END {print c}'
    redis-cli -p "$RPORT" info cpu | tr -d '\r' | awk -F: \
        '/used_cpu_(sys|user):/ {s += $2} END {print s}'
}

ratio() { echo "scale=2; $1 / $2" | bc; }

: > results.txt
for W in $WORKERS_LIST; do
    echo
    echo "== $W worker(s), $CONNS connections, $THREADS wrk threads, $DUR"

    # the static body has the size and shape of a 50-event page
    BODY=$(curl -s -H "Authorization: Bearer $K" \
           "http://127.0.0.1:$PORT$EVENTS_PATH" 2>/dev/null || true)
    sed -e "s#@MODULE@#$BUILD/ngx_http_integrations_module.so#; s#@DIR@#$DIR#g; s#@PORT@#$PORT#; s#@RPORT@#$RPORT#; s#@WORKERS@#$W#; s#@STATIC@#x#" \
        "$ROOT/bench/module.conf.in" > module.conf
    nginx -p "$DIR" -c "$DIR/module.conf"
    sleep 0.5
    BODY=$(curl -s -H "Authorization: Bearer $K" "http://127.0.0.1:$PORT$EVENTS_PATH")
    kill "$(cat module-nginx.pid)"; sleep 0.5
    printf '%s' "$BODY" > static.json
    chmod 644 static.json
    nginx -p "$DIR" -c "$DIR/module.conf"
    sleep 0.5
    echo "events page: $(printf '%s' "$BODY" | wc -c) bytes"

    wrk_run "static W=$W" "http://127.0.0.1:$PORT" static ""
    read -r c0 < <(redis_stats | head -1); cpu0=$(redis_stats | tail -1)
    wrk_run "module events W=$W" "http://127.0.0.1:$PORT" "$EVENTS_PATH" module-keys.txt
    wrk_run "module attendees W=$W" "http://127.0.0.1:$PORT" "$ATT_PATH" module-keys.txt
    read -r c1 < <(redis_stats | head -1); cpu1=$(redis_stats | tail -1)
    kill "$(cat module-nginx.pid)"; sleep 0.5

    if [ -f "$PEER/peer.lua" ] && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]; then
        sed -e "s#@DIR@#$DIR#g; s#@PEERDIR@#$PEER#g; s#@PORT@#$PPORT#; s#@RPORT@#$RPORT#; s#@WORKERS@#$W#; s#@STATIC@#x#" \
            "$PEER/nginx.conf.in" | sed "s#pid $DIR/nginx.pid#pid $DIR/peer-nginx.pid#" > peer.conf
        nginx -p "$DIR" -c "$DIR/peer.conf"
        sleep 0.5
        read -r p0 < <(redis_stats | head -1); pcpu0=$(redis_stats | tail -1)
        wrk_run "peer events W=$W" "http://127.0.0.1:$PPORT" "$EVENTS_PATH" peer-keys.txt
        wrk_run "peer attendees W=$W" "http://127.0.0.1:$PPORT" "$ATT_PATH" peer-keys.txt
        read -r p1 < <(redis_stats | head -1); pcpu1=$(redis_stats | tail -1)
        kill "$(cat peer-nginx.pid)"; sleep 0.5
    fi

    get() { awk -v n="$1 W=$W" '{k = $1" "$2" "$3} k == n {print $4}' results.txt; }
    getn() { awk -v n="$1 W=$W" '{k = $1" "$2" "$3} k == n {print $5}' results.txt; }
    s=$(awk -v n="static W=$W" '{k = $1" "$2} k == n {print $3}' results.txt)
    me=$(get "module events"); ma=$(get "module attendees")
    mn=$(( $(getn "module events") + $(getn "module attendees") ))
    echo "-- ratios (same run, $W worker(s))"
    echo "module events / static:     $(ratio "$me" "$s")"
    echo "module attendees / static:  $(ratio "$ma" "$s")"
    echo "module: Redis commands/request $(ratio "$((c1 - c0))" "$mn"), Redis CPU/request $(echo "scale=1; ($cpu1 - $cpu0) * 1000000 / $mn" | bc) us"
    if [ -n "${p1:-}" ]; then
        pe=$(get "peer events"); pa=$(get "peer attendees")
        pn=$(( $(getn "peer events") + $(getn "peer attendees") ))
        echo "module / peer, events:      $(ratio "$me" "$pe")"
        echo "module / peer, attendees:   $(ratio "$ma" "$pa")"
        echo "peer: Redis commands/request $(ratio "$((p1 - p0))" "$pn"), Redis CPU/request $(echo "scale=1; ($pcpu1 - $pcpu0) * 1000000 / $pn" | bc) us"
    fi
done
# flat memory: worker RSS before and after a long run on a warm cache
rss() {   # the workers' resident set, kB
    local kb=0 p
    for p in $(pgrep -P "$(cat module-nginx.pid)"); do
        kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    done
    echo "$kb"
}
if [ "${RSS_DUR:-40s}" != 0 ]; then
    sed -i "s/^worker_processes .*/worker_processes 1;/" module.conf
    nginx -p "$DIR" -c "$DIR/module.conf"
    sleep 0.5
    for path in "$EVENTS_PATH" "$ATT_PATH"; do
        WRK_KEYS=module-keys.txt WRK_PATH=$path wrk -t"$THREADS" \
            -c"$CONNS" -d5s -s "$WRK_LUA" \
            "http://127.0.0.1:$PORT" >/dev/null
    done
    r0=$(rss)
    out=$(WRK_KEYS=module-keys.txt WRK_PATH=$EVENTS_PATH wrk -t"$THREADS" \
          -c"$CONNS" -d"${RSS_DUR:-40s}" -s "$WRK_LUA" \
          "http://127.0.0.1:$PORT")
    r1=$(rss)
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    echo
    echo "== memory: $n requests (events, 1 worker) on a warm cache"
    echo "worker RSS before: $r0 kB, after: $r1 kB, growth: $((r1 - r0)) kB"
    kill "$(cat module-nginx.pid)"; sleep 0.5
fi
grep -c "\[error\]\|\[alert\]" "$DIR"/module-error.log 2>/dev/null | sed 's/^/module error-log errors: /' || true
