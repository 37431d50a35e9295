#!/usr/bin/env bash
# nginx style, the parts a machine can check: no tabs, no trailing
# spaces, lines of at most 80 columns. Prints each offence; exit 1 if any.
set -u
cd "$(dirname "$0")/.."
status=0
for f in src/*.c src/*.h src/cli/*.c src/cli/*.h t/unit/*.c t/fuzz/*.c; do
    [ -f "$f" ] || continue
    if grep -nP '\t' "$f" | sed "s|^|$f:|;s|$| (tab)|" | grep .; then
        status=1
    fi
    if grep -nP ' +$' "$f" | sed "s|^|$f:|;s|$| (trailing space)|" | grep .; then
        status=1
    fi
    if awk -v f="$f" 'length($0) > 80 { printf "%s:%d: %d columns\n", f, NR, length($0); bad = 1 }
                      END { exit bad }' "$f"; then :; else
        status=1
    fi
done
[ $status = 0 ] && echo "style: ok"
exit $status
