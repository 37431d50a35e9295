#!/usr/bin/env bash
# make bench: the module against the OpenResty peer (../shared/peer, when
# present) and against a static `return 200` of a same-sized body, with
# identical data, 1 worker then 2. Figures are only comparable inside one
# run. Besides req/s and latency it prints where the CPU went per events
# request (the server's workers, Redis, idle), since on a small machine
# wrk, nginx and Redis share the cores. Environment: DUR (10s), CONNS
# (50), THREADS (2), ORGS (100), EVENTS (20), ATTS (200), KPO (5),
# WORKERS_LIST ("1 2"), REPEAT (5 runs of each, interleaved; medians
# reported), KEEP (keep the temporary directory), RSS_REQUESTS (1000000:
# the memory run goes on, in rounds of RSS_DUR (20s), until the worker
# has answered this many; RSS_DUR=0: no memory run).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PEER=${PEER:-$ROOT/../shared/peer}
BUILD=${INTEGRATIONS_BUILD:-$ROOT/build}
DIR=$(mktemp -d /tmp/integrations-bench.XXXX)
chmod 755 "$DIR"   # nginx workers (nobody) reach the temp paths in it
RPORT=${RPORT:-16391}; PORT=${PORT:-18091}; PPORT=${PPORT:-18092}
SPORT=${SPORT:-18093}
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

# one wrk run: appends "name rps p50_ms p99_ms non2xx requests" to
# results.txt
wrk_run() {   # name url path keys
    local name=$1 url=$2 path=$3 keys=$4 out
    if [ -z "$keys" ]; then
        out=$(wrk -t"$THREADS" -c"$CONNS" -d"$DUR" --latency "$url$path")
    else
        out=$(WRK_KEYS=$keys WRK_PATH=$path wrk -t"$THREADS" -c"$CONNS" \
              -d"$DUR" --latency -s "$WRK_LUA" "$url")
    fi
    echo "$out" | awk -v n="$name" '
        function ms(v) {
            if (v ~ /us$/) return v / 1000
            if (v ~ /ms$/) return v + 0
            if (v ~ /s$/) return v * 1000
            return v
        }
        /Requests\/sec/ {r = $2}
        $1 == "50%" {p50 = ms($2)}
        $1 == "99%" {p99 = ms($2)}
        /Non-2xx/ {bad = $5}
        /requests in/ {n_ = $1}
        END {printf "%s %s %.3f %.3f %d %d\n", n, r, p50, p99, bad, n_}' \
        >> results.txt
}

# "calls cpu_seconds reads": reads are Redis's socket reads, so requests
# per read tell how many requests' commands share one send (pipelining)
# (INFO of several sections at once: Redis 7, which the bench runs)
redis_stats() {
    redis-cli -p "$RPORT" info commandstats cpu stats | tr -d '\r' |
        awk -F'[=,:]' '/^cmdstat_/ && $1 != "cmdstat_info" {c += $3}
            /^used_cpu_(sys|user):/ {s += $2}
            $1 == "total_reads_processed" {n = $2}
            END {print c + 0, s + 0, n + 0}'
}

# a run of one side with Redis's work counted for that side
side_run() {   # side name url path keys
    local side=$1 a b
    shift
    read -r -a a < <(redis_stats)
    wrk_run "$@"
    read -r -a b < <(redis_stats)
    echo "$side $((b[0] - a[0])) $(echo "${b[1]} - ${a[1]}" | bc)" \
         "$((b[2] - a[2])) $1" >> redis.txt
}

# CPU ticks of the workers of the nginx whose pid file is given
worker_ticks() {   # pidfile
    local t=0 p
    for p in $(pgrep -P "$(cat "$1")"); do
        t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$t"
}

# "idle steal": the machine's idle (with iowait) and the time the
# hypervisor gave its vCPUs to others (a virtual machine's noise)
idle_ticks() { awk '/^cpu / {print $5 + $6, $9 + 0}' /proc/stat; }

