#!/usr/bin/env python3
"""Writes dsari-special-schedules.tsv: cron forms with croniter's L, W and # (and the
lists and ranges around them), with the times dsari computes for them, or "error"
where dsari refuses the expression.

Run from the repository root with dsari on the path (it needs croniter 7.0.0 and
python-dateutil installed):

    PYTHONPATH=/path/to/dsari python3 tests/data/dsari-special.py > tests/data/dsari-special-schedules.tsv

The expressions are drawn from a fixed seed, so the same dsari gives the same file.
"""

import datetime
import json
import random
import sys
import zoneinfo

from dsari import utils

SEED = 20261201
ROWS = 1500
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]

# Written out by hand: each form, its spellings, and what goes around it.
FIXED = [
    "0 0 L * *", "0 0 l * *", "30 6 L 2 *", "0 0 L,15 * *", "0 0 1,L * *", "0 0 5-L * *",
    "0 0 10-L/7 * *", "0 0 1-L * *", "0 0 1-30,L * *", "0 0 2-31,L * *", "0 0 1-31,L * *",
    "0 0 31-L * *", "0 0 L-3 * *", "0 0 L/2 * *", "0 0 L-L * *", "0 0 LW * *",
    "0 0 15W * *", "0 0 15w * *", "0 0 w15 * *", "0 0 1W * *", "0 0 31W * *", "0 0 30W * *",
    "0 0 0W * *", "0 0 32W * *", "0 0 W * *", "0 0 15W,20 * *", "0 0 1,15W * *",
    "0 0 * * 5#2", "0 0 * * fri#2", "0 0 * * FRI#2", "0 0 * * 0#1", "0 0 * * 7#1",
    "0 0 * * 5#5", "0 0 * * 5#6", "0 0 * * 5#0", "0 0 * * 1#1,5#2", "0 0 * * mon-fri#2",
    "0 0 * * fri-mon#1", "0 0 * * mon-mon#3", "0 0 * * 1-5#2", "0 0 * * 5#3-5",
    "0 0 * * L5", "0 0 * * l5", "0 0 * * L0", "0 0 * * L7", "0 0 * * 5L", "0 0 * * Lfri",
    "0 0 * * L5,L1", "0 0 * * L5,fri#1", "0 0 * * 1,5#2", "0 0 * * *,5#2", "0 0 * * 5,5#2",
    "0 0 * * sun-sat#2", "0 0 * * 0,1,2,3,4,5#1,6", "0 0 ? * 5#2", "0 0 * * L",
    "0 0 15 * 5#2", "0 0 10 * 5#2", "0 0 L * 5#2", "0 0 L * L5", "0 0 L * 5",
    "0 0 15W * 6", "0 0 15W * 1-5", "0 0 15W * 5#2", "0 0 15W * L5", "0 0 15W * 1",
    "0 0 *,5 * 1", "0 0 5 * *,1", "0 0 * * H#2", "0 0 HW * *", "0 0 H(1-15)W * *",
    "0 0 * * LH", "H H L * *", "H H * * L5", "H H 15W * *", "H H * * fri#3",
    "H(0-29) H(8-17) L * * H", "0 0 L 2 * H", "*/15 * L * * 30", "0 12 L * 1-5",
    "0 12 1-7 * 5#1", "0 12 8-14 * mon#2", "0 0 1W jan,jul *", "0 0 L feb *",
    "0 0 29 2 L5", "0 0 L 1 5#5",
]


def day_of_month(rng):
    n = rng.randint(1, 31)
    return rng.choice([
        "L", "l", f"{n}W", f"{n}w", f"w{n}", f"L,{n}", f"{n},L", f"{n}-L",
        f"{rng.randint(1, 20)}-L/{rng.randint(2, 9)}", "*", "?", str(n),
        f"{n}-{rng.randint(1, 31)}", f"*/{rng.randint(2, 10)}", "H", f"H({n}-{max(n, 28)})",
    ])


def occurrence(rng):
    d = rng.randint(0, 7)
    name = rng.choice(DAYS)
    k = rng.randint(1, 5)
    return rng.choice([
        f"{d}#{k}", f"{name}#{k}", f"{name.upper()}#{k}", f"L{d}", f"l{d}",
        f"{name}-{rng.choice(DAYS)}#{k}",
    ])


def day_of_week(rng):
    kind = rng.random()
    if kind < 0.55:
        return ",".join(occurrence(rng) for _ in range(rng.choice([1, 1, 1, 2, 3])))
    if kind < 0.65:
        return rng.choice(["*", "?", f"*,{occurrence(rng)}", f"{rng.randint(0, 6)},{occurrence(rng)}"])
    return rng.choice([
        "*", str(rng.randint(0, 7)), f"{rng.randint(0, 6)}-{rng.randint(0, 6)}",
        rng.choice(DAYS), "mon-fri", "H", "*/2",
    ])


def expression(rng):
    minute = rng.choice(["0", "H", str(rng.randint(0, 59)), f"*/{rng.randint(5, 30)}", "H(0-29)"])
    hour = rng.choice(["0", "H", str(rng.randint(0, 23)), "H(8-17)", f"{rng.randint(0, 11)}-{rng.randint(12, 23)}/4"])
    month = rng.choice(["*", "*", "*", rng.choice(MONTHS), f"{rng.randint(1, 6)}-{rng.randint(7, 12)}", "H"])
    dom, dow = day_of_month(rng), day_of_week(rng)
    # The special forms in both day fields, one of them, or the other.
    if rng.random() < 0.3:
        dow = "*"
    elif rng.random() < 0.3:
        dom = "*"
    fields = [minute, hour, dom, month, dow]
    if rng.random() < 0.3:
        fields.append(rng.choice(["0", "H", str(rng.randint(0, 59)), "*/20"]))
    return " ".join(fields)


def name(rng):
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_-"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 16)))


def times(expr, job, start):
    t, out = start, []
    for _ in range(5):
        t = utils.get_next_schedule_time(expr, job, t)
        out.append(t)
    return out


def main():
    # Optional: SEED ROWS, to try other draws without changing the committed file.
    seed, count = (int(a) for a in sys.argv[1:3]) if len(sys.argv) > 2 else (SEED, ROWS)
    rng = random.Random(seed)
    rows = [(e, name(rng)) for e in FIXED]
    rows += [(expression(rng), name(rng)) for _ in range(count)]
    print("expr\tname\ttz\tstart\tt1\tt2\tt3\tt4\tt5")
    for expr, job in rows:
        zone_name = rng.choice(ZONES)
        zone = zoneinfo.ZoneInfo(zone_name)
        start = datetime.datetime.fromtimestamp(rng.randint(946684800, 2082758400), zone)
        try:
            got = times(expr, job, start)
        except Exception:  # dsari refuses it: parse error, or no next date found
            print(f"{expr}\t{json.dumps(job)}\t{zone_name}\t{start.isoformat()}\terror\t-\t-\t-\t-")
            continue
        # What happens at a daylight-saving change is runner's own rule, not parity.
        if len({t.utcoffset() for t in [start] + got}) != 1:
            continue
        stamps = "\t".join(f"{t.timestamp():.6f}" for t in got)
        print(f"{expr}\t{json.dumps(job)}\t{zone_name}\t{start.isoformat()}\t{stamps}")


if __name__ == "__main__":
    sys.exit(main())
