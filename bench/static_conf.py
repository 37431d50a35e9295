#!/usr/bin/env python3
"""static_conf.py TEMPLATE NAME=FILE... : the static nginx's config on
stdout, one `location = /NAME { return 200 ...; }` per page. nginx keeps a
quoted parameter under 4 KB, so a body is cut into pieces held by `set`
and joined by `return 200 "$p1$p2..."`: each request still gets the
bytes from memory, as `return 200` of a literal would."""
import sys

PIECE = 3000


def quote(s):
    # inside '...': \ and ' escaped; $ would be read as a variable
    if "$" in s:
        sys.exit("static_conf.py: a page holds '$', cannot be a set value")
    return "'" + s.replace("\\", "\\\\").replace("'", "\\'") + "'"


def location(name, body):
    pieces = [body[i:i + PIECE] for i in range(0, len(body), PIECE)]
    var = "".join(c if c.isalnum() else "_" for c in name)
    out = ["        location = /%s {" % name]
    for i, p in enumerate(pieces):
        out.append("            set $%s_%d %s;" % (var, i, quote(p)))
    out.append('            return 200 "%s";' % "".join(
        "$%s_%d" % (var, i) for i in range(len(pieces))))
    out.append("        }")
    return "\n".join(out)


def main():
    tpl = open(sys.argv[1]).read()
    locs = []
    for arg in sys.argv[2:]:
        name, path = arg.split("=", 1)
        with open(path, encoding="utf-8") as f:
            locs.append(location(name, f.read()))
    sys.stdout.write(tpl.replace("@LOCATIONS@", "\n".join(locs)))


main()
