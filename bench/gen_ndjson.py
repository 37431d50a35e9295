#!/usr/bin/env python3
"""The benchmark's data set as NDJSON, one file per organization, for when
the peer's generator is not at hand: gen_ndjson.py DIR ORGS EVENTS ATTS."""
import json
import os
import sys


def main():
    out, orgs, events, atts = (sys.argv[1], int(sys.argv[2]),
                               int(sys.argv[3]), int(sys.argv[4]))
    aid = 0
    for o in range(orgs):
        org = "org%04d" % o
        with open(os.path.join(out, org + ".ndjson"), "w") as f:
            for e in range(events):
                eid = o * 1000 + e
                slug = "event-%d" % eid
                day = 1 + e % 28
                ev = {"kind": "event", "id": eid, "slug": slug,
                      "title": "Event %d of %s" % (e, org),
                      "starts": "2026-12-%02dT19:00:00Z" % day,
                      "ends": "2026-12-%02dT23:00:00Z" % day,
                      "status": "approved", "published": True,
                      "passCount": atts, "revenue": 1234.5}
                f.write(json.dumps(ev, separators=(",", ":")) + "\n")
                for a in range(atts):
                    aid += 1
                    at = {"kind": "attendee", "event": slug, "id": aid,
                          "name": "Person %d" % aid,
                          "email": "p%d@example.com" % aid,
                          "phone": "+2782%07d" % aid,
                          "createdTime": "2026-11-01T10:00:00Z",
                          "promo": a % 17 == 0, "scanned": a % 3 == 0,
                          "reference": "R%08d" % aid,
                          "identifier": "T%010d" % aid,
                          "category": "General", "amount": 150.0,
                          "paid": True,
                          "customFields": {"Company": "Acme %d" % (a % 50)}}
                    f.write(json.dumps(at, separators=(",", ":")) + "\n")


main()
