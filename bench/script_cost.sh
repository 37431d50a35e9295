#!/usr/bin/env bash
# Redis instructions per key check, counted by callgrind: a number that
# does not move with the machine's load, for weighing a change to the
# access script before a (noisy) `make bench`. Not part of make test or
# make bench; needs valgrind.
#
# A Redis under callgrind gets key records made by integrationsctl, then
# N EVALSHA calls shaped as the module sends them (its three keys, a
# random key per call, a 1 s window so the log is trimmed as in a steady
# state), once to warm up and once counted. MODE=remembered (the default)
# sends what a worker sends for a record it remembers (hash, limit,
# window, gen), MODE=whole what it sends otherwise (hash, limit, window,
# "", client address, one scope).
# Environment: N (20000), KEYS_N (100 keys, 5 per organization), RPORT
# (16395), SCRIPT (a Lua file to weigh instead of the module's script),
# REDIS_ARGS (more redis-server options, e.g. "--latency-tracking no").
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${INTEGRATIONS_BUILD:-$ROOT/build}
N=${N:-20000}; KEYS_N=${KEYS_N:-100}; RPORT=${RPORT:-16395}
DIR=$(mktemp -d /tmp/integrations-script-cost.XXXX)
CTL="$BUILD/integrationsctl --redis redis://127.0.0.1:$RPORT/0"

cleanup() {
    redis-cli -p "$RPORT" shutdown nosave >/dev/null 2>&1 || true
    [ -n "${KEEP:-}" ] || rm -rf "$DIR"
}
trap cleanup EXIT

command -v valgrind >/dev/null || { echo "needs valgrind" >&2; exit 1; }

valgrind --tool=callgrind --callgrind-out-file="$DIR/cg.%p" \
    redis-server --port "$RPORT" --bind 127.0.0.1 --save "" ${REDIS_ARGS:-} \
    --appendonly no >"$DIR/redis.log" 2>"$DIR/valgrind.log" &
VP=$!
for _ in $(seq 100); do
    redis-cli -p "$RPORT" ping >/dev/null 2>&1 && break
    sleep 0.3
done

for i in $(seq 0 $(( (KEYS_N + 4) / 5 - 1 ))); do
    for _ in 1 2 3 4 5; do
        $CTL keys create --org "$(printf 'org%04d' "$i")" --name cost \
            --scopes events:read >/dev/null
    done
done

if [ -n "${SCRIPT:-}" ]; then
    cp "$SCRIPT" "$DIR/script.lua"
else
    # the module's script, out of its C string literal
    python3 - "$ROOT/src/ngx_http_apikey_module.c" >"$DIR/script.lua" <<'EOF'
import ast, re, sys
src = open(sys.argv[1]).read()
m = re.search(r'ngx_http_apikey_script\[\] =\n(.*?);\n', src, re.S)
print(''.join(ast.literal_eval(l.strip()) for l in m.group(1).split('\n')
              if l.strip()), end='')
EOF
fi
SHA=$(redis-cli -p "$RPORT" script load "$(cat "$DIR/script.lua")")

redis-cli -p "$RPORT" --scan --pattern '{k:*}' | grep -v '}:' \
    | while read -r k; do
        echo "$k $(redis-cli -p "$RPORT" hget "$k" hash)"
    done >"$DIR/records.txt"

MODE=${MODE:-remembered}
python3 - "$N" "$SHA" "$DIR/records.txt" "$MODE" >"$DIR/calls.resp" <<'EOF'
import random, sys
n, sha = int(sys.argv[1]), sys.argv[2]
recs = [l.split() for l in open(sys.argv[3])]
def resp(args):
    return '*%d\r\n' % len(args) + ''.join(
        '$%d\r\n%s\r\n' % (len(a), a) for a in args)
out = []
for _ in range(n):
    rec, h = random.choice(recs)
    kid = rec[3:-1]
    # the records have no gen field: a worker remembers "="
    args = [h, '1000000', '1000', '=']
    if sys.argv[4] == 'whole':
        args = [h, '1000000', '1000', '', '0' * 24 + '7f000001',
                ' events:read ']
    out.append(resp(['EVALSHA', sha, '3', rec, '{k:%s}:log:events' % kid,
                     '{k:%s}:rl:events' % kid] + args))
sys.stdout.write(''.join(out))
EOF

redis-cli -p "$RPORT" --pipe <"$DIR/calls.resp" >/dev/null
callgrind_control -z "$VP" >/dev/null
redis-cli -p "$RPORT" --pipe <"$DIR/calls.resp" >"$DIR/pipe.out"
callgrind_control -d "$VP" >/dev/null
sleep 1

if ! grep -q 'errors: 0,' "$DIR/pipe.out"; then
    echo "the script failed:" >&2
    redis-cli -p "$RPORT" evalsha "$SHA" 0 >&2 || true
    cat "$DIR/pipe.out" >&2
    exit 1
fi

total=$(cat "$DIR"/cg.*.* | awk '/^totals:/ {s += $2} END {printf "%.0f\n", s}')
read -r rec h <"$DIR/records.txt"
kid=${rec:3:-1}
code=$(redis-cli -p "$RPORT" evalsha "$SHA" 3 "$rec" "{k:$kid}:log:events" \
    "{k:$kid}:rl:events" "$h" 1000000 1000 '' '' ' events:read ' | head -1)
echo "key check ($MODE record): $(( total / N )) Redis instructions per" \
     "call ($N calls, $(wc -l <"$DIR/records.txt") keys; code of one more:" \
     "$code)"