# a run with the server's workers' CPU and the machine's idle and stolen
# time counted: appends "name worker_ticks idle_ticks steal_ticks" to
# cpu.txt
measured() {   # pidfile name command...
    local pf=$1 name=$2 w0 i0 s0 i1 s1
    shift 2
    w0=$(worker_ticks "$pf")
    read -r i0 s0 < <(idle_ticks)
    "$@"
    read -r i1 s1 < <(idle_ticks)
    echo "$name $(($(worker_ticks "$pf") - w0)) $((i1 - i0)) $((s1 - s0))" \
        >> cpu.txt
}

# "nginx X us, Redis Y us, idle Z us, stolen S us" per request of the
# named runs
cpu_line() {   # name requests
    local w i s r
    read -r w i s < <(awk -v n="$1" '{k = $1; for (j = 2; j < NF - 2; j++)
        k = k " " $j} k == n {w += $(NF-2); i += $(NF-1); s += $NF}
        END {print w + 0, i + 0, s + 0}' cpu.txt) || true
    r=$(awk -v n="$1" '{k = $5; for (j = 6; j <= NF; j++) k = k " " $j}
        k == n {t += $3; c++} END {if (c) print t + 0}' redis.txt)
    printf 'nginx workers %s us, ' \
        "$(echo "scale=1; $w * 1000000 / $HZ / $2" | bc)"
    [ -z "$r" ] || printf 'Redis %s us, ' \
        "$(echo "scale=1; $r * 1000000 / $2" | bc)"
    printf 'idle %s us, stolen %s us' \
        "$(echo "scale=1; $i * 1000000 / $HZ / $2" | bc)" \
        "$(echo "scale=1; $s * 1000000 / $HZ / $2" | bc)"
}
HZ=$(getconf CLK_TCK)

# the median of REPEAT runs: "rps p50 p99 non2xx requests"
summary() {   # name
    awk -v n="$1" '{k = $1; for (i = 2; i <= NF - 5; i++) k = k " " $i}
        k == n {r[++c] = $(NF-4); a[c] = $(NF-3); b[c] = $(NF-2);
                bad += $(NF-1); req += $NF}
        function med(x,   i, j, t) {
            for (i = 1; i <= c; i++) for (j = i + 1; j <= c; j++)
                if (x[j] < x[i]) {t = x[i]; x[i] = x[j]; x[j] = t}
            return x[int((c + 1) / 2)]
        }
        END {if (c) printf "%s %s %s %d %d\n", med(r), med(a), med(b), bad, req}' \
        results.txt
}

ratio() { echo "scale=2; $1 / $2" | bc; }

check() {   # label a b op target: prints a/b and whether it meets the target
    local r ok
    r=$(ratio "$2" "$3")
    ok=$(echo "$r $4 $5" | bc)
    printf '%-42s %5s  %s\n' "$1 ($4 $5)" "$r" \
        "$([ "$ok" = 1 ] && echo met || echo MISSED)"
}

report() {   # label name
    local s
    read -r -a s < <(summary "$2") || return 0
    [ "${#s[@]}" -eq 5 ] || return 0
    printf '%-26s %9.0f req/s  p50 %6.2fms  p99 %6.2fms  non-2xx %s\n' \
        "$1" "${s[0]}" "${s[1]}" "${s[2]}" "${s[3]}"
}

per_request() {   # side: Redis commands and CPU per request of its runs
    local n=$1 calls cpu reads
    read -r calls cpu reads < <(awk -v s="$2" '$1 == s {c += $2; t += $3;
        r += $4} END {print c + 0, t + 0, r + 0}' redis.txt) || true
    echo "Redis commands/request $(ratio "$calls" "$n"), Redis CPU/request" \
         "$(echo "scale=1; $cpu * 1000000 / $n" | bc) us, requests per" \
         "Redis read $([ "$reads" -gt 0 ] && ratio "$n" "$reads" || echo -)"
}

PEER_ON=
if [ -f "$PEER/peer.lua" ] && [ -f /usr/lib/nginx/modules/ngx_http_lua_module.so ]
then
    PEER_ON=1
fi
REPEAT=${REPEAT:-5}

for W in $WORKERS_LIST; do
    : > results.txt
    : > redis.txt
    : > cpu.txt
    echo
    echo "== $W worker(s), $CONNS connections, $THREADS wrk threads, $DUR," \
         "median of $REPEAT runs, interleaved"

    sed -e "s#@MODULE@#$BUILD/ngx_http_integrations_module.so#; s#@DIR@#$DIR#g; s#@PORT@#$PORT#; s#@RPORT@#$RPORT#; s#@WORKERS@#$W#" \
        "$ROOT/bench/module.conf.in" > module.conf
    nginx -p "$DIR" -c "$DIR/module.conf"
    if [ -n "$PEER_ON" ]; then
        sed -e "s#@DIR@#$DIR#g; s#@PEERDIR@#$PEER#g; s#@PORT@#$PPORT#; s#@RPORT@#$RPORT#; s#@WORKERS@#$W#; s#@STATIC@#x#" \
            "$PEER/nginx.conf.in" \
            | sed "s#pid $DIR/nginx.pid#pid $DIR/peer-nginx.pid#" > peer.conf
        nginx -p "$DIR" -c "$DIR/peer.conf"
    fi
    sleep 0.5

    # the static baselines: a plain nginx, `return 200` of the bytes of
    # the module's own pages
    EV1=$(head -1 module-keys.txt | cut -d' ' -f1)
    curl -sf -H "Authorization: Bearer $K" \
        "http://127.0.0.1:$PORT$EVENTS_PATH" > static.json
    curl -sf -H "Authorization: Bearer $K" "http://127.0.0.1:$PORT$(echo \
        "$ATT_PATH" | sed "s/{event}/event-$((10#${EV1#org} * 1000))/")" \
        > static-attendees.json
    echo "events page: $(wc -c < static.json) bytes," \
         "attendees page: $(wc -c < static-attendees.json) bytes"
    sed -e "s#@DIR@#$DIR#g; s#@PORT@#$SPORT#; s#@WORKERS@#$W#" \
        "$ROOT/bench/static.conf.in" > static.conf.in
    python3 "$ROOT/bench/static_conf.py" static.conf.in static=static.json \
        static-attendees=static-attendees.json > static.conf
    nginx -p "$DIR" -c "$DIR/static.conf"
    sleep 0.5
    for f in static static-attendees; do
        curl -sf "http://127.0.0.1:$SPORT/$f" | cmp -s - "$f.json" || {
            echo "static nginx: /$f is not the module's page" >&2; exit 1; }
    done

    M=http://127.0.0.1:$PORT
    S=http://127.0.0.1:$SPORT
    P=http://127.0.0.1:$PPORT
    for _ in $(seq "$REPEAT"); do
        measured static-nginx.pid "static events" \
            wrk_run "static events" "$S" /static ""
        measured module-nginx.pid "module events" \
            side_run module "module events" "$M" "$EVENTS_PATH" \
            module-keys.txt
        [ -z "$PEER_ON" ] || measured peer-nginx.pid "peer events" \
            side_run peer "peer events" "$P" "$EVENTS_PATH" peer-keys.txt
        wrk_run "static attendees" "$S" /static-attendees ""
        side_run module "module attendees" "$M" "$ATT_PATH" module-keys.txt
        [ -z "$PEER_ON" ] ||
            side_run peer "peer attendees" "$P" "$ATT_PATH" peer-keys.txt
    done
    kill "$(cat module-nginx.pid)" "$(cat static-nginx.pid)"
    [ -z "$PEER_ON" ] || kill "$(cat peer-nginx.pid)"
    sleep 0.5

    for n in "static events" "module events" "peer events" \
             "static attendees" "module attendees" "peer attendees"; do
        report "$n W=$W" "$n"
    done

    read -r -a se < <(summary "static events") || true
    read -r -a sa < <(summary "static attendees") || true
    read -r -a me < <(summary "module events") || true
    read -r -a ma < <(summary "module attendees") || true
    echo "-- ratios (same run, $W worker(s), medians)"
    echo "module / static, events:       req/s $(ratio "${me[0]}" "${se[0]}")"
    echo "module / static, attendees:    req/s $(ratio "${ma[0]}" "${sa[0]}")"
    echo "module: $(per_request $((me[4] + ma[4])) module)"
    echo "-- CPU per request, events page ($W worker(s); $(nproc) CPUs give" \
         "$(nproc) x 1,000,000 / req/s us in all; the rest: wrk, kernel)"
    echo "static: $(cpu_line "static events" "${se[4]}")"
    echo "module: $(cpu_line "module events" "${me[4]}")"
    if [ -n "$PEER_ON" ]; then
        read -r -a pe < <(summary "peer events") || true
        read -r -a pa < <(summary "peer attendees") || true
        echo "module / peer, events:         req/s $(ratio "${me[0]}" \
             "${pe[0]}"), p99 $(ratio "${me[2]}" "${pe[2]}")"
        echo "module / peer, attendees:      req/s $(ratio "${ma[0]}" \
             "${pa[0]}"), p99 $(ratio "${ma[2]}" "${pa[2]}")"
        # the machine's own tail: a static `return 200` needs no Redis, so
        # a p99 of its above a third of the peer's is the scheduler's
        echo "static / peer, events p99:     $(ratio "${se[2]}" "${pe[2]}")"
        echo "static / peer, attendees p99:  $(ratio "${sa[2]}" "${pa[2]}")"
        echo "peer: $(per_request $((pe[4] + pa[4])) peer)"
        echo "peer events CPU per request: $(cpu_line "peer events" \
             "${pe[4]}")"
        echo "-- targets (issue 6), $W worker(s)"
        check "module / peer req/s, events" "${me[0]}" "${pe[0]}" ">=" 3
        check "module / peer req/s, attendees" "${ma[0]}" "${pa[0]}" ">=" 3
        check "module / peer p99, events" "${me[2]}" "${pe[2]}" "<=" .33
        check "module / peer p99, attendees" "${ma[2]}" "${pa[2]}" "<=" .33
    fi
    check "module / static req/s, events" "${me[0]}" "${se[0]}" ">=" .40
    bad=$((me[3] + ma[3] + ${pe[3]:-0} + ${pa[3]:-0}))
    printf '%-42s %5s  %s\n' "non-2xx, module and peer" "$bad" \
        "$([ "$bad" = 0 ] && echo met || echo MISSED)"
done

# flat memory: worker RSS before and after a long run on a warm cache
rss() {   # the workers' resident set, kB
    local kb=0 p
    for p in $(pgrep -P "$(cat module-nginx.pid)"); do
        kb=$((kb + $(awk '/^VmRSS/ {print $2}' "/proc/$p/status")))
    done
    echo "$kb"
}
RSS_DUR=${RSS_DUR:-20s}; RSS_REQUESTS=${RSS_REQUESTS:-1000000}
if [ "$RSS_DUR" != 0 ]; then
    sed -i "s/^worker_processes .*/worker_processes 1;/" module.conf
    nginx -p "$DIR" -c "$DIR/module.conf"
    sleep 0.5
    for path in "$EVENTS_PATH" "$ATT_PATH"; do
        WRK_KEYS=module-keys.txt WRK_PATH=$path wrk -t"$THREADS" \
            -c"$CONNS" -d5s -s "$WRK_LUA" \
            "http://127.0.0.1:$PORT" >/dev/null
    done
    r0=$(rss)
    n=0; rounds=0
    # a count, not a time: a slow minute of the machine must not shorten it
    while [ "$n" -lt "$RSS_REQUESTS" ]; do
        out=$(WRK_KEYS=module-keys.txt WRK_PATH=$EVENTS_PATH wrk \
              -t"$THREADS" -c"$CONNS" -d"$RSS_DUR" -s "$WRK_LUA" \
              "http://127.0.0.1:$PORT")
        n=$((n + $(echo "$out" | awk '/requests in/ {print $1}')))
        rounds=$((rounds + 1))
    done
    r1=$(rss)
    echo
    echo "== memory: $n requests (events, 1 worker, $rounds rounds of" \
         "$RSS_DUR) on a warm cache"
    echo "worker RSS before: $r0 kB, after: $r1 kB, growth: $((r1 - r0)) kB"
    # flat: within 1% (a page or two of the allocator's own)
    printf '%-42s %5s  %s\n' "worker RSS growth, kB (<= 1% of $r0)" \
        "$((r1 - r0))" "$([ $((100 * (r1 - r0))) -le "$r0" ] \
                          && echo met || echo MISSED)"
    kill "$(cat module-nginx.pid)"; sleep 0.5
fi
grep -c "\[error\]\|\[alert\]" "$DIR"/module-error.log 2>/dev/null | sed 's/^/module error-log errors: /' || true
